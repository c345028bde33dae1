"""Inspect a DeepfakeBench checkout before anything of it runs (no import of its code).

:func:`validate_checkout` checks the layout, the ``DETECTOR`` registry and, for a mode, every
function the launcher will wrap (facts.WRAPPED) with the parameters it expects, reading the
sources with ``ast``. A mismatch is one line naming the file, the function, what changed and the
checkout's commit: the launcher never runs a checkout it would silently half-patch.
"""
import ast
import os
import re

from ...errors import DeclipError
from ... import deepfakebench_facts as facts

ENV_ROOT = "DEEPFAKEBENCH_ROOT"


class CheckoutMismatch(DeclipError):
    """The checkout differs from what the launcher relies on (facts.WRAPPED, the registry)."""


def find_bench_root(bench_root=None):
    """``bench_root`` or ``$DEEPFAKEBENCH_ROOT`` as an absolute path (DeclipError if neither)."""
    root = bench_root or os.environ.get(ENV_ROOT)
    if not root:
        raise DeclipError(f"no DeepfakeBench checkout given: pass its folder (--bench-root DIR) or set ${ENV_ROOT} "
                          f"(git clone https://github.com/SCLBD/DeepfakeBench)")
    return os.path.abspath(os.path.expanduser(str(root)))


def checkout_commit(root):
    """The commit of ``root`` read from its ``.git`` (no git binary needed), or 'unknown (no .git)'."""
    git = os.path.join(root, ".git")
    try:
        if os.path.isfile(git):  # a worktree / submodule: "gitdir: PATH"
            with open(git, encoding="utf-8") as f:
                line = f.read().strip()
            git = os.path.join(root, line.split(":", 1)[1].strip()) if line.startswith("gitdir:") else git
        with open(os.path.join(git, "HEAD"), encoding="utf-8") as f:
            head = f.read().strip()
        if not head.startswith("ref:"):
            return head[:7]
        ref = head.split(":", 1)[1].strip()
        path = os.path.join(git, ref)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return f.read().strip()[:7]
        with open(os.path.join(git, "packed-refs"), encoding="utf-8") as f:
            for line in f:
                if line.rstrip().endswith(" " + ref):
                    return line.split()[0][:7]
    except (OSError, IndexError):
        pass
    return "unknown (no .git)"


