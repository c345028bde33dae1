"""The ``declip`` command (also ``python -m declip_plugin``).

Errors meant for the user end with a one-line cause and exit status 2; ``--debug`` shows the
traceback instead.
"""
import argparse
import logging
import os
import sys

from . import __version__
from .errors import ConfigError, DeclipError, one_line

logger = logging.getLogger("declip_plugin.cli")


def _add_common(p):
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; dotted keys for nested ones, e.g. optimizer.adam.lr=1e-4)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--data_root", help="root of the dataset folders named in configs/dataset (default: "
                                       "$DECLIP_DATA_ROOT or ./datasets)")
    _add_dfb_config(p)


def _add_dfb_config(p):
    p.add_argument("--dfb_config", help="DeepfakeBench's training/config/train_config.yaml (or test_config.yaml, or "
                                        "its checkout folder): read its datasets where its preprocessing left them "
                                        "(dataset_json_folder, rgb_dir, lmdb, lmdb_dir, label_dict)")


def _overrides(args, **extra):
    from .config import parse_overrides

    out = parse_overrides(args.opt)
    for key in ("device", "data_root", "log_dir", "dfb_config"):
        if getattr(args, key, None):
            out[key] = getattr(args, key)
    for k, v in extra.items():
        if v is not None:
            out[k] = v
    return out


def cmd_train(args):
    from .engine.run import train

    overrides = _overrides(args, train_dataset=args.train_dataset, test_dataset=args.test_dataset,
                           save_ckpt=False if args.no_save_ckpt else None, task_target=args.task_target,
                           ddp=args.ddp)
    if not args.resume and not args.detector_path:
        raise DeclipError("train needs --detector_path (a YAML or a bundled name such as declip_demo), or --resume RUN_DIR")
    if args.resume and args.detector_path:
        raise DeclipError(f"--resume continues a run with its own config (config.yaml); drop --detector_path "
                          f"{args.detector_path!r} (--opt still applies)")
    if args.resume and (args.train_dataset or args.test_dataset):
        raise DeclipError("--resume continues a run with its own datasets (its config.yaml); drop --train_dataset/"
                          "--test_dataset (--opt still applies, e.g. --opt nEpochs=50 to extend it)")
    run_dir = train(args.detector_path, overrides, resume=args.resume, weights_path=args.weights_path)
    _print_results(run_dir)
    return 0


def cmd_test(args):
    from .engine.run import test

    run_dir = test(args.detector_path, args.weights_path, _overrides(args, test_dataset=args.test_dataset,
                                                                     perturb=getattr(args, "perturb", None)))
    _print_results(run_dir)
    return 0


def _print_results(run_dir):
    print(f"\nrun directory: {run_dir}")
    if os.path.isdir(os.path.join(run_dir, "test")):
        print(f"results table: declip leaderboard {run_dir}")


def cmd_predict(args):
    from .engine.predict import predict

    records, errors = predict(args.images, args.weights_path, args.detector_path, args.out, args.threshold,
                              _overrides(args), explain=args.explain)
    for r in records:
        line = f"{r['image']}: p(fake)={r['prob_fake']:.4f} ({r['label']})"
        if "mask" in r:
            line += f", {100 * r['manipulated_fraction']:.1f}% of pixels flagged -> {r['mask']}"
        maps = [r[k] for k in ("gradcam", "attention", "strip") if k in r]
        print(line + (f"; maps: {', '.join(maps)}" if maps else ""))
    for e in errors:
        print(f"error: {e['error']}", file=sys.stderr)  # the one place a bad image is reported
    print(f"summary: {os.path.join(args.out, 'predictions.json')}")
    return 1 if errors else 0


def cmd_make_demo_data(args):
    from .atomicio import check_output_dir
    from .data.demo import make_demo_data

    check_output_dir(args.out, "make-demo-data OUT")
    summary = make_demo_data(args.out, seed=args.seed, size=args.size)
    counts = "/".join(str(v) for v in summary["images_per_split"].values())
    print(f"demo data written to {args.out}: {summary['files']} files; methods {', '.join(summary['methods'])} "
          f"(datasets demo-<method>); train/valid/test images per method: {counts}")
    return 0


