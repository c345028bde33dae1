"""The protocol's plan: presets, the cells of methods x train sets (x sweep values), which test sets are
in-domain for a train set, and the checks of everything a plan reads before anything is written.

A plan is a dict, saved as the folder's protocol.json (declip_plugin/protocol/folder.py)::

    {"preset", "methods", "train", "test", "sweep": {"key", "values"} | None, "overrides",
     "cells": [{"id", "method", "config", "train", "overrides", "name"}], "reference": [blocks],
     "headline", "metrics", "method_overrides" (when given)}

ID: the test set is the train set, or both declare the same ``generator`` in configs/dataset.
"""
import json
import logging
import os

from ..errors import ConfigError
from .folder import safe_name
from .presets import preset_definition, preset_names

logger = logging.getLogger(__name__)


def method_label(config):
    """A method's label: its detector YAML's name (``configs/detector/clip_stan.yaml`` -> ``clip_stan``)."""
    return os.path.splitext(os.path.basename(str(config)))[0]


def make_plan(preset=None, methods=None, train=None, test=None, sweep=None, overrides=None, optional_tests=False,
              method_overrides=None):
    """The protocol's plan: a dict saved as protocol.json. ``optional_tests``: add the preset's optional test
    sets; ``method_overrides``: ``{method label: overrides}`` (``--opt METHOD:KEY=VALUE``) for that method's cells."""
    base = preset_definition(preset) if preset else {}
    methods = list(methods or base.get("methods") or [])
    train = list(train or base.get("train") or [])
    test = list(test or base.get("test") or [])
    if optional_tests:
        if not base.get("optional_test"):
            raise ConfigError("--optional_tests: " + (f"preset {preset!r} has no optional test sets" if preset else
                                                      "give a --preset with optional test sets (ff-cross)"))
        test += [t for t in base["optional_test"] if t not in test]
    for what, val in (("--method", methods), ("--train", train), ("--test", test)):
        if not val:
            raise ConfigError(f"protocol: no {what[2:]} given; pass {what} or a --preset ({', '.join(preset_names())})")
    method_overrides = _check_method_overrides(method_overrides, methods)
    from ..references import blocks

    plan = {"preset": preset, "methods": methods, "train": train, "test": test,
            "sweep": {"key": sweep[0], "values": sweep[1]} if sweep else None,
            "overrides": dict(overrides or {}), "cells": _cells(methods, train, sweep, method_overrides),
            "reference": blocks(base.get("reference")), "headline": base.get("headline"),
            "metrics": list(base.get("metrics") or []) or None}
    if method_overrides:
        plan["method_overrides"] = method_overrides
    return plan


def _check_method_overrides(method_overrides, methods):
    labels = [method_label(m) for m in methods]
    for label in method_overrides or {}:
        if label not in labels:
            from ..registry import closest

            hint = closest(label, labels)
            raise ConfigError(f"--opt {label}:...: no method {label!r} in this protocol; its methods: "
                              f"{', '.join(labels)}" + (f" (did you mean {hint!r}?)" if hint else ""))
    return {k: v for k, v in (method_overrides or {}).items() if v}


def _cells(methods, train, sweep, method_overrides):
    from ..config import merge

    cells = []
    for cfg in methods:
        label = method_label(cfg)
        variants = [(label, {})]
        if sweep:
            key, values = sweep
            variants = [(f"{label}[{key}={v}]", {key: v}) for v in values]
        for mlabel, extra in variants:
            for t in train:
                cid = f"{safe_name(mlabel)}__{safe_name(t)}"
                cells.append({"method": mlabel, "config": str(cfg), "train": t,
                              "overrides": merge(method_overrides.get(label, {}), extra), "id": cid,
                              # the run's method name (leaderboard rows): the train set only when there are several
                              "name": cid if len(train) > 1 else safe_name(mlabel)})
    return cells


def generator_of(name):
    from ..data import dataset_spec

    try:
        return dataset_spec(name).get("generator")
    except Exception:  # noqa: BLE001 - a test set unknown to the catalog has no generator
        return None


def is_in_domain(train, test):
    if train == test:
        return True
    g = generator_of(train)
    return g is not None and g == generator_of(test)


def plan_key(plan):
    """What makes two plans the same protocol (a folder continues only its own)."""
    key = {k: plan.get(k) for k in ("methods", "train", "test", "sweep", "overrides")}
    if plan.get("method_overrides"):  # absent from older plans: they had none
        key["method_overrides"] = plan["method_overrides"]
    return json.dumps(key, sort_keys=True, default=str)


