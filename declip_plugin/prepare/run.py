"""``declip prepare``'s run: check everything, process the inputs not done yet (in worker processes),
then write the dataset.

Everything the run needs is checked before anything is written: SRC and its labels, the masks, the
name, OUT, the face model, and that OUT's earlier run of this dataset (its state folder) used the same
settings. Then each input without a done marker (writer.py) is processed, in ``workers`` processes
(one dlib model each), a progress bar on a terminal, one line per input otherwise. An input that
cannot be read is listed (its reason) and left out, one with no face in any sampled frame too; the
dataset is written from the rest. Ctrl-C or SIGTERM stops the workers at once; the same command
continues where the run stopped.
"""
import dataclasses
import logging
import multiprocessing
import os
import shutil
import time
from typing import Optional

from ..atomicio import check_output_dir
from ..progress import PROGRESS, on_terminal, progress, quiet
from ..errors import DataError
from .. import deepfakebench_facts as facts
from ..integrations.deepfakebench.export import check_name, json_frame_path, label_names
from . import dataset as ds
from . import worker
from .inputs import find_inputs, match_masks, name_inputs, split_inputs
from .writer import Settings, Tree, read_marker, recorded_settings, source_key, write_settings

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Options:
    name: str
    settings: Settings = dataclasses.field(default_factory=Settings)
    label: Optional[str] = None
    masks: Optional[str] = None
    frame_folders: bool = False
    split: str = "hash"
    split_ratios: tuple = (0.8, 0.1, 0.1)
    workers: int = 0  # 0: one per CPU core
    lmdb: bool = False
    bench_root: Optional[str] = None
    overwrite: bool = False


@dataclasses.dataclass
class Plan:
    src: str
    tree: Tree
    items: list
    ignored: list
    settings: Settings
    base: str  # what the JSON's frame paths are relative to
    options: Options


def _resolve_settings(settings):
    if settings.faces == "none":
        return settings
    from ..media.faces import landmark_model_path, require_dlib

    require_dlib()
    return dataclasses.replace(settings, model=landmark_model_path(settings.model))


def _base_dir(bench_root, out):
    if not bench_root:
        return os.path.realpath(out)
    root = os.path.abspath(os.path.expanduser(str(bench_root)))
    if not os.path.isdir(root):
        raise DataError(f"--bench_root {root} is not a folder (the DeepfakeBench checkout the frame paths are made "
                        f"relative to)")
    return os.path.realpath(root)


def make_plan(src, out, options):
    """Everything checked, nothing written: the :class:`Plan` of a run."""
    check_name(options.name)
    out = check_output_dir(out, "prepare OUT")
    found = find_inputs(src, options.label, options.frame_folders, skip=[out])
    items = name_inputs(found.items)
    if options.masks:
        items = match_masks(items, options.masks)
    items = split_inputs(items, options.split, options.split_ratios)
    settings = _resolve_settings(options.settings)
    ds.check_registration(options.name)
    tree = Tree(out, options.name, label_names(options.name))
    base = _base_dir(options.bench_root, out)
    probe = json_frame_path(os.path.join(tree.rgb_root, tree.labels[0], facts.FRAMES_DIR, "v", "0.png"), base)
    if probe.count(facts.FRAMES_DIR) != 1:
        raise DataError(f"the frame paths would be like {probe}: 'frames' more than once, so DeepfakeBench would look "
                        f"for masks in the wrong place (it replaces every 'frames'): choose an OUT (or --bench_root) "
                        f"whose path does not contain 'frames'")
    _check_state(tree, settings, options.overwrite)
    ignored = found.ignored
    if options.masks:  # a masks folder inside SRC is not an input left out
        masks = os.path.abspath(options.masks)
        ignored = [p for p in ignored if p != masks and not p.startswith(masks + os.sep)]
    return Plan(os.path.abspath(str(src)), tree, items, ignored, settings, base, options)


def _check_state(tree, settings, overwrite):
    recorded = recorded_settings(tree)
    if recorded is None or overwrite:
        return
    now = settings.record()
    changed = [k for k in sorted(set(now) | set(recorded)) if now.get(k) != recorded.get(k)]
    if changed:
        was = ", ".join(f"{k} {recorded.get(k)}" for k in changed)
        raise DataError(f"{tree.state} holds a run of dataset {tree.name} with {was} (now "
                        f"{', '.join(f'{k} {now.get(k)}' for k in changed)}): rerun with those settings to continue "
                        f"it, or pass --overwrite to start over (or choose another OUT or --name)")


def _start_over(tree):
    for path in (tree.rgb_root, tree.state, os.path.join(tree.out, "lmdb", f"{tree.name}_lmdb")):
        shutil.rmtree(path, ignore_errors=True)
    for path in (os.path.join(tree.out, "dataset_json", f"{tree.name}.json"),
                 os.path.join(tree.out, f"export_{tree.name}.json")):
        if os.path.exists(path):
            os.unlink(path)