def validate_checkout(bench_root=None, mode=None, localization=True):
    """Check that ``bench_root`` (or $DEEPFAKEBENCH_ROOT) is a DeepfakeBench checkout we can run.

    Expects facts.REQUIRED_FILES and a top-level ``DETECTOR`` registry in training/metrics/registry.py
    with ``register_module()`` or item assignment. With ``mode`` ('train' / 'test'), also every
    function the launcher wraps in that mode (:func:`check_wrapped`). Returns ``{'root', 'commit',
    'registry_kind', 'host_detectors'}``; DeclipError (CheckoutMismatch) naming what does not fit.
    """
    root = find_bench_root(bench_root)
    if not os.path.isdir(root):
        raise DeclipError(f"DeepfakeBench checkout {root} does not exist (or is not a folder)")
    missing = [p for p in facts.REQUIRED_FILES if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise DeclipError(
            f"{root} is not a DeepfakeBench checkout: expected {', '.join(facts.REQUIRED_FILES)} (the SCLBD/DeepfakeBench "
            f"layout); missing: {', '.join(missing)}. Pass the folder that contains training/ (the root of the clone)")
    kind = _check_registry_source(os.path.join(root, facts.REGISTRY_FILE))
    commit = checkout_commit(root)
    if mode is not None:
        check_wrapped(root, mode, localization=localization, commit=commit)
    return {"root": root, "commit": commit, "registry_kind": kind, "host_detectors": host_detector_names(root)}


def wrapped_for(mode, localization=True):
    """facts.WRAPPED entries the launcher uses in ``mode``: {where: {function: parameters}}."""
    if mode not in facts.SCRIPTS:
        raise DeclipError(f"mode must be 'train' or 'test', got {mode!r}")
    out = dict(facts.WRAPPED[mode])
    if mode == "train" and localization:
        out.update(facts.WRAPPED["train-localization"])
    return out


def check_wrapped(root, mode, localization=True, commit=None):
    """Every function the launcher wraps in ``mode`` exists in the checkout's sources with the
    parameters of facts.WRAPPED, and the script opens its host config by the path the launcher
    serves (facts.HOST_CONFIGS). Raises CheckoutMismatch: one line with all differences."""
    problems = []
    for where, functions in wrapped_for(mode, localization).items():
        rel, _, cls = where.partition("::")
        found = _functions_in(os.path.join(root, rel), cls or None)
        if isinstance(found, str):
            problems.append(f"{rel}: {found}")
            continue
        for name, params in functions.items():
            label = f"{cls + '.' if cls else ''}{name}({', '.join(params)})"
            if name not in found:
                problems.append(f"{rel} has no {label}")
            elif found[name] != tuple(params):
                problems.append(f"{rel}: {cls + '.' if cls else ''}{name} now takes ({', '.join(found[name])}), "
                                f"expected {label}")
    script = os.path.join(root, facts.SCRIPTS[mode])
    if not problems and facts.HOST_CONFIGS[mode] not in _string_constants(script):
        problems.append(f"{facts.SCRIPTS[mode]} no longer opens {facts.HOST_CONFIGS[mode]}")
    if problems:
        raise CheckoutMismatch(
            f"DeepfakeBench checkout {root} (commit {commit or checkout_commit(root)}) differs from what `declip dfb "
            f"{mode}` wraps (tested with {facts.TESTED_COMMIT}): {'; '.join(problems)}. Use DeepfakeBench "
            f"{facts.TESTED_COMMIT} or update declip_plugin/deepfakebench_facts.py")


def _parse(path):
    try:
        with open(path, encoding="utf-8") as f:
            return ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as e:
        return f"cannot be read ({type(e).__name__}: {e})"


def _params(fn):
    a = fn.args
    return tuple(p.arg for p in (*a.posonlyargs, *a.args))


def _functions_in(path, cls=None):
    """{name: positional parameter names} of the module-level functions of ``path`` (or of class ``cls``
    in it), or a string saying why not."""
    tree = _parse(path)
    if isinstance(tree, str):
        return tree
    body = tree.body
    if cls is not None:
        classes = [n for n in body if isinstance(n, ast.ClassDef) and n.name == cls]
        if not classes:
            return f"no class {cls}"
        body = classes[0].body
    return {n.name: _params(n) for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _string_constants(path):
    tree = _parse(path)
    if isinstance(tree, str):
        return set()
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _check_registry_source(path):
    """Statically check registry.py for a DETECTOR registry; returns 'register_module', 'dict' or 'unknown'."""
    tree = _parse(path)
    if isinstance(tree, str):
        raise DeclipError(f"cannot read the DeepfakeBench registry {path}: {tree}")
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assigned, value = [], None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for name in ([t] if isinstance(t, ast.Name) else getattr(t, "elts", [])):
                if isinstance(name, ast.Name):
                    assigned.append(name.id)
                    if name.id == "DETECTOR":
                        value = node.value
    if "DETECTOR" not in assigned:
        raise DeclipError(
            f"{path} does not define a top-level DETECTOR registry (DeepfakeBench has `DETECTOR = Registry()` "
            f"with register_module(module_name=...) and DETECTOR[name]); top-level names found: "
            f"{', '.join(sorted(set(assigned))) or '(none)'}. This registry layout is not supported")
    if isinstance(value, ast.Dict) or (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                                       and value.func.id in ("dict", "OrderedDict", "defaultdict")):
        return "dict"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in classes:
        cls = classes[value.func.id]
        methods = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if "register_module" in methods and "__getitem__" in methods:
            return "register_module"
        if {"__setitem__", "__getitem__"} <= methods:
            return "dict"
        if not cls.bases:
            need = [m for m in ("register_module", "__getitem__") if m not in methods]
            raise DeclipError(
                f"{path}: DETECTOR is a {cls.name}, which lacks {' and '.join(need)} (DeepfakeBench's Registry has "
                f"register_module(module_name=...) to register and __getitem__ for DETECTOR[name]); methods found: "
                f"{', '.join(sorted(methods)) or '(none)'}. This registry layout is not supported")
    return "unknown"  # checked for real in the child, on the object


_REGISTER_RE = re.compile(r"""DETECTOR\.register_module\(\s*(?:module_name\s*=\s*)?['"]([^'"]+)['"]""")


def host_detector_names(root):
    """{name: file} of the detectors the checkout registers (a scan of training/detectors/*.py)."""
    out = {}
    folder = os.path.join(root, facts.DETECTORS_DIR)
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for m in _REGISTER_RE.finditer(text):
            out.setdefault(m.group(1), f"{facts.DETECTORS_DIR}/{name}")
    return out


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def dfb_config_problems(config, mode="test"):
    """What keeps ``config`` (a detector YAML's dict) from running in DeepfakeBench's ``mode`` script.

    Lists the keys the checkout reads without a default (facts.REQUIRED_KEYS) that the detector
    YAML must supply, and values it rejects (train.py's ``metric_scoring`` must be one of
    facts.METRIC_SCORING; the chosen optimizer needs its section). Returns a list of messages.
    """
    if mode not in facts.SCRIPTS:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    problems = [f"missing key {k!r}" for k in facts.REQUIRED_KEYS[mode] if not _get(config, k)[0]]
    if mode == "train":
        ms = config.get("metric_scoring")
        if "metric_scoring" in config and ms not in facts.METRIC_SCORING:
            problems.append(f"metric_scoring is {ms!r}, but DeepfakeBench's train.py accepts only "
                            f"{', '.join(facts.METRIC_SCORING)} (choose_metric raises NotImplementedError)")
        ok, opt_type = _get(config, "optimizer.type")
        if ok:
            sec = (config.get("optimizer") or {}).get(opt_type)
            need = facts.OPTIMIZER_KEYS.get(opt_type)
            if need is None:
                problems.append(f"optimizer.type is {opt_type!r}; DeepfakeBench knows {', '.join(facts.OPTIMIZER_KEYS)}")
            elif not isinstance(sec, dict):
                problems.append(f"missing key 'optimizer.{opt_type}' (the section of optimizer.type)")
            else:
                problems += [f"missing key 'optimizer.{opt_type}.{k}'" for k in need if k not in sec]
        sched = config.get("lr_scheduler")
        need = facts.SCHEDULER_KEYS.get(sched, ())
        problems += [f"missing key {k!r} (lr_scheduler: {sched})" for k in need if k not in config]
    fn = config.get("frame_num")
    if isinstance(fn, int) and not isinstance(fn, bool):
        problems.append("frame_num must be a mapping {train: N, test: N} for DeepfakeBench (config['frame_num'][mode])")
    return problems
