"""The plugin manager: entry points of group ``deepfakebench`` plus the built-in plugins.

The built-in plugins are named as strings (``BUILTIN_PLUGINS``) and imported when a manager is
built, as llm does with its default plugins: this module sits at the bottom of the package's import
graph, so every module that registers into it (detectors, metrics, datasets) can look names up here
without an import circle. The built-in plugin is registered under the same name as its entry point,
so an installed package and a source checkout behave alike and nothing registers twice.
"""
import importlib
import logging
import threading

import pluggy

from . import hookspecs
from .registry import Registry

logger = logging.getLogger(__name__)

BUILTIN_PLUGIN_NAME = "declip"
# (registration name, module path) of the plugins that ship with the package
BUILTIN_PLUGINS = ((BUILTIN_PLUGIN_NAME, "declip_plugin.builtin"),)
KINDS = ("detectors", "datasets", "metrics", "commands")
_LABELS = {"detectors": "detector", "datasets": "dataset adapter", "metrics": "metric", "commands": "command"}

_lock = threading.Lock()
_state = {}


def _plugin_label(pm, plugin):
    name = pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return f"plugin {name!r} ({dist.project_name} {dist.version})"
    return f"plugin {name!r}"


def create_plugin_manager(load_entrypoints=True):
    """A fresh plugin manager with the built-in plugins and (optionally) all entry points."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, module_path in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_path), name=name)
    if load_entrypoints:
        n = pm.load_setuptools_entrypoints(hookspecs.ENTRY_POINT_GROUP)
        logger.debug("loaded %d plugin(s) from entry points of group %r", n, hookspecs.ENTRY_POINT_GROUP)
    pm.check_pending()
    return pm


def build_registries(pm, kinds=KINDS):
    """Call every plugin's register hooks and collect the results in one Registry per kind."""
    registries = {}
    for kind in kinds:
        reg = Registry(_LABELS[kind])
        hook = getattr(pm.hook, f"deepfakebench_register_{kind}")
        for impl in hook.get_hookimpls():
            label = _plugin_label(pm, impl.plugin)

            def register(name, obj, _label=label, _reg=reg):
                _reg.register(name, obj, source=_label)

            impl.function(register=register)
        registries[kind] = reg
    return registries


def get_plugin_manager():
    """The process-wide plugin manager (created on first use)."""
    with _lock:
        if "pm" not in _state:
            _state["pm"] = create_plugin_manager()
        return _state["pm"]


def get_registry(kind):
    """The registry of ``kind`` ('detectors', 'datasets' or 'metrics') of the process-wide manager."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry kind {kind!r}; expected one of {KINDS}")
    pm = get_plugin_manager()
    with _lock:
        registries = _state.setdefault("registries", {})
        if kind not in registries:  # one kind at a time: `declip --help` imports no detector
            registries.update(build_registries(pm, (kind,)))
        return registries[kind]


def reset():
    """Forget the process-wide manager (tests use this after installing fake distributions)."""
    with _lock:
        _state.clear()
