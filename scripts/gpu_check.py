"""The GPU check (run through scripts/gpu_check.sh): every CUDA path of the project, measured in one run.

Steps (each one's result, or its error, goes into logs/gpu_check/<device>.json and .md):

1. ``bench``: ``declip bench`` reference vs optimized (inference img/s, first-epoch and warm-cache
   training img/s, peak memory) for ViT-L/14 layer20 + conv-20 at batch 64, again with ``--compile``,
   and for the ViT-L/14,RN50 fusion.
2. ``ddp``: ``torchrun --nproc_per_node=<every GPU> -m declip_plugin train --ddp`` of the demo
   detector on the demo data (NCCL), whose test results must equal a single-process ``declip test``
   of the same checkpoint.
3. ``precision``: that trained demo model's mask logits and IoU under bf16 (what ``precision: auto``
   runs on this GPU) vs fp32 autocast-free, on the demo test images.
4. ``dfb``: DeepfakeBench's own train.py through ``declip dfb train`` for one epoch on the demo
   export, with our localization line in its training.log (needs DEEPFAKEBENCH_ROOT and
   DEEPFAKEBENCH_PYTHON; ``bash scripts/setup_dfb_env.sh`` builds both).

``--dry-run`` runs the same steps on the CPU at tiny shapes (tiny towers, batch 1 or 2, 2 gloo processes,
``torch.compile`` with the eager backend, bf16 autocast on the CPU, train.py's CUDA calls stubbed by
tests/dfb_harness) in seconds: CI runs it, so the script is known to work before a GPU exists.
"""
import argparse
import datetime
import functools
import glob
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

import torch

logger = logging.getLogger("gpu_check")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = ("bench", "ddp", "precision", "dfb")
DEMO = "demo-telea"
TINY_VIT = {"backbone": "declip-tiny-vit-96", "resolution": 96}
#: what each mode runs: bench cases (title, detector, overrides, compile, warm-up batches) and sizes
PLANS = {
    "gpu": {"bench": [("ViT-L/14 layer20 + conv-20", "declip", {}, False, 1),
                      ("ViT-L/14 layer20 + conv-20, --compile", "declip", {}, True, 3),
                      ("ViT-L/14,RN50 layer20 + conv-20 (fusion)", "declip_vit_rn50", {}, False, 1)],
            "batch_size": 64, "n_images": 256, "demo": {"size": 128, "n_train": 48, "n_val": 8, "n_test": 16},
            "epochs": 6, "demo_opts": {}},
    "dry-run": {"bench": [("tiny ViT layer1 + conv-4", "declip_quick", TINY_VIT, False, 1),
                          ("tiny ViT layer1 + conv-4, --compile (eager backend)", "declip_quick", TINY_VIT, True, 1),
                          ("tiny ViT,RN layer0 + conv-4 (fusion, 224 px)", "declip_quick",
                           {"backbone": "declip-tiny-vit,declip-tiny-rn", "feature_layer": "layer0"},
                           False, 1)],
                "batch_size": 1, "n_images": 1, "demo": {"size": 64, "n_train": 2, "n_val": 1, "n_test": 2},
                "epochs": 1, "demo_opts": {"train_batchSize": 2, "test_batchSize": 2}},
}
#: goals of issue 20 (H100/H200 class GPUs)
GOALS = {"inference_img_s": 1500, "warm_train_x_ref": 5.0, "bf16_iou_points": 1.0}


# --- environment -------------------------------------------------------------------------------------
def environment(dry_run):
    from declip_plugin import __version__

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "declip_plugin": __version__,
           "python": platform.python_version(), "dry_run": dry_run,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if dry_run:
        from declip_plugin.bench import device_name

        return {**env, "device": device_name(torch.device("cpu")), "driver": None, "gpus": 0}
    props = torch.cuda.get_device_properties(0)
    return {**env, "device": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count(),
            "memory_gb": round(props.total_memory / 2 ** 30, 1), "compute_capability": f"{props.major}.{props.minor}",
            "driver": _driver_version()}


