"""Running the cells of a protocol: one (method, train set) cell is trained once with
:func:`declip_plugin.engine.run.train` and tested on every test set; its marker is written once it is complete.

Resumable: a cell whose marker exists is kept and never retrained; a cell that was running when the
protocol was killed continues from its last finished epoch (``train(resume=...)``) when its run directory
can be resumed (config.yaml and ckpt_last.pth), otherwise it starts again (its dead run folder removed).

:class:`Protocol` is what the executors (declip_plugin/protocol/cluster.py), the outputs and the command see
of a protocol folder: cells by id, whether each is done, its result, and running one.
"""
import logging
import os
import shutil

from ..errors import ConfigError
from ..run_folder import RunDir, runs_named
from . import folder
from .plan import is_in_domain, plan_key

logger = logging.getLogger(__name__)


def _is_rank0():
    return int(os.environ.get("RANK", "0")) == 0


class Protocol:
    """One protocol folder: its plan, the cells' markers and runs. ``out``: the folder; ``plan``: the plan
    (protocol.json, declip_plugin/protocol/plan.py)."""

    def __init__(self, out_dir, plan=None):
        self.out = os.fspath(out_dir)
        if plan is None:
            if not folder.is_protocol(self.out):
                raise ConfigError(f"{self.out}: no {folder.PLAN_FILE}; start a protocol with --preset or "
                                  f"--method/--train/--test")
            plan = folder.read_plan(self.out)
        elif folder.is_protocol(self.out):
            old = folder.read_plan(self.out)
            if plan_key(old) != plan_key(plan):
                raise ConfigError(f"{self.out} holds another protocol ({folder.PLAN_FILE} differs); choose a new --out "
                                  f"or rerun it with the same arguments to continue it")
            plan = old  # continued as it was planned
        else:
            folder.create(self.out, plan)
        self.plan = plan
        folder.ensure_cells(self.out)

    # ---- cells by id (what the executors use) ---------------------------------------------------------

    def cell_ids(self):
        """The ids of every cell, in plan order."""
        return [c["id"] for c in self.plan["cells"]]

    def cell(self, cell_id):
        """The plan's cell ``cell_id`` (id, method, train, config, overrides, name)."""
        for c in self.plan["cells"]:
            if c["id"] == cell_id:
                return c
        raise ConfigError(f"{self.out}: no cell {cell_id!r} in {folder.PLAN_FILE}")

    def done(self, cell):
        """Whether ``cell`` (a cell or its id) is complete: its marker exists."""
        return os.path.isfile(self.marker(cell))

    def marker(self, cell):
        return folder.marker_path(self.out, self.cell(cell) if isinstance(cell, str) else cell)

    def result(self, cell):
        """The marker of a complete cell (a cell or its id): the cell, its ``run_dir`` and ``results``."""
        return folder.read_marker(self.marker(cell))

    def complete(self, cell_id):
        """The result of cell ``cell_id``, running it first unless it is complete already."""
        if self.done(cell_id):  # e.g. a job requeued after its cell was complete
            logger.info("protocol: cell %s is complete already (%s); nothing to do", cell_id, self.marker(cell_id))
            return self.result(cell_id)
        return self.run_cell(self.cell(cell_id))

    def missing(self):
        """Ids of the cells without a complete result."""
        return [c["id"] for c in self.plan["cells"] if not self.done(c)]

    def all_done(self):
        return all(self.done(c) for c in self.plan["cells"])

    def cells_done(self):
        """The markers of the complete cells, in plan order."""
        return folder.finished_cells(self.out, self.plan)

    # ---- running --------------------------------------------------------------------------------------

    def run(self, train_fn=None, extra_overrides=None):
        """Train and test every unfinished cell in this process; returns the number of cells trained now."""
        trained = 0
        for cell in self.plan["cells"]:
            if self.done(cell):
                logger.info("protocol: cell %s done, kept (%s)", cell["id"], self.result(cell)["run_dir"])
                continue
            self.run_cell(cell, train_fn, extra_overrides)
            trained += 1
        return trained

    def cell_overrides(self, cell, extra_overrides=None):
        from ..config import merge

        return {**merge(merge(self.plan.get("overrides", {}), extra_overrides or {}), cell["overrides"]),
                "train_dataset": [cell["train"]], "test_dataset": list(self.plan["test"]),
                "in_domain": [t for t in self.plan["test"] if is_in_domain(cell["train"], t)] or None,
                "log_dir": folder.runs_dir(self.out), "name": cell["name"]}

    def run_cell(self, cell, train_fn=None, extra_overrides=None):
        """Train ``cell`` (continuing its interrupted run, if any), test it, write its marker; returns the marker."""
        if train_fn is None:
            from ..engine.run import train as train_fn
        overrides = self.cell_overrides(cell, extra_overrides)
        resume = self.interrupted_run(cell)
        if resume:
            logger.info("protocol: cell %s was interrupted; resuming %s", cell["id"], resume)
        if _is_rank0():  # one task of a multi-GPU job cleans, before its run starts
            self._remove_dead_runs(cell, keep=resume)
        logger.info("protocol: training %s on %s, testing on %s", cell["method"], cell["train"],
                    ", ".join(self.plan["test"]))
        run_dir = train_fn(cell["config"], overrides if not resume else {}, resume=resume)
        results = {}
        for t in self.plan["test"]:
            tested = RunDir(run_dir).test(t)
            if not tested.is_ours():
                raise ConfigError(f"protocol: cell {cell['id']}: {tested.metrics} missing after training; the run did "
                                  f"not test {t}")
            results[t] = tested.read_metrics().get("metrics", {})
        marker = {**cell, "run_dir": run_dir, "results": results}
        if _is_rank0():
            folder.write_marker(self.out, cell, marker)  # atomic: the cell is done
        return marker

    def _runs_of(self, cell):
        return runs_named(folder.runs_dir(self.out), cell["name"])

    def interrupted_run(self, cell):
        """The newest run directory of ``cell`` that can be resumed (config.yaml and ckpt_last.pth), or None."""
        found = [d for d in self._runs_of(cell) if RunDir(d).resumable()]
        return found[-1] if found else None

    def _remove_dead_runs(self, cell, keep=None):
        """Run folders of ``cell`` that a killed run left before its first finished epoch (no
        ckpt_last.pth: nothing to continue, nothing to show); the cell starts again in a new one."""
        for d in self._runs_of(cell):
            if d != keep and not RunDir(d).finished_an_epoch():
                logger.info("protocol: cell %s: removing %s (killed before its first epoch ended)", cell["id"], d)
                shutil.rmtree(d, ignore_errors=True)