def cell_config(plan, cell):
    """The run config of ``cell`` as its job will load it (the plan's and the cell's overrides on its YAML)."""
    from ..config import load_run_config, merge

    return load_run_config(cell["config"], "train", merge(dict(plan.get("overrides") or {}), cell["overrides"]))


def check_plan(plan, sweep_text=None):
    """Everything a protocol reads, checked before anything is written: the dataset names, each method's
    config with the command's overrides (errors blame --opt), the sweep's key and values (errors blame
    --sweep), that every dataset is where it is expected (all missing ones named at once), and every file of
    every split (a corrupt image is named now, not after hours of training)."""
    from ..config import merge, validate
    from ..data import dataset_spec

    for name in dict.fromkeys(plan["train"] + plan["test"]):
        dataset_spec(name)  # an unknown name: a DataError naming it, with the closest known one
    sweep = plan.get("sweep")
    first, seen = None, set()
    for cell in plan["cells"]:
        own = {k: v for k, v in cell["overrides"].items() if not sweep or k != sweep["key"]}
        key = json.dumps([cell["config"], own], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            config = cell_config(plan, {**cell, "overrides": own})
        except ConfigError as e:  # which method refuses a key of --opt
            hint = "; --opt METHOD:KEY=VALUE sets a key for one method" if len(plan["methods"]) > 1 else ""
            raise type(e)(f"method {method_label(cell['config'])}: {e}{hint}") from None
        if sweep:
            label = f"--sweep {sweep_text or sweep['key'] + '=' + ','.join(map(str, sweep['values']))}"
            for value in sweep["values"]:
                validate(merge(config.to_dict(), {sweep["key"]: value}), where=f"{label} (method {cell['config']})",
                         origins={sweep["key"]: label})
        first = first or config
    check_data_present(plan, first)
    _check_data_files(plan, first)


def dataset_roles(plan):
    """``{dataset: ["train", "test"]}``: what the plan uses each dataset for, in plan order."""
    roles = {}
    for role in ("train", "test"):
        for name in plan[role]:
            roles.setdefault(name, []).append(role)
    return roles


def data_status(plan, config=None):
    """``[(dataset, roles, adapter, [(what, path, exists)])]``: where the files of each dataset of the plan are
    expected (data/catalog.py ``locate``: for DeepfakeBench's sets its JSON and its LMDB or frame folder, from
    --dfb_config / --data_root), with the run config ``config`` (default: the first cell's)."""
    from ..data.catalog import locate

    config = config if config is not None else cell_config(plan, plan["cells"][0])
    return [(name, roles, *locate(name, config)) for name, roles in dataset_roles(plan).items()]


def data_source(config):
    """Where the dataset folders come from, for messages: the dfb_config and the data root."""
    from ..data import data_root

    dfb = config.dfb_config
    return ((f"dfb_config {os.path.abspath(os.path.expanduser(str(dfb)))}, " if dfb else "")
            + f"data root {os.path.abspath(data_root(config))}")


def check_data_present(plan, config):
    """A DataError naming every dataset of the plan whose files are not where they are expected, with the paths."""
    from ..errors import DataError

    status = data_status(plan, config)
    missing = [(name, [(what, path) for what, path, ok in where if not ok]) for name, _, _, where in status
               if not all(ok for _, _, ok in where)]
    if missing:
        listed = "; ".join(f"{name} ({', '.join(f'{what} {path}' for what, path in paths)} not found)"
                           for name, paths in missing)
        raise DataError(f"protocol: {len(missing)} of {len(status)} dataset(s) missing: {listed} (folders from "
                        f"{data_source(config)}); `declip protocol ... --status` lists where every dataset is "
                        f"expected; set --dfb_config / --data_root, or leave the missing sets out with --test")


def _check_data_files(plan, config):
    from ..data import build_dataset
    from ..errors import DataError

    checks = [(t, "train") for t in plan["train"]] + [(t, "val") for t in plan["train"]]
    checks += [(t, "test") for t in plan["test"]]
    own_skip = config.skip_bad_files
    quiet = logging.getLogger("declip_plugin.data.base")  # its "skipped (skip_bad_files: true)" is not the user's
    for name, split in checks:
        level = quiet.level
        quiet.setLevel(logging.ERROR if not own_skip else level)
        try:
            ds = build_dataset(name, split, config.replace(skip_bad_files=True))
        finally:
            quiet.setLevel(level)
        if ds.skipped and not own_skip:
            path, reason = ds.skipped[0]
            more = f" (and {len(ds.skipped) - 1} more bad file(s) in {name}/{split})" if len(ds.skipped) > 1 else ""
            raise DataError(f"dataset {name}/{split}: {reason}{more}; replace or remove the file, or set "
                            f"skip_bad_files: true (--opt skip_bad_files=true) to leave bad files out")