def _driver_version():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def slug(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "device"


# --- step 1: declip bench ----------------------------------------------------------------------------
def step_bench(plan, device):
    from declip_plugin.bench import run_bench

    out = []
    for title, detector, overrides, compile_model, warmup in plan["bench"]:
        r = run_bench(detector, batch_size=plan["batch_size"], n_images=plan["n_images"], device=device.type,
                      modes=("inference", "train"), overrides=dict(overrides), compile=compile_model, warmup=warmup)
        logger.info("bench %s\n%s", title, r["table"])
        rows = [{k: row[k] for k in ("mode", "configuration", "precision", "img_s", "peak_mem_mb")}
                for row in r["results"]]
        out.append({"case": title, "command": r["command"], "rows": rows, "ratios": r["ratios"],
                    "reference_check_max_abs_diff": r["reference_check_max_abs_diff"]})
    return out


def eager_compile():
    """Dry run: ``torch.compile`` with the eager backend (Dynamo traces the module as on a GPU; no
    inductor code generation, which takes minutes on two CPU cores)."""
    torch.compile = functools.partial(torch.compile, backend="eager")


# --- step 2: torchrun + DDP ------------------------------------------------------------------------------
def run_logged(cmd, log_path, env=None, timeout=600):
    """``cmd`` with stdout and stderr into ``log_path``; its exit status (a failure names the log)."""
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-3000:]
        what = cmd[2] if len(cmd) > 2 else cmd[0]
        raise RuntimeError(f"{what} exited with {proc.returncode} (log {log_path}):\n{tail}")


def only_dir(pattern):
    found = sorted(glob.glob(pattern))
    if len(found) != 1:
        raise RuntimeError(f"expected one run directory {pattern}, found {found}")
    return found[0]


