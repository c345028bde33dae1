"""``declip datasets``, ``declip config-keys``, ``declip plugins``: what is installed and where."""
import os

from ..errors import DeclipError
from .base import Command, add_dfb_config, add_flag


def add_datasets(p):
    p.add_argument("names", nargs="*", help="only these (default: every declared dataset)")
    add_flag(p, "--data_root", help="the data root (default: $DECLIP_DATA_ROOT or ./datasets)")
    add_dfb_config(p)
    p.add_argument("--check", action="store_true",
                   help="check the named datasets: a source video or byte-identical frame in two splits, labels "
                        "missing from label_dict, manipulated frames without masks, frames that do not decode; "
                        "a table, exit status 1 when a check fails")
    add_flag(p, "--train_dataset", nargs="+", default=[], metavar="NAME",
             help="check these as train datasets: every split, and their train and val splits against the test "
                  "datasets' test split (implies --check)")
    add_flag(p, "--test_dataset", nargs="+", default=[], metavar="NAME",
             help="check these as test datasets: their test split alone, and against the train datasets (implies "
                  "--check)")
    add_flag(p, "--detector_path", help="--check: the detector YAML (or bundled name) the data is for; one that "
                                        "produces masks with with_mask: true needs a mask for every manipulated frame")


def run_datasets(args):
    from ..data import list_datasets
    from ..data.base import data_root
    from ..data.catalog import locate
    from ..data.deepfakebench_layout import host_json_names

    config = {k: v for k, v in (("data_root", args.data_root), ("dfb_config", args.dfb_config), ("mode", "train"))
              if v is not None}
    if args.check or args.train_dataset or args.test_dataset:
        return run_check(args, config)
    if args.detector_path:
        raise DeclipError(f"--detector_path {args.detector_path!r} applies to --check only: add --check")
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


def run_check(args, config):
    """``declip datasets --check``: data/check.py; exit status 1 when a check fails."""
    from ..data.check import check_datasets, format_report

    names = list(dict.fromkeys([*args.names, *args.train_dataset, *args.test_dataset]))
    if not names:
        raise DeclipError("--check needs the names of the datasets to check (`declip datasets` lists them), e.g. "
                          "declip datasets --check UADFV, or --train_dataset A --test_dataset B")
    needs_masks, detector = False, None
    if args.detector_path:
        from ..config import load_run_config
        from ..detectors.base import capability
        from ..plugins import get_registry

        cfg = load_run_config(args.detector_path, "train", config)
        config, detector = cfg, cfg.model_name
        cls = get_registry("detectors").get(detector)
        needs_masks = bool(capability(cls, "produces_mask")) and cfg.with_mask
    report = check_datasets(args.names, config, train=args.train_dataset, test=args.test_dataset,
                            needs_masks=needs_masks, detector=detector)
    for line in format_report(report):
        print(line)
    return 1 if report.failed else 0


def run_config_keys(args):
    from ..config import keys_markdown

    print(keys_markdown(), end="")
    return 0


def add_plugins(p):
    add_flag(p, "--bench_root", help="a DeepfakeBench checkout (or fork): also the names our detectors run under in it")


def run_plugins(args):
    from ..plugins import KINDS, get_plugin_manager, get_registry

    pm = get_plugin_manager()
    inside, host = {}, {}
    if args.bench_root:  # the names our detectors run under in that checkout (its own keep theirs)
        from ..integrations.deepfakebench import validate_checkout
        from ..integrations.deepfakebench.launcher import names_in_checkout

        host = validate_checkout(args.bench_root)["host_detectors"]
        inside = names_in_checkout(host)
    for kind in KINDS:
        reg = get_registry(kind)
        print(f"{kind}:")
        for name in reg.names():
            note = ""
            if kind == "detectors" and name in inside:
                note = f"  (the checkout's {host[name]} keeps this name; ours runs as {inside[name]})"
            print(f"  {name:24s} {reg.source(name)}{note}")
    if args.bench_root:
        print(f"the checkout registers {len(host)} detector(s) of its own: {', '.join(sorted(host))}")
    print(f"plugins: {', '.join(sorted(n for n, plugin in pm.list_name_plugin() if plugin is not None))}")
    for why in pm.disabled.values():
        print(f"disabled: {why}")
    return 0


COMMANDS = {
    "datasets": Command("the named datasets (configs/dataset, $DECLIP_DATASET_CONFIGS): where each is expected and "
                        "whether it is found; --check: leaks between splits, labels, masks, frames that do not decode",
                        add_datasets, run_datasets),
    "config-keys": Command("every config key: type, default, allowed values (markdown)", lambda p: None,
                           run_config_keys),
    "plugins": Command("the installed plugins and what each registers", add_plugins, run_plugins),
}
