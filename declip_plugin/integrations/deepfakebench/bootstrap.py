"""The child process of `declip dfb`: ``python -P -m declip_plugin.integrations.deepfakebench.bootstrap``.

Started by launcher.launch() in the checkout root with ``<root>/training`` first on PYTHONPATH and
the run's spec (JSON) in $DECLIP_DFB_BOOTSTRAP. In this order:

1. with ``stub_datasets`` (implied by ``cpu``): stub modules for the dataset modules that cannot be imported without a GPU or
   dlib's landmark file (facts.CPU_UNIMPORTABLE; their classes raise when used);
2. imports the checkout's ``metrics.registry`` and registers every detector of our plugin manager
   into its ``DETECTOR`` (``register_module(module_name=name)(cls)``, or item assignment);
3. loads the unchanged script as a module (argparse and imports run; its ``__main__`` guard does
   not fire), checks and wraps what patches.py wraps, and calls its ``main()``.

Data-loader workers started with *spawn* (or forkserver) re-import this module as ``__mp_main__``
before they unpickle the dataset: :func:`prepare_worker` installs the same CPU stubs there.
"""
import json
import logging
import os
import re
import sys
import types

from ... import deepfakebench_facts as facts
from ...atomicio import write_json
from . import results
from .patches import BootstrapError, HostState, LocalizationReporter, check_objects, patch_test_script, \
    patch_trainer, serve_configs, wrap_init_seed

logger = results.logger

BOOTSTRAP_ENV = "DECLIP_DFB_BOOTSTRAP"
BOOTSTRAP_MODULE = "declip_plugin.integrations.deepfakebench.bootstrap"
HOST_MODULE_NAME = "__deepfakebench_host__"
EXIT_BOOTSTRAP_ERROR = 3


# ------------------------------------------------------------------------------ CPU stubs
def stub_module(name, attrs, reason):
    mod = types.ModuleType(name)
    mod.__doc__ = f"declip_plugin --cpu stub of DeepfakeBench's {name}: {reason}"

    def make(attr):
        def _unavailable(*args, **kwargs):
            raise RuntimeError(
                f"{name}.{attr} is a stub: `declip dfb --cpu` replaced {name} because {reason}. Run without --cpu "
                f"on a GPU machine (with dlib's landmark file in preprocessing/dlib_tools/) to use it")

        return type(attr, (), {"__init__": _unavailable, "__module__": name, "__doc__": mod.__doc__})

    for attr in attrs:
        setattr(mod, attr, make(attr))
    mod.__declip_stub__ = True
    return mod


def install_cpu_stubs():
    """Put the --cpu stub modules in sys.modules (both import names the checkout uses)."""
    installed = []
    for name, (attrs, reason) in facts.CPU_UNIMPORTABLE.items():
        for full in (name, "training." + name):
            if full in sys.modules and not getattr(sys.modules[full], "__declip_stub__", False):
                continue  # already imported for real (cannot happen before the script runs)
            sys.modules[full] = stub_module(full, attrs, reason)
            installed.append(full)
    return installed


def prepare_worker():
    """In a spawned data-loader worker: what the main child set up before the checkout's modules
    were imported (the CPU stubs)."""
    raw = os.environ.get(BOOTSTRAP_ENV)
    if raw and json.loads(raw).get("stub_datasets"):
        install_cpu_stubs()


# ------------------------------------------------------------------------------ registry
def _registry_names(registry):
    data = getattr(registry, "data", None)
    if isinstance(data, dict):
        return set(data)
    if hasattr(registry, "keys"):
        try:
            return set(registry.keys())
        except Exception:  # noqa: BLE001 - a foreign object; only used for messages
            return set()
    return set()


def _registry_get(registry, name):
    try:
        return registry[name]
    except Exception:  # noqa: BLE001
        return None


def check_registry_interface(registry, where="metrics.registry.DETECTOR"):
    """'register_module' or 'setitem': how to register into ``registry`` (BootstrapError if neither,
    or if it cannot be read back with ``registry[name]`` as the scripts do)."""
    has_register = callable(getattr(registry, "register_module", None))
    has_setitem = callable(getattr(type(registry), "__setitem__", None))
    if not callable(getattr(type(registry), "__getitem__", None)) or not (has_register or has_setitem):
        members = sorted(m for m in dir(registry) if not m.startswith("__") or m in ("__getitem__", "__setitem__"))
        raise BootstrapError(
            f"{where} is a {type(registry).__name__} without the interface DeepfakeBench's scripts use: expected "
            f"register_module(module_name=...) (or item assignment) to register and DETECTOR[name] to look up; "
            f"found members: {', '.join(members) or '(none)'}")
    return "register_module" if has_register else "setitem"