def step_ddp(plan, device, work, nproc):
    """torchrun: DDP training of the demo detector (its test sharded over the ranks), then a
    single-process test of its checkpoint; the metrics must agree."""
    from declip_plugin.engine.run import test

    common = ["--data_root", work["data"], "--device", device.type,
              *sum((["--opt", f"{k}={v}"] for k, v in plan["demo_opts"].items()), [])]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "declip_plugin", "train", "--ddp", "--detector_path", "declip_demo", "--train_dataset", DEMO,
           "--test_dataset", DEMO, "--log_dir", os.path.join(work["dir"], "ddp"), "--opt",
           f"nEpochs={plan['epochs']}", *common]
    t0 = time.perf_counter()
    run_logged(cmd, os.path.join(work["dir"], "torchrun_train.log"),
               env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    seconds = time.perf_counter() - t0
    from declip_plugin.run_folder import RunDir

    run = only_dir(os.path.join(work["dir"], "ddp", "*"))
    work["weights"] = RunDir(run).best_checkpoint
    overrides = {"data_root": work["data"], "device": device.type, "test_dataset": [DEMO],
                 "log_dir": os.path.join(work["dir"], "single"), **plan["demo_opts"]}
    single = test("declip_demo", work["weights"], overrides)
    multi = _metrics(run)
    one = _metrics(single)
    diffs = {k: abs(multi[k] - one[k]) for k in one if isinstance(one[k], float) and isinstance(multi.get(k), float)
             and one[k] == one[k] and multi[k] == multi[k]}
    worst = max(diffs, key=diffs.get)
    precision = RunDir(run).read_info().get("precision")
    return {"command": " ".join(cmd[2:]), "processes": nproc, "backend": "nccl" if device.type == "cuda" else "gloo",
            "seconds": round(seconds, 1), "precision": precision, "n_images": one.get("n_images"),
            "torchrun": {k: multi[k] for k in ("iou", "f1", "pixel_ap") if k in multi},
            "single_process": {k: one[k] for k in ("iou", "f1", "pixel_ap") if k in one},
            "max_abs_diff": diffs[worst], "max_abs_diff_metric": worst,
            "ok": diffs[worst] <= 1e-3 * max(1.0, abs(one[worst]))}


def _metrics(run_dir):
    from declip_plugin.run_folder import RunDir

    return RunDir(run_dir).test(DEMO).read_metrics()["metrics"]


# --- step 3: bf16 vs fp32 -----------------------------------------------------------------------------------
def step_precision(plan, device, work):
    """The trained demo model on the demo test images: max |mask logit (low precision) - (fp32)|
    and the IoU of each, through the engine's evaluator. The low precision is what ``precision: auto``
    runs on this GPU; in the dry run bf16 autocast on the CPU (which the engine itself never uses)."""
    from declip_plugin.config import load_run_config
    from declip_plugin.engine import runtime
    from declip_plugin.engine.evaluator import evaluate, to_device
    from declip_plugin.engine.loaders import build_split, data_config, make_loader
    from declip_plugin.engine.run import prepare_detector

    config = load_run_config("declip_demo", "test", {"data_root": work["data"], "device": device.type,
                                                     **plan["demo_opts"]})
    detector = prepare_detector(config, device, work["weights"])
    config = data_config(config, detector)
    loader = make_loader(build_split([DEMO], "test", config), config, train=False, device=device)
    low = (runtime.decide_precision("auto", device) if device.type == "cuda"
           else runtime.Precision("bf16", "cpu", "bf16", "dry run: bf16 autocast on the CPU"))
    fp32 = runtime.Precision("fp32", device.type, "fp32")
    detector.eval()
    worst, n = 0.0, 0
    with torch.inference_mode():
        for batch in loader:
            batch = to_device(batch, device)
            with fp32.autocast():
                ref = detector(batch, inference=True)["mask"].float()
            with low.autocast():
                got = detector(batch, inference=True)["mask"].float()
            worst, n = max(worst, float((got - ref).abs().max())), n + int(ref.shape[0])
    iou = {p.name: evaluate(detector, loader, device, config, p, progress=False).metrics["iou"] for p in (fp32, low)}
    return {"precision": low.name, "reason": low.reason, "images": n, "max_abs_mask_logit_diff": worst,
            "iou_fp32": iou["fp32"], f"iou_{low.name}": iou[low.name],
            "iou_points_diff": abs(iou[low.name] - iou["fp32"])}


# --- step 4: DeepfakeBench's train.py ------------------------------------------------------------------------
def step_dfb(plan, device, work):
    """``declip dfb train`` for one epoch on the demo export; our localization line must be in the
    Trainer's training.log."""
    root, python = os.environ.get("DEEPFAKEBENCH_ROOT"), os.environ.get("DEEPFAKEBENCH_PYTHON")
    if not root or not python:
        return {"skipped": "DEEPFAKEBENCH_ROOT / DEEPFAKEBENCH_PYTHON unset "
                           "(bash scripts/setup_dfb_env.sh builds .dfb/)"}
    from declip_plugin.integrations import export_dfb

    summary = export_dfb(DEMO, os.path.join(work["dir"], "export"),
                         {"data_root": work["data"], "bench_root": root, "detector": "declip_demo"})
    logs = os.path.join(work["dir"], "dfb_logs")
    opts = ["--stub_datasets", "--data", summary["out_dir"], "--opt", f"log_dir={logs}", "--opt", "nEpochs=1",
            "--opt", "workers=0", *sum((["--opt", f"{k}={v}"] for k, v in plan["demo_opts"].items()), [])]
    cmd = [sys.executable, "-m", "declip_plugin", "dfb", "train", "--bench_root", root, "--python", python, *opts,
           "--", "--detector_path", summary["yaml"], "--train_dataset", DEMO, "--test_dataset", DEMO, "--no-save_feat"]
    env = dict(os.environ)
    if device.type == "cpu":  # dry run: train.py's CUDA calls stubbed (the tests' harness)
        env.update(DECLIP_TEST_STUB_CUDA="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(ROOT, "tests", "dfb_harness"),
                                                            env.get("PYTHONPATH")])))
    t0 = time.perf_counter()
    run_logged(cmd, os.path.join(work["dir"], "dfb_train.log"), env=env)
    run = only_dir(os.path.join(logs, "declip_*"))
    with open(os.path.join(run, "training.log"), encoding="utf-8") as f:
        lines = [ln.strip() for ln in f if "localization (declip_plugin): " in ln]
    if not lines:
        raise RuntimeError(f"no 'localization (declip_plugin)' line in {run}/training.log")
    return {"command": " ".join(["declip", *cmd[3:]]), "seconds": round(time.perf_counter() - t0, 1),
            "localization_line": lines[-1], "cuda_stubbed": device.type == "cpu"}