def cmd_make_demo_videos(args):
    from .data.demo_video import make_demo_videos

    counts = dict(zip(("n_train", "n_val", "n_test"), args.videos)) if args.videos else {}
    if any(n < 1 for n in counts.values()):
        raise DeclipError(f"--videos {' '.join(map(str, args.videos))}: give three positive counts (train val test)")
    m = make_demo_videos(args.out, seed=args.seed, size=args.size, n_frames=args.frames, paths_base=args.paths_base,
                         methods=args.methods, **counts)
    per = "/".join(str(v) for v in m["videos_per_label"].values())
    sets = ["demo-video"] + ([f"demo-video-{x}" for x in m["methods"]] if len(m["methods"]) > 1 else [])
    sets = ", ".join(sets)
    print(f"demo videos written to {args.out}: {m['files']} files in {m['seconds']}s; datasets {sets} "
          f"(DeepfakeBench JSON {m['json']}); train/val/test videos per label: {per}, {m['n_frames']} frames each")
    return 0


def cmd_leaderboard(args):
    from .atomicio import check_output_file
    from .leaderboard import collect, render

    if args.out:
        check_output_file(args.out, "--out")
    if args.by_task:
        from .leaderboard import render_by_task

        if args.format not in ("md", "html") or args.metrics or args.in_domain:
            raise DeclipError("--by-task writes one table per task in md or html; drop --metrics, --in-domain "
                              f"or --format {args.format}")
        text = "\n".join(f"### {task}\n\n{table}" if args.format == "md" else f"<h3>{task}</h3>\n{table}"
                         for task, table in render_by_task(collect(args.runs), fmt=args.format))
        if args.out:
            from .engine.rundir import atomic_write_text

            atomic_write_text(args.out, text)
            print(f"leaderboard written to {args.out}")
        else:
            print(text)
        return 0
    text = render(collect(args.runs), fmt=args.format, metrics=args.metrics.split(",") if args.metrics else None,
                  in_domain=args.in_domain.split(",") if args.in_domain else None, out=args.out)
    if args.format == "png":
        print(f"leaderboard written to {text}")
    elif args.out:
        from .engine.rundir import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"leaderboard written to {args.out}")
    else:
        print(text)
    return 0


def cmd_dfb(args):
    from .integrations.deepfakebench import launch

    if args.mode == "setup":
        return _dfb_setup(args)
    if args.venv:
        raise ConfigError("--venv is for `declip dfb setup`; train/test take the interpreter from --python, "
                          "$DEEPFAKEBENCH_PYTHON or the one `declip dfb setup` recorded")
    return launch(args.bench_root, args.mode, args.dfb_args, cpu=args.cpu, stub_datasets=args.stub_datasets or None,
                  data_dir=args.data, lmdb=args.lmdb,
                  overrides=args.opt, results_dir=args.results_dir, localization=args.localization,
                  convert_weights=args.convert_weights, python=args.python)


def _dfb_setup(args):
    from .integrations.deepfakebench.environment import setup_environment

    if args.dfb_args:
        raise ConfigError(f"`declip dfb setup` takes no script arguments after `--` (got {' '.join(args.dfb_args)})")
    env = setup_environment(args.bench_root, args.venv)
    print(f"DeepfakeBench environment ready: {env['python']}")
    print(f"  checkout {env['root']}; installed now: {', '.join(env['installed']) or 'nothing (all present)'}")
    print(f"  {env['report']}")
    print(f"  recorded in {env['recorded']}: `declip dfb --bench_root {env['root']} test|train ...` uses it;")
    print(f"  elsewhere: export DEEPFAKEBENCH_PYTHON={env['python']}")
    return 0


def cmd_export_dfb(args):
    from .integrations.deepfakebench import export_dfb

    config = {"data_root": args.data_root, "bench_root": args.bench_root, "name": args.name, "splits": args.splits,
              "include_real": False if args.no_real else None, "link": "copy" if args.copy else None,
              "lmdb": args.lmdb, "detector": args.detector, "overwrite": args.overwrite or None,
              "max_samples": args.max_samples}
    summary = export_dfb(args.dataset, args.out_dir, {k: v for k, v in config.items() if v is not None})
    print(f"exported {args.dataset} to {summary['out_dir']}: dataset JSON {summary['json']}, detector YAML "
          f"{summary['yaml']}, LMDB {summary['lmdb'] or 'not written'}")
    print("label_dict entries: " + ", ".join(f"{k}: {v}" for k, v in summary["label_dict"].items()))
    return 0


