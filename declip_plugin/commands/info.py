"""``declip datasets``, ``declip config-keys``, ``declip plugins``: what is installed and where."""
import os

from .base import Command, add_dfb_config, add_flag


def add_datasets(p):
    p.add_argument("names", nargs="*", help="only these (default: every declared dataset)")
    add_flag(p, "--data_root", help="the data root (default: $DECLIP_DATA_ROOT or ./datasets)")
    add_dfb_config(p)


def run_datasets(args):
    from ..data import list_datasets
    from ..data.base import data_root
    from ..data.catalog import locate
    from ..data.deepfakebench_layout import host_json_names

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
                        "whether it is found", add_datasets, run_datasets),
    "config-keys": Command("every config key: type, default, allowed values (markdown)", lambda p: None,
                           run_config_keys),
    "plugins": Command("the installed plugins and what each registers", add_plugins, run_plugins),
}
