"""Protocol cells as jobs of a scheduler, through submitit (``declip protocol --executor``).

Every training cell of a protocol is one job; the job trains the cell and then tests it on every
test set (in the same job: testing costs minutes against the training's hours, reuses the node
that holds the best checkpoint, needs no second wait in the queue, and keeps one thing complete or
not: the cell's marker, written once the last test set is scored).

Executors (submitit's):

- ``local``: each cell a subprocess on this machine (submitit's LocalExecutor), at most
  ``--max_parallel`` at a time (default 1), each on its own GPU(s) when the machine has any;
- ``slurm``: each cell one task of a SLURM job array (``--max_parallel``: the array's ``%N``);
  the command waits for the jobs unless ``--no-wait``; the last cell to finish builds the outputs;
- ``debug``: every cell in this process, one after the other (submitit's DebugExecutor; a cell that
  fails opens pdb, which is what it is for).

Job records: ``<out>/jobs/<cell id>.json`` (executor, job id, log paths, state when known) and
submitit's own folder ``<out>/jobs/submitit/`` (pickles and logs), both laid out by
declip_plugin/protocol/folder.py. A preempted or timed-out SLURM job is requeued by submitit
(:class:`CellJob` is a ``Checkpointable``); the requeued job finds the cell's run directory and
continues from its last finished epoch (``train(resume=...)``).

What this module sees of a protocol is :class:`~declip_plugin.protocol.cells.Protocol`'s interface: its
folder (``out``), its cell ids, whether a cell is done, its result, running it (``complete``). The
command's flags arrive checked, as a :class:`JobOptions` (declip_plugin/commands/protocol.py parses them).
"""
import contextlib
import dataclasses
import io
import logging
import os
import signal
import threading
import time

from submitit.core.utils import FailedJobError, FailedSubmissionError
from submitit.helpers import Checkpointable

from ..errors import ConfigError, DeclipError
from .folder import read_record, submitit_folder, write_record as _write_record

logger = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm", "debug")
_QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "READY", "SUSPENDED"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING", "PREEMPTED"}
# --slurm_opt keys that the command sets itself, or that are lists in submitit
_OWN_SLURM_KEYS = {"time": "use --time", "partition": "use --partition", "mem": "use --mem",
                   "gpus_per_node": "use --gpus_per_job", "num_gpus": "use --gpus_per_job",
                   "ntasks_per_node": "one task per GPU: use --gpus_per_job",
                   "array_parallelism": "use --max_parallel", "job_name": "the jobs are named declip-protocol",
                   "nodes": "a cell runs on one node (one training across nodes: docs/cluster.md, torchrun)",
                   "additional_parameters": "give each sbatch option as its own --slurm_opt KEY=VALUE",
                   "setup": "not supported from the command line (a list of shell lines)",
                   "teardown": "not supported from the command line (a list of shell lines)",
                   "srun_args": "not supported from the command line (a list of arguments)",
                   "array": "the cells are one job array already (--max_parallel: its %N)",
                   "output": "the jobs' logs are OUT/jobs/submitit/<job>/ (submitit names them)",
                   "error": "the jobs' logs are OUT/jobs/submitit/<job>/ (submitit names them)",
                   "open_mode": "submitit appends to the jobs' logs", "wrap": "the job script is submitit's",
                   "parsable": "submitit reads sbatch's own answer", "test_only": "the command submits the jobs",
                   "wait": "the command waits for the jobs itself (--no-wait: it does not)",
                   "help": "see man sbatch", "usage": "see man sbatch", "version": "see man sbatch"}