def cmd_datasets(args):
    from .data import list_datasets
    from .data.base import data_root
    from .data.catalog import locate
    from .data.deepfakebench_layout import host_json_names

    config = {k: v for k, v in (("data_root", args.data_root), ("dfb_config", args.dfb_config), ("mode", "train"))
              if v is not None}
    declared = list_datasets()
    names = args.names or declared + [n for n in host_json_names(config) if n not in declared]
    print(f"data root: {os.path.abspath(data_root(config))}" + (f"; dfb_config: {args.dfb_config}" if args.dfb_config else ""))
    print(f"{'dataset':24s} {'adapter':20s} {'status':8s} expected at")
    for name in names:
        adapter, where = locate(name, config)
        status = "found" if where and all(ok for _, _, ok in where) else "missing"
        places = "; ".join(f"{what} {path}" + ("" if ok else " (missing)") for what, path, ok in where)
        print(f"{name:24s} {adapter:20s} {status:8s} {places or '(no files to check)'}")
    return 0


def cmd_config_keys(args):
    from .config import keys_markdown

    print(keys_markdown(), end="")
    return 0


def cmd_plugins(args):
    from .plugins import get_plugin_manager, get_registry

    pm = get_plugin_manager()
    inside, host = {}, {}
    if args.bench_root:  # the names our detectors run under in that checkout (its own keep theirs)
        from .integrations.deepfakebench import validate_checkout
        from .integrations.deepfakebench.launcher import names_in_checkout

        host = validate_checkout(args.bench_root)["host_detectors"]
        inside = names_in_checkout(host)
    for kind in ("detectors", "datasets", "metrics"):
        reg = get_registry(kind)
        print(f"{kind}:")
        for name in reg.names():
            note = ""
            if kind == "detectors" and name in inside:
                note = f"  (the checkout's {host[name]} keeps this name; ours runs as {inside[name]})"
            print(f"  {name:24s} {reg.source(name)}{note}")
    if args.bench_root:
        print(f"the checkout registers {len(host)} detector(s) of its own: {', '.join(sorted(host))}")
    print(f"plugins: {', '.join(sorted(n for n, _ in pm.list_name_plugin()))}")
    return 0

# ---- declip protocol (issue 13) -------------------------------------------------------------------

def cmd_protocol(args):
    from . import cluster
    from . import protocol as proto

    if args.status:
        print(cluster.format_status(proto.Protocol(args.status)))
        return 0
    out = args.out or os.path.join("logs", "protocol", args.preset or "custom")
    sweep = proto.parse_sweep(args.sweep) if args.sweep else None
    opts = cluster.job_options(args.executor, args.gpus_per_job, args.partition, args.time, args.mem, args.slurm_opt,
                               args.max_parallel, wait=not args.no_wait)
    plan = proto.make_plan(args.preset, args.method, args.train, args.test, sweep, _overrides(args))
    if args.report_only:
        if not os.path.isfile(os.path.join(out, "protocol.json")):
            raise DeclipError(f"--report-only: {out} holds no protocol (no protocol.json); run the protocol first")
        p = proto.Protocol(out, plan)
        _print_protocol(p, p.finish(report=args.report), f"{len(p.plan['cells']) - len(p.missing())} done")
        return 0
    proto.check_plan(plan, args.sweep)  # every input checked: nothing is written before this passes
    cluster.check_executor_available(opts)
    p = proto.Protocol(out, plan)
    run = cluster.run_grid(p, opts)
    summary = (f"{len(run.kept)} kept, {len(run.finished)} trained now, {len(run.failed)} failed"
               + (f", {len(run.waiting)} queued or running" if run.waiting else ""))
    if run.waiting:
        print(f"protocol {out}: {len(p.plan['cells'])} cell(s): {summary}; the last job to finish writes the "
              f"outputs; see `declip protocol --status {out}`")
        return 0
    if p.cells_done():
        _print_protocol(p, p.finish(report=args.report), summary)
    problems = []
    if run.failed:
        recs = [cluster.read_record(out, cid) for cid in run.failed]
        problems.append(f"{len(run.failed)} of {len(p.plan['cells'])} cell(s) failed: " + "; ".join(
            f"{r['cell']} (job {r['job_id']}: {r['error']}; log {r['stderr']})" for r in recs)
            + "; rerun the same command to resubmit them")
    if run.unknown:
        problems.append(f"SLURM (sacct) does not know the job(s) of cell(s) {', '.join(run.unknown)}; if they no "
                        f"longer run, delete their records ({os.path.join(out, 'jobs', '<cell>.json')}) and rerun")
    if problems:
        raise DeclipError("; ".join(problems))
    return 0