# --- the report ---------------------------------------------------------------------------------------------
def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def markdown(result):
    e = result["environment"]
    lines = [f"# GPU check: {e['device']}", "",
             f"device: {e['device']} ({e.get('gpus')} GPU(s)) | driver {e.get('driver')} | CUDA {e['cuda']} | "
             f"torch {e['torch']} | declip_plugin {e['declip_plugin']} | python {e['python']} | {e['date']}"
             + (" | DRY RUN (CPU, tiny shapes: the figures say nothing about speed)" if e["dry_run"] else ""), "",
             f"command: `{result['command']}`", ""]
    steps = result["steps"]
    for name in STEPS:
        s = steps.get(name)
        if s is None:
            continue
        if "error" in s or "skipped" in s:
            lines += [f"## {name}", "", f"{'FAILED' if 'error' in s else 'skipped'}: "
                      f"{(s.get('error') or s.get('skipped')).splitlines()[0]}", ""]
            continue
        lines += RENDER[name](s["result"]) + [""]
    lines += ["## goals", "", "| goal | measured | status |", "| --- | --- | --- |"]
    lines += [f"| {g} | {m} | {st} |" for g, m, st in goals(result)]
    return "\n".join(lines) + "\n"


def _render_bench(cases):
    out = ["## declip bench (reference vs optimized)", "",
           "| case | mode | configuration | precision | img/s | x ref | peak MB |",
           "| --- | --- | --- | --- | ---: | ---: | ---: |"]
    for c in cases:
        ratio = {("train", "optimized, first epoch"): c["ratios"].get("train_first_epoch"),
                 ("train", "optimized, cached"): c["ratios"].get("train_cached"),
                 ("inference", "optimized"): c["ratios"].get("inference"),
                 ("inference", "optimized, cached"): c["ratios"].get("inference_cached")}
        for r in c["rows"]:
            x = 1.0 if r["configuration"] == "reference" else ratio.get((r["mode"], r["configuration"]))
            out.append(f"| {c['case']} | {r['mode']} | {r['configuration']} | {r['precision']} | {r['img_s']:.1f} | "
                       f"{_fmt(x, '.2f')} | {_fmt(r['peak_mem_mb'], '.0f')} |")
    return out + [""] + [f"- {c['case']}: `{c['command']}`" for c in cases]


def _render_ddp(s):
    return ["## torchrun (DDP) vs one process", "",
            f"`{s['command']}`: {s['processes']} process(es), {s['backend']}, {s['seconds']} s; precision "
            f"{(s.get('precision') or {}).get('used')}", "",
            "| metric | torchrun | one process |", "| --- | ---: | ---: |",
            *[f"| {k} | {v:.6f} | {s['single_process'][k]:.6f} |" for k, v in s["torchrun"].items()], "",
            f"max |diff| over every metric: {s['max_abs_diff']:.2e} ({s['max_abs_diff_metric']}): "
            f"{'same metrics' if s['ok'] else 'DIFFERENT'}"]


def _render_precision(s):
    low = s["precision"]
    return ["## mask logits and IoU: " + low + " vs fp32 (trained demo model, demo test images)", "",
            f"{s['images']} images; max |mask logit {low} - fp32| = {s['max_abs_mask_logit_diff']:.3e}; IoU fp32 "
            f"{s['iou_fp32']:.2f}, {low} {s['iou_' + low]:.2f} (|diff| {s['iou_points_diff']:.2f} points); "
            f"{s['reason']}"]


def _render_dfb(s):
    return ["## DeepfakeBench train.py (declip dfb train, 1 epoch, demo export)", "",
            f"`{s['command']}` ({s['seconds']} s{'; CUDA calls stubbed: dry run' if s['cuda_stubbed'] else ''})", "",
            f"training.log: `{s['localization_line']}`"]


RENDER = {"bench": _render_bench, "ddp": _render_ddp, "precision": _render_precision, "dfb": _render_dfb}


