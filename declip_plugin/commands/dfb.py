"""``declip dfb`` (a real DeepfakeBench checkout's own train.py / test.py, or ``setup``) and
``declip export-dfb`` (a dataset in DeepfakeBench's layout)."""
import os

from ..errors import ConfigError
from .base import Command, add_flag


def _add_lmdb(p):
    lm = p.add_mutually_exclusive_group()
    lm.add_argument("--lmdb", dest="lmdb", action="store_true", default=None)
    lm.add_argument("--no-lmdb", dest="lmdb", action="store_false")


def add_dfb(p):
    p.add_argument("mode", choices=["train", "test", "setup"],
                   help="setup: build (or check) an environment for the checkout and record it")
    add_flag(p, "--bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT"),
             help="the DeepfakeBench checkout (default: $DEEPFAKEBENCH_ROOT)")
    p.add_argument("--cpu", action="store_true", help="opt-in CPU mode for test.py (see docs/deepfakebench.md)")
    add_flag(p, "--cpu_if_no_cuda", action="store_true",
             help="test: the CPU mode of --cpu when the checkout's interpreter sees no GPU (scripts/test.sh passes it)")
    add_flag(p, "--stub_datasets", action="store_true",
             help="stub DeepfakeBench's dataset modules that need a GPU or dlib's landmark file at import "
                  "(implied by --cpu)")
    p.add_argument("--data", metavar="EXPORT_DIR", help="a folder written by `declip export-dfb`")
    p.add_argument("--export", action="store_true",
                   help="first export into --data the script's datasets (--train_dataset, --test_dataset) that are "
                        "ours and not exported there yet (declip export-dfb)")
    add_flag(p, "--data_root", help="--export: the data root of those datasets (default: $DECLIP_DATA_ROOT or ./datasets)")
    _add_lmdb(p)
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE", help="override a key of the merged config")
    add_flag(p, "--results_dir", help="where test results are written (default: the config's log_dir)")
    p.add_argument("--no-localization", dest="localization", action="store_false")
    add_flag(p, "--no-convert_weights", dest="convert_weights", action="store_false")
    p.add_argument("--python", default=None,
                   help="the interpreter of the checkout's environment (default: $DEEPFAKEBENCH_PYTHON, else the one "
                        "`declip dfb setup` recorded for the checkout, else this one)")
    p.add_argument("--venv", help="setup: the environment's folder (default: <checkout>-venv beside the checkout)")
    p.set_defaults(dfb_args=[])


def run_dfb(args):
    from ..integrations.deepfakebench import LaunchSpec, launch

    if args.mode == "setup":
        return _dfb_setup(args)
    if args.venv:
        raise ConfigError("--venv is for `declip dfb setup`; train/test take the interpreter from --python, "
                          "$DEEPFAKEBENCH_PYTHON or the one `declip dfb setup` recorded")
    return launch(LaunchSpec(args.bench_root, args.mode, args.dfb_args, cpu=args.cpu,
                             stub_datasets=args.stub_datasets or None, data_dir=args.data, lmdb=args.lmdb,
                             overrides=args.opt, results_dir=args.results_dir, localization=args.localization,
                             convert_weights=args.convert_weights, python=args.python, export=args.export,
                             data_root=args.data_root, cpu_if_no_cuda=args.cpu_if_no_cuda))


def _dfb_setup(args):
    from ..integrations.deepfakebench.environment import setup_environment

    if args.dfb_args:
        raise ConfigError(f"`declip dfb setup` takes no script arguments after `--` (got {' '.join(args.dfb_args)})")
    env = setup_environment(args.bench_root, args.venv)
    print(f"DeepfakeBench environment ready: {env['python']}")
    print(f"  checkout {env['root']}; installed now: {', '.join(env['installed']) or 'nothing (all present)'}")
    print(f"  {env['report']}")
    print(f"  recorded in {env['recorded']}: `declip dfb --bench_root {env['root']} test|train ...` uses it;")
    print(f"  elsewhere: export DEEPFAKEBENCH_PYTHON={env['python']}")
    return 0


def add_export(p):
    p.add_argument("dataset", help="a named dataset (declip datasets)")
    p.add_argument("out_dir")
    add_flag(p, "--data_root")
    add_flag(p, "--bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT"),
             help="write paths relative to this checkout (default: $DEEPFAKEBENCH_ROOT)")
    p.add_argument("--name", help="dataset name in DeepfakeBench (default: the dataset's name)")
    p.add_argument("--splits", nargs="+", choices=["train", "val", "test"])
    p.add_argument("--no-real", dest="no_real", action="store_true", help="leave the real images out")
    p.add_argument("--copy", action="store_true", help="copy images instead of hard-linking them")
    _add_lmdb(p)
    p.add_argument("--detector", help="detector YAML the exported one is based on (default: declip_demo for a "
                                      "demo-* dataset, else declip)")
    p.add_argument("--overwrite", action="store_true")
    add_flag(p, "--max_samples", type=int)


def run_export(args):
    from ..integrations.deepfakebench import export_dfb

    config = {"data_root": args.data_root, "bench_root": args.bench_root, "name": args.name, "splits": args.splits,
              "include_real": False if args.no_real else None, "link": "copy" if args.copy else None,
              "lmdb": args.lmdb, "detector": args.detector, "overwrite": args.overwrite or None,
              "max_samples": args.max_samples}
    summary = export_dfb(args.dataset, args.out_dir, {k: v for k, v in config.items() if v is not None})
    print(f"exported {args.dataset} to {summary['out_dir']}: dataset JSON {summary['json']}, detector YAML "
          f"{summary['yaml']}, LMDB {summary['lmdb'] or 'not written'}")
    print("label_dict entries: " + ", ".join(f"{k}: {v}" for k, v in summary["label_dict"].items()))
    return 0


COMMANDS = {
    "dfb": Command("run a real DeepfakeBench checkout's own train.py / test.py with the plugins registered; its "
                   "arguments follow `--`", add_dfb, run_dfb,
                   description="declip dfb [options] train|test -- [DeepfakeBench's train.py/test.py arguments]"),
    "export-dfb": Command("write a dataset as a DeepfakeBench dataset JSON + frame/mask tree", add_export, run_export),
}