def register_into(registry, detectors, where="metrics.registry.DETECTOR"):
    """Register ``{name: (cls, source)}`` into DeepfakeBench's ``DETECTOR``; returns the names."""
    has_register = check_registry_interface(registry, where) == "register_module"
    existing = _registry_names(registry)
    done = []
    for name, (cls, source) in sorted(detectors.items()):
        if name in existing and _registry_get(registry, name) is not cls:
            raise BootstrapError(f"detector name {name!r} of {source} is already in {where}; rename the plugin's detector")
        if has_register:
            registry.register_module(module_name=name)(cls)
        else:
            registry[name] = cls
        if _registry_get(registry, name) is not cls:
            raise BootstrapError(f"registering {name!r} into {where} did not take: {where}[{name!r}] does not return it")
        done.append(name)
    return done


def as_named_in_checkout(detectors, rename):
    """``detectors`` keyed by the names they run under in the checkout (``rename``: ours -> that name,
    from launcher.names_in_checkout); the checkout's own keep the names they share with ours."""
    rename = rename or {}
    return {rename.get(n, n): d for n, d in detectors.items()}


def plugin_detectors():
    """{name: (class, source label)} of every detector our plugin manager knows."""
    from ...plugins import build_registries, create_plugin_manager

    reg = build_registries(create_plugin_manager())["detectors"]
    return {name: (cls, reg.source(name)) for name, cls in reg.items()}


# ------------------------------------------------------------------------------ the child
def write_status(path, data):
    if not path:
        return
    try:
        write_json(path, data, sort_keys=True)
    except OSError:
        pass