def goals(result):
    """(goal, measured, status) of issue 20; only a GPU run can meet them."""
    steps, dry = result["steps"], result["environment"]["dry_run"]
    bench = (steps.get("bench") or {}).get("result") or []
    first = bench[0] if bench else None
    inf = next((r["img_s"] for r in first["rows"] if r["mode"] == "inference" and r["configuration"] == "optimized"),
               None) if first else None
    warm = first["ratios"].get("train_cached") if first else None
    prec = (steps.get("precision") or {}).get("result")
    points = prec["iou_points_diff"] if prec else None
    rows = [(f"inference >= {GOALS['inference_img_s']} img/s (ViT-L/14 + conv-20, H100/H200)", _fmt(inf),
             inf is not None and inf >= GOALS["inference_img_s"]),
            (f"warm-cache training >= {GOALS['warm_train_x_ref']}x the reference", _fmt(warm, ".2f") + "x",
             warm is not None and warm >= GOALS["warm_train_x_ref"]),
            (f"bf16 IoU within {GOALS['bf16_iou_points']} point of fp32", _fmt(points, ".2f"),
             points is not None and points <= GOALS["bf16_iou_points"])]
    return [(g, m, "n/a (dry run)" if dry else ("met" if ok else "missed")) for g, m, ok in rows]


# --- main -----------------------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU at tiny shapes (gloo, seconds): what CI runs")
    p.add_argument("--out", default=os.path.join("logs", "gpu_check"), help="where <device>.json and .md go")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {', '.join(STEPS)}")
    p.add_argument("--nproc", type=int, help="torchrun processes (default: every GPU; 2 in the dry run)")
    args = p.parse_args(argv)
    args.steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in args.steps if s not in STEPS]
    if bad:
        p.error(f"--steps {','.join(bad)}: use {', '.join(STEPS)}")
    if "precision" in args.steps and "ddp" not in args.steps:
        p.error("--steps precision needs ddp (it measures the model the ddp step trains)")
    return args


def _cpu_seconds():
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_steps(args, plan, device, work):
    steps = {}
    runners = {"bench": lambda: step_bench(plan, device),
               "ddp": lambda: step_ddp(plan, device, work, args.nproc),
               "precision": lambda: step_precision(plan, device, work), "dfb": lambda: step_dfb(plan, device, work)}
    for name in STEPS:
        if name not in args.steps:
            continue
        if name == "precision" and "weights" not in work:
            steps[name] = {"error": "not run: the ddp step trained no model"}
            continue
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        logger.info("gpu_check: step %s ...", name)
        try:
            out = runners[name]()
            steps[name] = dict(out) if "skipped" in (out if isinstance(out, dict) else {}) else {"result": out}
        except Exception as exc:  # a failed step is reported and the others still run
            logger.exception("gpu_check: step %s failed", name)
            steps[name] = {"error": f"{type(exc).__name__}: {exc}"}
        steps[name]["seconds"] = round(time.perf_counter() - t0, 1)
        steps[name]["cpu_seconds"] = round(_cpu_seconds() - cpu0, 1)  # this process and its children
        logger.info("gpu_check: step %s %s in %.1f s (%.1f CPU s)", name,
                    "failed" if "error" in steps[name] else "done", steps[name]["seconds"], steps[name]["cpu_seconds"])
    return steps


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA device: run scripts/gpu_check.sh on a GPU machine, or --dry-run on this one",
              file=sys.stderr)
        return 2
    from declip_plugin.atomicio import atomic_write_text, check_output_dir
    from declip_plugin.data.demo import make_demo_data

    check_output_dir(args.out, "--out")
    plan = PLANS["dry-run" if args.dry_run else "gpu"]
    device = torch.device("cpu" if args.dry_run else "cuda")
    args.nproc = args.nproc or (2 if args.dry_run else torch.cuda.device_count())
    if args.dry_run:
        eager_compile()
    t0 = time.perf_counter()
    result = {"environment": environment(args.dry_run),
              "command": "bash scripts/gpu_check.sh" + (" --dry-run" if args.dry_run else "")}
    with tempfile.TemporaryDirectory(prefix="declip-gpu-check-") as tmp:
        work = {"dir": tmp, "data": os.path.join(tmp, "data")}
        make_demo_data(os.path.join(work["data"], "demo"), seed=1, **plan["demo"])
        result["steps"] = run_steps(args, plan, device, work)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    name = slug(result["environment"]["device"] + ("-dry-run" if args.dry_run else ""))
    base = os.path.join(args.out, name)
    atomic_write_text(base + ".json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(base + ".md", markdown(result))
    print(markdown(result))
    failed = [n for n, s in result["steps"].items() if "error" in s]
    print(f"gpu_check: {base}.json and {base}.md written in {result['seconds']} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
