"""The ``declip`` command (also ``python -m declip_plugin``).

Errors meant for the user end with a one-line cause and exit status 2; ``--debug`` shows the
traceback instead.
"""
import argparse
import logging
import os
import sys

from . import __version__
from .errors import DeclipError, one_line

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
        maps = [r[k] for k in ("gradcam", "attention") if k in r]
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

    m = make_demo_videos(args.out, seed=args.seed, size=args.size, n_frames=args.frames, paths_base=args.paths_base)
    per = "/".join(str(v) for v in m["videos_per_label"].values())
    print(f"demo videos written to {args.out}: {m['files']} files in {m['seconds']}s; dataset demo-video "
          f"(DeepfakeBench JSON {m['json']}); train/val/test videos per label: {per}, {m['n_frames']} frames each")
    return 0


def cmd_leaderboard(args):
    from .atomicio import check_output_file
    from .leaderboard import collect, render

    if args.out:
        check_output_file(args.out, "--out")
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

    return launch(args.bench_root, args.mode, args.dfb_args, cpu=args.cpu, stub_datasets=args.stub_datasets or None,
                  data_dir=args.data, lmdb=args.lmdb,
                  overrides=args.opt, results_dir=args.results_dir, localization=args.localization,
                  convert_weights=args.convert_weights, python=args.python)


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
    for kind in ("detectors", "datasets", "metrics"):
        reg = get_registry(kind)
        print(f"{kind}:")
        for name in reg.names():
            print(f"  {name:24s} {reg.source(name)}")
    print(f"plugins: {', '.join(sorted(n for n, _ in pm.list_name_plugin()))}")
    return 0

# ---- declip protocol (issue 13) -------------------------------------------------------------------

def cmd_protocol(args):
    from . import protocol as proto

    sweep = proto.parse_sweep(args.sweep) if args.sweep else None
    overrides = _overrides(args)
    out = args.out or os.path.join("logs", "protocol", args.preset or "custom")
    plan = proto.make_plan(args.preset, args.method, args.train, args.test, sweep, overrides)
    p = proto.Protocol(out, plan)
    n_cells = len(plan["cells"])
    trained = 0 if args.report_only else p.run()
    paths = p.write_outputs()
    print(f"\nprotocol {out}: {n_cells} cell(s), {trained} trained now, {n_cells - trained} kept")
    metric = next((m for m in proto.PRIMARY if os.path.isfile(os.path.join(out, f"grid_{m}.csv"))), None)
    if metric:
        print(f"\n{metric} grid (rows: method | trained on; columns: tested on):\n")
        print(proto.format_grid(out, metric))
    print("leaderboard:\n")
    with open(paths["leaderboard"][0], encoding="utf-8") as f:
        print(f.read())
    for kind in ("grids", "means", "heatmaps", "sweep"):
        for path in paths.get(kind, []):
            print(f"{kind[:-1] if kind.endswith('s') else kind}: {path}")
    try:
        from .report import write_report
    except ImportError:  # the report module is optional
        return 0
    print(f"report: {write_report([out])}")
    return 0


def _add_protocol_parser(sub):
    from .protocol import PRESETS

    p = sub.add_parser("protocol", help="methods x train sets x test sets: grids, ID/OOD means, heat-maps, leaderboard",
                       description="Train each (method, train set) once, test on every test set, and write the "
                                   "grids, ID/OOD means, heat-maps and a leaderboard. Rerun with the same "
                                   "arguments to continue a killed protocol (finished cells are kept).")
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named protocol (its methods and datasets; "
                                                             "--method/--train/--test replace its parts)")
    p.add_argument("--method", nargs="+", help="detector YAMLs or bundled names")
    p.add_argument("--train", nargs="+", help="train datasets (one cell per method and train set)")
    p.add_argument("--test", nargs="+", help="test datasets")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one method per value of a config key "
                                                            "(feature_layer, decoder_type, backbone): Figure 3")
    p.add_argument("--out", help="the protocol folder (default: logs/protocol/<preset>)")
    p.add_argument("--report-only", dest="report_only", action="store_true",
                   help="train nothing; write the outputs from the finished cells")
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
    from . import official_weights as ow

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
    """A ``declip:<name>`` --weights_path becomes the cached (or downloaded) official checkpoint."""
    from .official_weights import is_name, resolve

    if is_name(getattr(args, "weights_path", None)):
        args.weights_path = resolve(args.weights_path)


def build_parser():
    parser = argparse.ArgumentParser(prog="declip", description="DeCLIP for DeepfakeBench: train, test, predict.")
    parser.add_argument("--version", action="version", version=f"declip-plugin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
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

    p = sub.add_parser("predict", help="masks and scores for single images")
    p.add_argument("images", nargs="+")
    p.add_argument("--weights_path", required=True, help="our checkpoint or an official DeCLIP one")
    p.add_argument("--detector_path", help="detector YAML (default: read from the checkpoint)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--explain", action="store_true",
                   help="also write a Grad-CAM overlay (and attention rollout for ViT towers) per image")
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
    p.set_defaults(func=cmd_make_demo_videos)

    p = sub.add_parser("leaderboard", help="compare runs (ours and DeepfakeBench's) in one table")
    p.add_argument("runs", nargs="+", help="run directories or log folders that contain them")
    p.add_argument("--format", choices=["md", "csv", "html", "png"], default="md", help="png needs --out")
    p.add_argument("--out")
    p.add_argument("--metrics", help="comma-separated metric names (default: those present)")
    p.add_argument("--in-domain", dest="in_domain", help="comma-separated in-domain datasets (overrides run.json)")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("dfb", help="run a real DeepfakeBench checkout's own train.py / test.py with the plugins "
                                   "registered; its arguments follow `--`",
                       description="declip dfb [options] train|test -- [DeepfakeBench's train.py/test.py arguments]")
    p.add_argument("mode", choices=["train", "test"])
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
    p.add_argument("--python", default=os.environ.get("DEEPFAKEBENCH_PYTHON"),
                   help="the interpreter of the checkout's environment (default: $DEEPFAKEBENCH_PYTHON or this one)")
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