def _setup_logging():
    root = logging.getLogger("declip_plugin")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("[declip] %(levelname)s %(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)
        root.propagate = False  # train.py configures the root logger (its training.log) itself
    table = results.TABLE
    table.propagate = False
    if not table.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        table.addHandler(h)
        table.setLevel(logging.INFO)


def _register(spec, state):
    if spec.get("stub_datasets"):
        logger.info("stub modules for %s%s", ", ".join(install_cpu_stubs()), " (--cpu: GPUs hidden)" if spec.get("cpu") else "")
    try:
        host_registry = __import__(facts.REGISTRY_MODULE, fromlist=["DETECTOR"])
    except Exception as e:  # noqa: BLE001 - whatever the checkout raises: say where
        raise BootstrapError(f"cannot import the checkout's {facts.REGISTRY_MODULE} ({facts.REGISTRY_FILE}) with "
                             f"{os.path.join(spec['root'], 'training')} on the import path: {e}") from None
    registry = getattr(host_registry, "DETECTOR", None)
    if registry is None:
        raise BootstrapError(f"{facts.REGISTRY_FILE} defines no DETECTOR")
    check_registry_interface(registry)
    try:
        detectors = plugin_detectors()
    except Exception as e:  # noqa: BLE001 - a broken plugin: say which step failed
        raise BootstrapError(f"loading the plugins of entry-point group 'deepfakebench' failed: "
                             f"{type(e).__name__}: {e}") from None
    detectors = as_named_in_checkout(detectors, spec.get("rename"))
    registered = register_into(registry, detectors)
    state.registry, state.ours = registry, {n: detectors[n][0] for n in registered}
    return registered


def _load_script(spec):
    script = spec["script"]
    try:
        with open(script, encoding="utf-8") as f:
            code = compile(f.read(), script, "exec")
    except (OSError, SyntaxError) as e:
        raise BootstrapError(f"cannot read {script}: {e}") from None
    module = types.ModuleType(HOST_MODULE_NAME)
    module.__file__ = script
    sys.modules[HOST_MODULE_NAME] = module
    sys.argv = [script] + list(spec.get("argv") or [])
    g = module.__dict__
    g["__builtins__"] = __builtins__
    serve_configs(g, spec.get("serve") or {})
    exec(code, g)  # the script's top level (argparse, imports); its __main__ guard does not fire  # noqa: S102
    return g


def _wrap(g, state, reporter):
    spec = state.spec
    mode, commit = spec["mode"], spec.get("commit")
    check_objects(facts.SCRIPTS[mode], g, facts.WRAPPED[mode][facts.SCRIPTS[mode]], commit)
    wrap_init_seed(g, state)
    if mode == "test":
        patch_test_script(g, state, reporter)
    elif spec.get("localization"):
        module = sys.modules.get(facts.TRAINER_MODULE)
        trainer_cls = getattr(module, facts.TRAINER_CLASS, None)
        where = f"{facts.TRAINER_FILE}::{facts.TRAINER_CLASS}"
        if trainer_cls is None:
            raise BootstrapError(f"{facts.SCRIPTS['train']} did not import {facts.TRAINER_MODULE}.{facts.TRAINER_CLASS} "
                                 f"(commit {commit}; tested with {facts.TESTED_COMMIT})")
        check_objects(where, trainer_cls, facts.WRAPPED["train-localization"][where], commit)
        patch_trainer(trainer_cls, state, reporter)


#: DeepFakesDetection's loader (dataset/abstract_dataset.py, collect_img_and_label) accepts only the
#: dataset names it lists and raises this for any other
_NOT_FOUND = re.compile(r"Dataset (.+) not found\.?")


def importing_file(exc, root):
    """``<file>:<line>`` (relative to the checkout ``root``) of the innermost frame of ``exc``'s traceback in
    the checkout: the file whose import raised it (an import inside a function included), or None."""
    root, where = os.path.realpath(root), None
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if path.startswith(root + os.sep):
            where = f"{os.path.relpath(path, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def host_error(exc, spec):
    """A BootstrapError (one line saying what to do) for what a fork raises where DeepfakeBench would
    not: a module its environment lacks, a dataset name outside its whitelist; None for the rest."""
    if isinstance(exc, ModuleNotFoundError):
        where = importing_file(exc, spec["root"])
        return BootstrapError(
            f"the checkout {spec['root']} imports {exc.name!r}{f' (in {where})' if where else ''}, which "
            f"{sys.executable} cannot find: run `declip dfb setup --bench_root {spec['root']}` (DeepfakeBench's "
            f"requirements plus a fork's extra imports) or pip install it there")
    m = _NOT_FOUND.fullmatch(str(exc))
    if m:
        return BootstrapError(
            f"the checkout's dataset loader (training/dataset/abstract_dataset.py) accepts only the dataset names it "
            f"lists and refused {m.group(1)!r}: export the data under a name it accepts, e.g. `declip export-dfb "
            f"DATASET OUT --name UADFV` (DeepFakesDetection accepts FaceForensics++ and its FF-* parts, DFDC, "
            f"FMFCC-V, DFDCP, UADFV, Celeb-DF-v2, FaceShifter, ForgeryNet)")
    return None


def bootstrap_main():
    """The child: register our detectors into the checkout's DETECTOR, wrap, run its script."""
    _setup_logging()
    raw = os.environ.get(BOOTSTRAP_ENV)
    if not raw:
        logger.error("%s is not set: this module is started by declip_plugin.integrations.deepfakebench.launch()",
                     BOOTSTRAP_ENV)
        return 2
    spec = json.loads(raw)
    status_file = spec.get("status_file")
    state = HostState(spec)
    try:
        registered = _register(spec, state)
        write_status(status_file, {"registered": registered})
        logger.info("registered into DeepfakeBench's DETECTOR: %s", ", ".join(registered))
        from ...plugins import build_registries, create_plugin_manager

        reporter = LocalizationReporter(build_registries(create_plugin_manager())["metrics"].get("localization"))
        try:
            g = _load_script(spec)
            _wrap(g, state, reporter)
            result = g["main"]()
        except (ModuleNotFoundError, ValueError) as e:
            raise host_error(e, spec) or e
    except BootstrapError as e:
        write_status(status_file, {"error": str(e)})
        logger.error("%s", e)
        return EXIT_BOOTSTRAP_ERROR
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(bootstrap_main())
elif __name__ == "__mp_main__":  # a spawned data-loader worker re-imports the parent's main module
    prepare_worker()