# ----------------------------------------------------------------------------- the workers
def run_jobs(tree, settings, items, workers):
    """Yield ``(item, marker or failure)`` for each item, in ``workers`` processes (1: in this one)."""
    if workers <= 1 or len(items) <= 1:
        worker.setup(tree, settings, worker=False)
        for item in items:
            yield worker.job(item)
        return
    # spawn: a forked worker can hang in OpenCV's or torch's threads the parent has run
    pool = multiprocessing.get_context("spawn").Pool(min(workers, len(items)), worker.setup,
                                                     (tree, settings, True, logging.getLogger().getEffectiveLevel()))
    try:
        yield from pool.imap_unordered(worker.job, items)
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C, SIGTERM, an error: the workers stop now; unfinished videos have no marker
        raise
    finally:
        pool.join()


# ----------------------------------------------------------------------------- the run
def _line(k, total, item, r):
    where = f"[{k}/{total}] {item.shown}"
    if r["status"] == "failed":
        return f"{where}: failed: {r['error']}"
    if r["status"] == "no_face":
        return f"{where}: no face in any of its {r['sampled']} sampled frames: left out"
    kept = len(r["frames"])
    faces = f" ({len(r['no_face'])} without a face)" if r["no_face"] else ""
    return f"{where}: {kept} of {r['sampled']} sampled frames written{faces}, {r['decoded']} decoded, {r['seconds']:.1f} s"


def _header_note(item, r):
    if item.kind == "video" and r.get("header") and r["header"] != r["decoded"]:
        logger.warning("%s: its header says %d frames, %d decode: frames sampled over the %d", item.shown, r["header"],
                       r["decoded"], r["decoded"])


def _process(plan, todo):
    """Run the jobs with progress output; returns {item: result} of this run."""
    total = len(todo)
    lines = not on_terminal() and not quiet()
    results = {}
    bar = progress(run_jobs(plan.tree, plan.settings, todo, plan.options.workers or os.cpu_count() or 1),
                   f"prepare {plan.tree.name}", unit="video", summary=False)
    try:
        for k, (item, r) in enumerate(bar, 1):
            results[item] = r
            _header_note(item, r)
            if r["status"] == "failed":
                logger.warning("prepare %s %s", plan.tree.name, _line(k, total, item, r))
            elif lines:
                logger.info("prepare %s %s", plan.tree.name, _line(k, total, item, r), extra=PROGRESS)
    except KeyboardInterrupt:
        logger.warning("prepare %s stopped: %d of %d inputs of this run done; the same command continues", plan.tree.name,
                       len(results), total)
        raise
    finally:
        bar.close()
    return results


def prepare_dataset(src, out, options):
    """Run ``declip prepare`` (see the package docstring); returns the summary, with ``registered``
    (the dataset config written) and ``run`` (this run's counts)."""
    plan = make_plan(src, out, options)
    tree = plan.tree
    if options.overwrite:
        _start_over(tree)
    os.makedirs(tree.state, exist_ok=True)
    write_settings(tree, plan.settings)
    markers, todo = {}, []
    for item in plan.items:
        marker = read_marker(tree, item, source_key(item))
        if marker is None:
            todo.append(item)
        else:
            markers[item] = marker
    logger.info("prepare %s: %d inputs in %s (%d done by an earlier run); faces: %s%s", tree.name, len(plan.items),
                plan.src, len(markers), plan.settings.faces,
                f" (landmark model {plan.settings.model})" if plan.settings.model else "")
    t0 = time.perf_counter()
    results = _process(plan, todo)
    seconds = time.perf_counter() - t0
    markers.update({it: r for it, r in results.items() if r["status"] != "failed"})
    return _finish(plan, markers, results, seconds)


def _finish(plan, markers, results, seconds):
    tree = plan.tree
    order = sorted(plan.items, key=lambda it: (it.label, it.name))
    done = [(it, markers[it]) for it in order if it in markers and markers[it]["status"] == "done"]
    failed = {it.shown: r["error"] for it, r in results.items() if r["status"] == "failed"}
    no_face = [it.shown for it in order if it in markers and markers[it]["status"] == "no_face"]
    if not done:
        first = next(iter(failed.values()), None)
        raise DataError(f"nothing to write for dataset {tree.name}: of {len(plan.items)} inputs {len(failed)} cannot be "
                        f"read and {len(no_face)} have no face in any sampled frame" + (f" (first: {first})" if first else ""))
    sampled = sum(r.get("sampled", 0) for r in results.values())
    run = {"inputs": len(results), "seconds": round(seconds, 2), "sampled_frames": sampled,
           "frames_per_second": round(sampled / seconds, 2) if seconds > 0 else None}
    sizes = sorted({tuple(s) for _, m in done for s in m.get("sizes", [])})
    info = {"source": plan.src, "settings": plan.settings.record(), "failed": failed, "no_face": no_face,
            "ignored": plan.ignored, "frame_sizes": [list(s) for s in sizes],
            "landmark_model": plan.settings.model, "bench_root": plan.options.bench_root, "run": run}
    summary = ds.write_dataset(tree, done, plan.base, plan.options.lmdb, info)
    summary["registered"] = ds.register(tree, summary, plan.src)
    return summary


__all__ = ["Options", "Plan", "make_plan", "prepare_dataset", "run_jobs"]
