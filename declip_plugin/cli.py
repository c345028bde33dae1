"""The ``declip`` command (also ``python -m declip_plugin``).

Errors meant for the user end with a one-line cause and exit status 2; ``--debug`` shows the
traceback instead.
"""
import argparse
import logging
import os
import sys

from . import __version__
from .errors import DeclipError

logger = logging.getLogger("declip_plugin.cli")


def _add_common(p):
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; dotted keys for nested ones, e.g. optimizer.adam.lr=1e-4)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--data_root", help="root of the dataset folders named in configs/dataset (default: "
                                       "$DECLIP_DATA_ROOT or ./datasets)")


def _overrides(args, **extra):
    from .config import parse_overrides

    out = parse_overrides(args.opt)
    for key in ("device", "data_root", "log_dir"):
        if getattr(args, key, None):
            out[key] = getattr(args, key)
    for k, v in extra.items():
        if v is not None:
            out[k] = v
    return out


def cmd_train(args):
    from .engine.run import train

    overrides = _overrides(args, train_dataset=args.train_dataset, test_dataset=args.test_dataset,
                           save_ckpt=False if args.no_save_ckpt else None, task_target=args.task_target)
    if not args.resume and not args.detector_path:
        raise DeclipError("train needs --detector_path (a YAML or a bundled name such as declip_demo), or --resume RUN_DIR")
    if args.resume and (args.train_dataset or args.test_dataset):
        raise DeclipError("--resume continues a run with its own datasets (its config.yaml); drop --train_dataset/"
                          "--test_dataset (--opt still applies, e.g. --opt nEpochs=50 to extend it)")
    run_dir = train(args.detector_path, overrides, resume=args.resume, weights_path=args.weights_path)
    _print_results(run_dir)
    return 0


def cmd_test(args):
    from .engine.run import test

    run_dir = test(args.detector_path, args.weights_path, _overrides(args, test_dataset=args.test_dataset))
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
        print(f"error: {e['error']}", file=sys.stderr)
    print(f"summary: {os.path.join(args.out, 'predictions.json')}")
    return 1 if errors else 0


def cmd_make_demo_data(args):
    from .data.demo import make_demo_data

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
    from .leaderboard import collect, render

    text = render(collect(args.runs), fmt=args.format, metrics=args.metrics.split(",") if args.metrics else None,
                  in_domain=args.in_domain.split(",") if args.in_domain else None)
    if args.out:
        from .engine.rundir import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"leaderboard written to {args.out}")
    else:
        print(text)
    return 0


def cmd_dfb(args):
    from .integrations import launch

    return launch(args.bench_root, args.mode, args.dfb_args, cpu=args.cpu, data_dir=args.data, lmdb=args.lmdb,
                  overrides=args.opt, results_dir=args.results_dir, localization=args.localization,
                  convert_weights=args.convert_weights, python=args.python)


def cmd_export_dfb(args):
    from .integrations import export_dfb

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
    from .data import dataset_spec, list_datasets

    for name in list_datasets():
        spec = dataset_spec(name)
        print(f"{name:28s} adapter={spec.get('adapter')} root={spec.get('root')}")
    return 0


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
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("test", help="evaluate a checkpoint (DeepfakeBench's training/test.py flags)")
    p.add_argument("--detector_path", required=True)
    p.add_argument("--test_dataset", nargs="+")
    p.add_argument("--weights_path", required=True)
    p.add_argument("--log_dir")
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
    p.add_argument("--size", type=int, default=256)
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
    p.add_argument("--format", choices=["md", "csv"], default="md")
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

    sub.add_parser("bench", help="reference vs optimized images/s and peak memory (declip bench --help)")

    p = sub.add_parser("datasets", help="list the named datasets of configs/dataset")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own parser (declip_plugin.bench)
        from . import bench

        return bench.main(argv[1:])
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
    try:
        return args.func(args)
    except DeclipError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