# sbatch's long options (its man page, Slurm 22.05 to 24.05), spelt as --slurm_opt keys; with submitit's own
# parameters (SlurmExecutor._valid_parameters) the keys --slurm_opt accepts
SBATCH_OPTIONS = frozenset("""
    account acctg_freq array batch bb bbf begin chdir cluster_constraint clusters comment constraint container
    container_id contiguous core_spec cores_per_socket cpu_freq cpus_per_gpu cpus_per_task deadline delay_boot
    dependency distribution error exclude exclusive export export_file extra extra_node_info get_user_env gid
    gpu_bind gpu_freq gpus gpus_per_node gpus_per_socket gpus_per_task gres gres_flags help hint hold ignore_pbs
    input job_name kill_on_invalid_dep licenses mail_type mail_user mcs_label mem mem_bind mem_per_cpu
    mem_per_gpu mincpus network nice no_kill no_requeue nodefile nodelist nodes ntasks ntasks_per_core
    ntasks_per_gpu ntasks_per_node ntasks_per_socket open_mode output overcommit oversubscribe parsable
    partition power prefer priority profile propagate qos quiet reboot requeue reservation resv_ports segment
    signal sockets_per_node spread_job switches test_only thread_spec threads_per_core time time_min tmp
    tres_bind tres_per_task uid usage use_min_nodes verbose version wait wait_all_nodes wckey wrap
    """.split())
LOCAL_FOREVER_MIN = 60 * 24 * 365  # submitit's local executor kills a job after timeout_min (2 by default)


@dataclasses.dataclass
class JobOptions:
    """What ``declip protocol`` passes to the scheduler (its flags, checked by :func:`job_options`)."""
    executor: str = "local"
    gpus_per_job: int = None
    partition: str = None
    time_min: int = None
    mem_gb: float = None
    slurm_opts: dict = dataclasses.field(default_factory=dict)
    max_parallel: int = None
    wait: bool = True
    report: bool = True  # the last SLURM job writes report.html too (--no-report: not)
    poll_s: float = None  # seconds between looks at running jobs (None: see _poll_interval)


def check_slurm_key(key):
    """A --slurm_opt key the command sets itself, or one neither sbatch nor submitit knows (a misspelling:
    sbatch would fail with a traceback after the protocol folder was written), named with the closest."""
    from submitit.slurm.slurm import SlurmExecutor

    from ..registry import closest

    if key in _OWN_SLURM_KEYS:
        raise ConfigError(f"--slurm_opt {key}=...: {_OWN_SLURM_KEYS[key]}")
    known = (SBATCH_OPTIONS | set(SlurmExecutor._valid_parameters()) | {"max_num_timeout"}) - set(_OWN_SLURM_KEYS)
    if key not in known:
        hint = closest(key, sorted(known))
        raise ConfigError(f"--slurm_opt {key}=...: neither sbatch nor submitit has an option {key!r}"
                          + (f"; did you mean {hint!r}?" if hint else "")
                          + " (sbatch's long options, with - or _: man sbatch)")


def check_local_gpus(opts):
    """Local jobs: ``--gpus_per_job`` defaults to 1 with CUDA (else 0), and the jobs at a time fit this machine."""
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if opts.gpus_per_job is None:
        opts.gpus_per_job = 1 if have else 0
    need = opts.gpus_per_job * (opts.max_parallel or 1)
    if need > have:
        raise ConfigError(f"--executor local: {opts.max_parallel or 1} job(s) at a time x --gpus_per_job "
                          f"{opts.gpus_per_job} need {need} GPU(s); this machine has {have}")


# ---- the job --------------------------------------------------------------------------------------

class CellJob(Checkpointable):
    """One cell: train (continuing an interrupted run of the cell), test, write the marker; then, with
    ``finish``, when it was the last cell, the protocol's outputs (SLURM jobs: the submitting command
    may be gone). Requeued as it is on preemption/timeout (``Checkpointable.checkpoint``): the new
    job finds the cell's run folder and continues from its last finished epoch."""

    def __init__(self, out, cell_id, finish=False, report=True):
        self.out = os.fspath(out)
        self.cell_id = cell_id
        self.finish, self.report = finish, report

    def __call__(self):
        from .cells import Protocol

        _log_to_job_output()
        _take_signals_back()
        _export_torch_distributed()
        p = Protocol(self.out)
        result = p.complete(self.cell_id)  # nothing to do when it is complete (a job requeued late)
        if self.finish and _is_rank0() and p.all_done():
            from .outputs import finish

            finish(p, report=self.report)
        return {"cell": self.cell_id, "run_dir": result["run_dir"]}