def _print_protocol(p, paths, summary):
    out = p.out
    print(f"\nprotocol {out}: {len(p.plan['cells'])} cell(s): {summary}")
    if p.missing():
        print(f"not finished (not in the grids or the leaderboard): {', '.join(p.missing())}")
    from .protocol import PRIMARY, format_grid

    metric = next((m for m in PRIMARY if os.path.isfile(os.path.join(out, f"grid_{m}.csv"))), None)
    if metric:
        print(f"\n{metric} grid (rows: method | trained on; columns: tested on):\n")
        print(format_grid(out, metric))
    print("leaderboard:\n")
    with open(paths["leaderboard"][0], encoding="utf-8") as f:
        print(f.read())
    for kind in ("grids", "means", "heatmaps", "sweep", "report"):
        for path in paths.get(kind, []):
            print(f"{kind[:-1] if kind.endswith('s') else kind}: {path}")


def _add_protocol_parser(sub):
    from .cluster import EXECUTORS
    from .protocol import PRESETS

    p = sub.add_parser("protocol", help="methods x train sets x test sets: grids, ID/OOD means, heat-maps, leaderboard",
                       description="Train each (method, train set) once, test on every test set, and write the "
                                   "grids, ID/OOD means, heat-maps and a leaderboard. Every training cell is one "
                                   "job (--executor). Rerun with the same arguments to continue a killed protocol "
                                   "(finished cells are kept, failed or missing ones run again).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named protocol (its methods and datasets; "
                                                             "--method/--train/--test replace its parts)")
    p.add_argument("--method", nargs="+", help="detector YAMLs or bundled names")
    p.add_argument("--train", nargs="+", help="train datasets (one cell per method and train set)")
    p.add_argument("--test", nargs="+", help="test datasets")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one method per value of a config key "
                                                            "(feature_layer, decoder_type, backbone): Figure 3")
    p.add_argument("--out", help="the protocol folder (default: logs/protocol/<preset>)")
    p.add_argument("--report-only", dest="report_only", action="store_true",
                   help="train nothing; write the outputs from the finished cells (the missing ones named)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="write no report.html (e.g. when `declip report` later combines several protocols)")
    p.add_argument("--status", metavar="OUT", help="print each cell's state (done, running, queued, failed with its "
                                                   "job id and log, missing) of the protocol folder OUT, and exit")
    g = p.add_argument_group("jobs (docs/cluster.md)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: each cell a subprocess on this machine; slurm: each cell a SLURM job (an array); "
                        "debug: every cell in this process (default: local)")
    g.add_argument("--gpus-per-job", dest="gpus_per_job", type=int, help="GPUs of one cell's job (one task per GPU; "
                                                                         "default 1 on SLURM, 1 locally with CUDA)")
    g.add_argument("--max-parallel", dest="max_parallel", type=int,
                   help="cells running at once (local default 1; SLURM: the array's %%N, default no cap)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", help="SLURM time limit of one job: minutes, HH:MM:SS or D-HH:MM:SS (required for "
                                  "slurm; a job that reaches it is requeued and resumes)")
    g.add_argument("--mem", help="memory of one job, e.g. 64G")
    g.add_argument("--slurm-opt", dest="slurm_opt", action="append", metavar="KEY=VALUE",
                   help="another SLURM option, passed to submitit (qos=high, account=proj, constraint=a100, "
                        "cpus_per_task=8, signal_delay_s=120, ...); repeatable")
    g.add_argument("--no-wait", dest="no_wait", action="store_true",
                   help="slurm: submit and return; the last job to finish writes the outputs")
    _add_common(p)
    p.set_defaults(func=cmd_protocol)


# ---- robustness (issue 13) -------------------------------------------------------------------------

def _add_perturb_argument(p):
    p.add_argument("--perturb", metavar="KIND=VALUE", help="test-time perturbation of the images only: jpeg=Q, "
                                                           "blur=SIGMA, noise=SIGMA, downscale=F (comma-joined)")


def cmd_robustness(args):
    from .engine.robustness import sweep

    levels = None
    if args.levels:
        try:
            levels = [float(v) for v in args.levels.split(",")]
        except ValueError:
            raise DeclipError(f"--levels {args.levels!r}: give comma-separated numbers, e.g. 90,70,50") from None
    out = args.out or os.path.join("logs", "robustness")
    result = sweep(args.detector_path, args.weights_path, args.kind, levels,
                   _overrides(args, test_dataset=args.test_dataset), out_dir=out)
    print(f"curves: {result['csv']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    return 0


def _add_robustness_parser(sub):
    p = sub.add_parser("robustness", help="test a checkpoint under growing perturbations: degradation curves")
    p.add_argument("--detector_path", required=True)
    p.add_argument("--weights_path", required=True)
    p.add_argument("--test_dataset", nargs="+")
    p.add_argument("--kind", required=True, choices=["jpeg", "blur", "noise", "downscale"])
    p.add_argument("--levels", help="comma-separated levels (default: jpeg 90,70,50,30; blur 0.5,1,2,3; "
                                    "noise 2,5,10,20; downscale 1.5,2,3,4)")
    p.add_argument("--out", help="output folder (default: logs/robustness)")
    _add_common(p)
    p.set_defaults(func=cmd_robustness)


# ---- declip report (issue 13) -----------------------------------------------------------------------

def cmd_report(args):
    from .report import write_report

    print(f"report: {write_report(args.dirs, out=args.out)}")
    return 0


def _add_report_parser(sub):
    p = sub.add_parser("report", help="one self-contained HTML file for runs, protocols, robustness sweeps")
    p.add_argument("dirs", nargs="+", help="run, protocol, robustness or log folders")
    p.add_argument("--out", help="the HTML file (default: <first folder>/report.html)")
    p.set_defaults(func=cmd_report)


# ---- official checkpoints by name (issue 13) --------------------------------------------------------

def cmd_weights(args):
    from .detectors.declip import official_weights as ow

    if args.action == "list":
        rows = ow.listing()
        width = max(len(r[0]) for r in rows)
        print(f"{'name':{width}s}  {'detector config':16s}  status")
        for name, det, status, path in rows:
            print(f"{name:{width}s}  {det:16s}  {status}: {path}")
        print(f"\ncache: {ow.cache_dir()} ($DECLIP_WEIGHTS_DIR); use a name wherever --weights_path is taken")
        return 0
    if not args.names:
        raise DeclipError("declip weights fetch NAME...: give one or more names (declip weights list)")
    for name in args.names:
        print(f"{name}: {ow.resolve(name)}")
    return 0


def _add_weights_parser(sub):
    p = sub.add_parser("weights", help="the official DeCLIP checkpoints by name (list, fetch)")
    p.add_argument("action", choices=["list", "fetch"])
    p.add_argument("names", nargs="*", help="names such as declip:vit-l14_layer20_conv-20_lama (fetch)")
    p.set_defaults(func=cmd_weights)


def _resolve_weights_name(args):
    """A --weights_path that names published weights (e.g. ``declip:<name>``) becomes the cached (or
    downloaded) file; see checkpoints.resolve_weights."""
    from .checkpoints import resolve_weights

    if getattr(args, "weights_path", None) is not None:
        args.weights_path = resolve_weights(args.weights_path)


def build_parser():
    parser = argparse.ArgumentParser(prog="declip", description="DeCLIP for DeepfakeBench: train, test, predict.")
    parser.add_argument("--version", action="version", version=f"declip-plugin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (bars on a terminal, per-epoch / per-test-set lines otherwise)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a detector (DeepfakeBench's training/train.py flags)")
    p.add_argument("--detector_path", help="detector YAML, or a bundled name (declip, declip_demo, ...); "
                                           "required unless --resume")
    p.add_argument("--train_dataset", nargs="+")
    p.add_argument("--test_dataset", nargs="+")
    p.add_argument("--weights_path", help="initial weights (ours, official DeCLIP or a plain state dict)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished epoch")
    p.add_argument("--no-save_ckpt", dest="no_save_ckpt", action="store_true")
    p.add_argument("--no-save_feat", dest="no_save_feat", action="store_true", help="accepted for DeepfakeBench parity")
    p.add_argument("--task_target", default=None, help="accepted for DeepfakeBench parity")
    p.add_argument("--log_dir", help="where run directories go (default: the config's log_dir)")
    p.add_argument("--ddp", action="store_true", default=None,
                   help="DeepfakeBench's flag: one process per GPU, started by torchrun (docs/distributed.md)")
    p.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                   help="accepted for torch.distributed.launch; LOCAL_RANK from the environment is used")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="evaluate a checkpoint (DeepfakeBench's training/test.py flags)")
    p.add_argument("--detector_path", required=True)
    p.add_argument("--test_dataset", nargs="+")
    p.add_argument("--weights_path", required=True)
    p.add_argument("--log_dir")
    _add_perturb_argument(p)
    _add_common(p)
    p.set_defaults(func=cmd_test)

    p = sub.add_parser("predict", help="masks and scores for single images; scores of videos (folders of frames)")
    p.add_argument("images", nargs="+", help="image files, or folders of a video's frames (clip detectors: always)")
    p.add_argument("--weights_path", required=True, help="our checkpoint or an official DeCLIP one")
    p.add_argument("--detector_path", help="detector YAML (default: read from the checkpoint)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--explain", action="store_true",
                   help="also write a Grad-CAM overlay (and attention rollout for ViT towers) per image; for a "
                        "folder of frames, one strip PNG: the frames over their per-frame maps")
    _add_common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("make-demo-data", help="write the procedural demo dataset (Dolos layout)")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)
    p.set_defaults(func=cmd_make_demo_data)

    p = sub.add_parser("make-demo-videos", help="write the procedural demo video set (DeepfakeBench JSON layout)")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--paths-base", default=None,
                   help="write frame paths as ./<relative to this folder> (a DeepfakeBench checkout's root)")
    from .data.demo_video import METHODS as VIDEO_METHODS

    p.add_argument("--methods", nargs="+", default=["flicker"], choices=VIDEO_METHODS,
                   help="manipulations (default: flicker); each gets the dataset demo-video-<method>")
    p.add_argument("--videos", nargs=3, type=int, metavar=("TRAIN", "VAL", "TEST"),
                   help="videos per label and split (default: 100 20 40)")
    p.set_defaults(func=cmd_make_demo_videos)

    p = sub.add_parser("leaderboard", help="compare runs (ours and DeepfakeBench's) in one table")
    p.add_argument("runs", nargs="+", help="run directories or log folders that contain them")
    p.add_argument("--format", choices=["md", "csv", "html", "png"], default="md", help="png needs --out")
    p.add_argument("--out")
    p.add_argument("--metrics", help="comma-separated metric names (default: those present)")
    p.add_argument("--in-domain", dest="in_domain", help="comma-separated in-domain datasets (overrides run.json)")
    p.add_argument("--by-task", dest="by_task", action="store_true",
                   help="one table per task: image localization, image detection, video detection")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("dfb", help="run a real DeepfakeBench checkout's own train.py / test.py with the plugins "
                                   "registered; its arguments follow `--`",
                       description="declip dfb [options] train|test -- [DeepfakeBench's train.py/test.py arguments]")
    p.add_argument("mode", choices=["train", "test", "setup"],
                   help="setup: build (or check) an environment for the checkout and record it")
    p.add_argument("--bench_root", "--bench-root", dest="bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT"),
                   help="the DeepfakeBench checkout (default: $DEEPFAKEBENCH_ROOT)")
    p.add_argument("--cpu", action="store_true", help="opt-in CPU mode for test.py (see docs/deepfakebench.md)")
    p.add_argument("--stub-datasets", "--stub_datasets", dest="stub_datasets", action="store_true",
                   help="stub DeepfakeBench's dataset modules that need a GPU or dlib's landmark file at import "
                        "(implied by --cpu)")
    p.add_argument("--data", metavar="EXPORT_DIR", help="a folder written by `declip export-dfb`")
    lm = p.add_mutually_exclusive_group()
    lm.add_argument("--lmdb", dest="lmdb", action="store_true", default=None)
    lm.add_argument("--no-lmdb", dest="lmdb", action="store_false")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="override a key of the merged config")
    p.add_argument("--results_dir", help="where test results are written (default: the config's log_dir)")
    p.add_argument("--no-localization", dest="localization", action="store_false")
    p.add_argument("--no-convert_weights", dest="convert_weights", action="store_false")
    p.add_argument("--python", default=None,
                   help="the interpreter of the checkout's environment (default: $DEEPFAKEBENCH_PYTHON, else the one "
                        "`declip dfb setup` recorded for the checkout, else this one)")
    p.add_argument("--venv", help="setup: the environment's folder (default: <checkout>-venv beside the checkout)")
    p.set_defaults(func=cmd_dfb, dfb_args=[])

    p = sub.add_parser("export-dfb", help="write a dataset as a DeepfakeBench dataset JSON + frame/mask tree")
    p.add_argument("dataset", help="a named dataset (declip datasets)")
    p.add_argument("out_dir")
    p.add_argument("--data_root")
    p.add_argument("--bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT"),
                   help="write paths relative to this checkout (default: $DEEPFAKEBENCH_ROOT)")
    p.add_argument("--name", help="dataset name in DeepfakeBench (default: the dataset's name)")
    p.add_argument("--splits", nargs="+", choices=["train", "val", "test"])
    p.add_argument("--no-real", dest="no_real", action="store_true", help="leave the real images out")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    lm = p.add_mutually_exclusive_group()
    lm.add_argument("--lmdb", dest="lmdb", action="store_true", default=None)
    lm.add_argument("--no-lmdb", dest="lmdb", action="store_false")
    p.add_argument("--detector", help="detector YAML the exported one is based on (default: declip)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--max_samples", type=int)
    p.set_defaults(func=cmd_export_dfb)

    p = sub.add_parser("bench", help="reference vs optimized images/s and peak memory of a detector")
    from . import bench

    bench.add_arguments(p)
    p.set_defaults(func=bench.command)

    _add_protocol_parser(sub)
    _add_robustness_parser(sub)
    _add_report_parser(sub)
    _add_weights_parser(sub)

    p = sub.add_parser("datasets", help="the named datasets (configs/dataset, $DECLIP_DATASET_CONFIGS): where each "
                                        "is expected and whether it is found")
    p.add_argument("names", nargs="*", help="only these (default: every declared dataset)")
    p.add_argument("--data_root", help="the data root (default: $DECLIP_DATA_ROOT or ./datasets)")
    _add_dfb_config(p)
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("config-keys", help="every config key: type, default, allowed values (markdown)")
    p.set_defaults(func=cmd_config_keys)

    p = sub.add_parser("plugins", help="the installed plugins and what each registers")
    p.add_argument("--bench_root", "--bench-root", dest="bench_root",
                   help="a DeepfakeBench checkout (or fork): also the names our detectors run under in it")
    p.set_defaults(func=cmd_plugins)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:  # `declip dfb ... test -- <DeepfakeBench's own arguments>`
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if passthrough:
        if args.command != "dfb":
            parser.error("arguments after `--` are only for `declip dfb`")
        args.dfb_args = passthrough
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not args.debug:
        logging.getLogger("PIL").setLevel(logging.WARNING)
    if args.quiet:
        from .engine.progress import set_quiet

        set_quiet(True)
    from .engine.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM ends a command like Ctrl-C: its clean-up runs
            _resolve_weights_name(args)
            return args.func(args)
    except DeclipError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file we were asked to read or write
        if args.debug or exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a run (engine/signals.py)
        signum = getattr(exc, "signum", None)
        print(str(exc) if signum else "interrupted", file=sys.stderr)
        return 128 + int(signum) if signum else 130


if __name__ == "__main__":
    raise SystemExit(main())