def _log_to_job_output():
    """This package's INFO lines into the job's log (submitit's stdout file; its errors go to stderr)."""
    import sys

    pkg = logging.getLogger("declip_plugin")
    if os.environ.get("SUBMITIT_EXECUTOR") not in ("local", "slurm"):  # debug: this process logs already
        return
    if not any(getattr(h, "_declip_job", False) for h in pkg.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._declip_job = True
        pkg.addHandler(handler)
        pkg.setLevel(logging.INFO)


def _export_torch_distributed():
    """Several tasks in one job (``--gpus_per_job`` > 1): the torchrun variables from SLURM's."""
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (the debug executor sets no task count)
        return
    try:
        many = env.num_tasks > 1
    except (KeyError, ValueError):
        return
    if many:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _is_rank0():
    return int(os.environ.get("RANK", "0")) == 0


# ---- executors ------------------------------------------------------------------------------------

def make_executor(out, opts):
    """The submitit executor of ``opts`` (parameters set; the local GPUs are set per job)."""
    import submitit

    folder = submitit_folder(out)
    if opts.executor == "debug":
        return submitit.DebugExecutor(folder)
    if opts.executor == "local":
        ex = submitit.LocalExecutor(folder)
        ex.update_parameters(timeout_min=opts.time_min or LOCAL_FOREVER_MIN, gpus_per_node=opts.gpus_per_job or 0,
                             tasks_per_node=max(1, opts.gpus_per_job or 0), signal_delay_s=120)
        return ex
    from submitit.slurm.slurm import SlurmExecutor

    ex = SlurmExecutor(folder, max_num_timeout=int(opts.slurm_opts.get("max_num_timeout", 3)))
    gpus = 1 if opts.gpus_per_job is None else opts.gpus_per_job
    params = {"job_name": "declip-protocol", "time": opts.time_min, "nodes": 1, "ntasks_per_node": max(1, gpus)}
    if gpus:
        params["gpus_per_node"] = gpus
    if opts.mem_gb:
        params["mem"] = f"{int(opts.mem_gb)}GB" if opts.mem_gb == int(opts.mem_gb) else f"{int(opts.mem_gb * 1024)}MB"
    if opts.partition:
        params["partition"] = opts.partition
    if opts.max_parallel:
        params["array_parallelism"] = opts.max_parallel
    known, extra = SlurmExecutor._valid_parameters(), {}
    for key, value in opts.slurm_opts.items():
        if key == "max_num_timeout":
            continue
        if key in known:
            params[key] = value
        else:
            extra[key] = value
    if extra:
        params["additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def check_executor_available(opts):
    """SLURM's commands on PATH for ``--executor slurm``, and the jobs' options as the scheduler sees them
    (:func:`_sbatch_test_only`): checked before anything is written."""
    import shutil

    if opts.executor == "slurm":
        missing = [c for c in ("sbatch", "srun", "sacct") if shutil.which(c) is None]
        if missing:
            raise ConfigError(f"--executor slurm: {', '.join(missing)} not found on PATH; run the command on a "
                              f"machine of the SLURM cluster (a login node), or use --executor local")
        _sbatch_test_only(opts)


def _sbatch_test_only(opts):
    """``sbatch --test-only`` of a job script with the cells' options: the scheduler's own check of the
    partition, account, qos, time and memory (a partition it does not have, a node too small), without
    submitting anything; its answer becomes one line."""
    import subprocess
    import tempfile

    from submitit.slurm.slurm import _make_sbatch_string

    with tempfile.TemporaryDirectory(prefix="declip-sbatch-check-") as tmp:
        params = make_executor(tmp, opts).parameters
        script = os.path.join(tmp, "check.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write(_make_sbatch_string(command="true", folder=tmp, **params))
        try:
            done = subprocess.run(["sbatch", "--test-only", script], capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError) as e:
            raise ConfigError(f"--executor slurm: sbatch --test-only could not run: {e}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + "\n" + done.stdout).splitlines() if ln.strip()]
        raise ConfigError(f"--executor slurm: the scheduler refuses the jobs' options "
                          f"({', '.join(_option_text(opts))}): "
                          f"{lines[-1] if lines else f'sbatch exit status {done.returncode}'} (sbatch --test-only; "
                          f"nothing was submitted)")


def _option_text(opts):
    """The command's SLURM options as typed (for messages)."""
    out = [f"--partition {opts.partition}"] if opts.partition else []
    out += [f"--time {opts.time_min} min"] + ([f"--mem {opts.mem_gb:g}G"] if opts.mem_gb else [])
    out += [f"--gpus_per_job {1 if opts.gpus_per_job is None else opts.gpus_per_job}"]
    return out + [f"--slurm_opt {k}={v}" for k, v in opts.slurm_opts.items()]


# ---- job records and states -------------------------------------------------------------------------

def write_record(out, cell_id, executor, job, state, error=None):
    paths = job.paths
    _write_record(out, cell_id, {
        "cell": cell_id, "executor": executor, "job_id": str(job.job_id), "state": state, "error": error,
        "stdout": str(paths.stdout), "stderr": str(paths.stderr), "time": time.strftime("%Y-%m-%d %H:%M:%S")})


def job_state(out, rec):
    """``queued`` / ``running`` / ``failed`` / ``ended`` / ``unknown`` of a recorded job (asking the scheduler)."""
    return job_state_detail(out, rec)[0]


def job_state_detail(out, rec):
    """(state, what the scheduler said) of a recorded job; (None, "") without a record."""
    if rec is None:
        return None, ""
    if rec.get("state") == "failed":
        return "failed", rec.get("error") or ""
    if rec["executor"] == "local":
        return ("running", "") if _local_alive(rec["job_id"]) else ("ended", "the job's process is gone")
    if rec["executor"] == "slurm":
        raw = (_slurm_job(out, rec).state.split() or ["UNKNOWN"])[0].upper()
        if raw == "UNKNOWN":  # sacct does not know it (not yet, or no longer)
            return "unknown", "sacct does not know this job"
        if raw in _QUEUED:
            return "queued", raw
        if raw in _RUNNING:
            return "running", raw
        return ("failed" if raw != "COMPLETED" else "ended"), f"sacct: {raw}"
    return "ended", "the process that ran it ended"  # debug: in-process, gone with its process


def _local_alive(pid):
    try:
        pid = int(pid)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"submitit" in f.read()
    except OSError:
        return True


def _slurm_job(out, rec):
    from submitit.slurm.slurm import SlurmJob

    return SlurmJob(folder=submitit_folder(out), job_id=rec["job_id"])


def failure_text(job):
    """The last meaningful line of a failed job's error (or of its stderr log)."""
    try:
        exc = job.exception()
    except Exception as e:  # noqa: BLE001 - submitit raises what the scheduler said
        exc = e
    lines = [ln.strip() for ln in str(exc or "").splitlines() if ln.strip()]
    error_lines = [ln for ln in lines if ln.split(":")[0].endswith(("Error", "Exception", "Interrupt"))]
    return (error_lines or lines or ["job ended without a result"])[-1][:300]


class _EarlierLocalJob:
    """A local job started by an earlier command (only its pid is known): done when it is gone."""

    def __init__(self, out, rec):
        from submitit.core.utils import JobPaths

        self.job_id, self.paths = rec["job_id"], JobPaths(submitit_folder(out), job_id=rec["job_id"])

    def done(self):
        return not _local_alive(self.job_id)

    def exception(self):
        return RuntimeError(f"local job {self.job_id} (started by an earlier command) ended without a result")

    def cancel(self, check=False):
        pass


def _attach(out, rec):
    return _slurm_job(out, rec) if rec["executor"] == "slurm" else _EarlierLocalJob(out, rec)


# ---- running the grid ---------------------------------------------------------------------------------

@dataclasses.dataclass
class GridRun:
    """What one command did: cells kept (complete before), finished now, failed now, still running."""
    kept: list = dataclasses.field(default_factory=list)
    finished: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)
    waiting: list = dataclasses.field(default_factory=list)
    unknown: list = dataclasses.field(default_factory=list)  # recorded SLURM jobs that sacct does not know


def run_grid(p, opts):
    """Run every unfinished cell of protocol ``p`` as a job; a cell whose job (from an earlier command)
    is still queued or running is waited for, not submitted twice. Returns a :class:`GridRun`."""
    executor = make_executor(p.out, opts)
    run, todo, active = GridRun(), [], {}
    for cid in p.cell_ids():
        if p.done(cid):
            run.kept.append(cid)
            continue
        rec = read_record(p.out, cid)
        state = job_state(p.out, rec)
        if state in ("queued", "running"):
            logger.info("protocol: cell %s: job %s is %s (an earlier command's); waiting for it", cid,
                        rec["job_id"], state)
            active[cid] = _attach(p.out, rec)
        elif state == "unknown":  # neither resubmitted (it may still run) nor waited for (it may be gone)
            run.unknown.append(cid)
        else:
            todo.append(cid)
    if opts.executor == "debug":
        for cid in todo:
            job = executor.submit(CellJob(p.out, cid))
            write_record(p.out, cid, "debug", job, "running")
            job.result()  # in this process; an error ends the command, as without an executor
            write_record(p.out, cid, "debug", job, "done")
            run.finished.append(cid)
        return run
    if opts.executor == "slurm":
        active.update(_submit_slurm(p, executor, todo, opts.report))
        todo = []
        if not opts.wait:
            run.waiting = list(active)
            return run
    _wait(p, opts, executor, todo, active, run)
    return run


def _submit_slurm(p, executor, cell_ids, report=True):
    if not cell_ids:
        return {}
    try:  # sbatch's own error lines (submitit prints them) go into the one line
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # one job array: --max_parallel its %N
            jobs = [executor.submit(CellJob(p.out, cid, finish=True, report=report)) for cid in cell_ids]
    except (FailedJobError, FailedSubmissionError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise SubmissionError(f"sbatch refused the jobs of cell(s) {', '.join(cell_ids)}: "
                              f"{lines[-1] if lines else repr(e)}") from None
    for cid, job in zip(cell_ids, jobs):
        write_record(p.out, cid, "slurm", job, "submitted")
        logger.info("protocol: cell %s submitted as SLURM job %s (log %s)", cid, job.job_id, job.paths.stderr)
    return dict(zip(cell_ids, jobs))


class SubmissionError(DeclipError):
    """The scheduler refused a submission (nothing of it runs)."""


def _wait(p, opts, executor, queue, active, run):
    """Start queued local jobs while fewer than --max_parallel run; gather every job as it ends."""
    cap = opts.max_parallel or (1 if opts.executor == "local" else len(queue) + len(active))
    free = list(range(int(opts.gpus_per_job or 0) * cap))  # local GPU slots
    gpus_of = {}
    begun = time.time()
    try:
        while queue or active:
            while queue and len(active) < cap:
                cid = queue.pop(0)
                if opts.gpus_per_job:
                    gpus_of[cid], free = free[:opts.gpus_per_job], free[opts.gpus_per_job:]
                    executor.update_parameters(visible_gpus=gpus_of[cid])
                with _controller_ignores_sigint():
                    job = executor.submit(CellJob(p.out, cid))
                write_record(p.out, cid, opts.executor, job, "submitted")
                logger.info("protocol: cell %s started as local job %s (log %s)", cid, job.job_id, job.paths.stdout)
                active[cid] = job
            if opts.executor == "slurm" and active:
                _ask_slurm()
            for cid, job in list(active.items()):
                if job.done():
                    del active[cid]
                    free += gpus_of.pop(cid, [])
                    _gather(p, opts.executor, cid, job, run)
            if active:
                time.sleep(_poll_interval(opts, time.time() - begun))
    except KeyboardInterrupt:
        if opts.executor == "local":
            _stop_local_jobs(active)
        elif active:
            logger.warning("protocol: stopped waiting; the SLURM jobs %s keep running (declip protocol --status %s; "
                           "rerun the command to wait for them again)", ", ".join(j.job_id for j in active.values()),
                           p.out)
        raise


@contextlib.contextmanager
def _controller_ignores_sigint():
    """A local job's controller (submitit's, started by ``submit``) starts with SIGINT ignored: Ctrl-C at a
    terminal reaches every process of the group, and submitit's own cancel is a SIGINT too; either ended the
    controller with a KeyboardInterrupt traceback on this terminal. Its task takes SIGINT back
    (:func:`_take_signals_back`); the command stops a job with SIGTERM (:func:`_stop_local_jobs`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_local_jobs(active, patience_s=60.0):
    """Stop the local jobs this command started: SIGTERM to each controller, which passes it to its task
    (a run stops as on SIGTERM: engine/signals.py), repeated until they end (a task that has not yet taken
    SIGTERM back ignores it) or ``patience_s`` passes."""
    jobs = [j for j in active.values() if not isinstance(j, _EarlierLocalJob)]
    deadline, last = time.time() + patience_s, 0.0
    while jobs and time.time() < deadline:
        if time.time() - last >= 2.0:
            for job in jobs:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(job.job_id), signal.SIGTERM)
            last = time.time()
        time.sleep(0.1)
        jobs = [j for j in jobs if not j.done()]
    if jobs:
        logger.warning("protocol: local job(s) %s did not stop within %.0f s; stop them with kill",
                       ", ".join(j.job_id for j in jobs), patience_s)


def _take_signals_back():
    """In a local job's task: SIGINT raises KeyboardInterrupt again (it inherits the controller's ignored
    SIGINT), and SIGTERM goes to the engine (submitit's job ignores it; the command stops a local job
    with it), so a run stops cleanly on either."""
    if os.environ.get("SUBMITIT_EXECUTOR") == "local" and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _poll_interval(opts, elapsed):
    """Seconds between looks: local 0.5; SLURM from 2 s, growing to 30 s (one sacct call each)."""
    if opts.poll_s:
        return opts.poll_s
    return 0.5 if opts.executor == "local" else min(30.0, max(2.0, elapsed / 20))


def _ask_slurm():
    """One sacct call for every job this process watches (submitit's own spacing grows to minutes)."""
    from submitit.slurm.slurm import SlurmJob

    SlurmJob.watcher.update()


def _gather(p, executor_name, cid, job, run):
    if p.done(cid):
        write_record(p.out, cid, executor_name, job, "done")
        run.finished.append(cid)
        return
    error = failure_text(job)
    write_record(p.out, cid, executor_name, job, "failed", error=error)
    run.failed.append(cid)
    logger.error("protocol: cell %s failed (job %s): %s; log: %s", cid, job.job_id, error, job.paths.stderr)


def status_rows(p):
    """One row per cell: (cell, method, train, state, job id, where: run dir or log path, error)."""
    rows = []
    for cid in p.cell_ids():
        cell, rec = p.cell(cid), read_record(p.out, cid)
        if p.done(cid):
            rows.append((cid, cell["method"], cell["train"], "done", rec["job_id"] if rec else "",
                         p.result(cid)["run_dir"], ""))
            continue
        state, detail = job_state_detail(p.out, rec)
        if state is None:
            rows.append((cid, cell["method"], cell["train"], "missing", "", "", "not submitted"))
            continue
        if state == "ended":
            state, detail = "failed", f"ended without a result ({detail})"  # the job is gone, the cell not done
        log = rec["stderr"] if state == "failed" else rec["stdout"]
        rows.append((cid, cell["method"], cell["train"], state, rec["job_id"], log,
                     detail if state in ("failed", "unknown") else ""))
    return rows


def format_status(p):
    rows = status_rows(p)
    head = ("cell", "method", "train", "state", "job", "run dir / log", "error")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    counts = {}
    for r in rows:
        counts[r[3]] = counts.get(r[3], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"protocol {p.out}: {len(rows)} cell(s): {summary}\n\n" + "\n".join(lines) + "\n"
