"""The plugin manager: entry points of group ``deepfakebench`` plus the built-in plugins.

The built-in plugins are named as strings (``BUILTIN_PLUGINS``) and imported when a manager is
built, as llm does with its default plugins: this module sits at the bottom of the package's import
graph, so every module that registers into it (detectors, metrics, datasets) can look names up here
without an import circle. The built-in plugin is registered under the same name as its entry point,
so an installed package and a source checkout behave alike and nothing registers twice.

What a plugin's failure stops (docs: README, "Writing a plugin"):

* a plugin that cannot be loaded (its entry point's import raises, pluggy refuses its hooks), whose
  register hook raises or registers something invalid, that registers a name another plugin (the
  built-in one first) has already, or whose command's parser cannot be built, is **disabled**: one
  warning line names it and what failed (its traceback with ``--debug``), nothing it registers is used,
  and the built-in commands and every other plugin work;
* what a plugin's detector, metric, dataset adapter or command raises while a command uses it **stops
  that command**, as the built-in ones' errors do (a DeclipError as one ``error:`` line, exit 2);
* the built-in plugin is never disabled: a failure there is a bug, raised as it is.
"""
import importlib
import importlib.metadata
import logging
import threading

import pluggy

from . import hookspecs
from .errors import one_line
from .registry import Registry

logger = logging.getLogger(__name__)

BUILTIN_PLUGIN_NAME = "declip"
# (registration name, module path) of the plugins that ship with the package
BUILTIN_PLUGINS = ((BUILTIN_PLUGIN_NAME, "declip_plugin.builtin"),)
KINDS = ("detectors", "datasets", "metrics", "commands")
_LABELS = {"detectors": "detector", "datasets": "dataset adapter", "metrics": "metric", "commands": "command"}

_lock = threading.Lock()
_state = {}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus the plugins disabled in it: ``disabled`` maps a plugin's name to its label
    and what failed (see :func:`disable`)."""

    def __init__(self, project_name):
        super().__init__(project_name)
        self.disabled = {}


class PluginFailed(Exception):
    """A plugin's own fault while it is loaded or registers its names (see the module docstring)."""

    def __init__(self, name, why, exc=None):
        super().__init__(f"plugin {name!r}: {why}")
        self.name, self.why, self.exc = name, why, exc


def _plugin_label(pm, plugin):
    name = pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return f"plugin {name!r} ({dist.project_name} {dist.version})"
    return f"plugin {name!r}"


def _entry_point_label(name):
    """``plugin 'name' (distribution version)`` of an entry point that may not have loaded."""
    for dist in importlib.metadata.distributions():
        if any(ep.group == hookspecs.ENTRY_POINT_GROUP and ep.name == name for ep in dist.entry_points):
            return f"plugin {name!r} ({dist.metadata['Name']} {dist.version})"
    return f"plugin {name!r}"


def disable(pm, name, why, exc=None):
    """Disable the plugin ``name`` in ``pm`` (everything it registers, every kind) with one warning line
    naming it; its traceback at debug level (``declip --debug``). The built-in plugin is never disabled:
    its failure is a bug, raised as it is."""
    if name == BUILTIN_PLUGIN_NAME:
        raise exc if exc is not None else RuntimeError(why)
    plugin = pm.get_plugin(name)
    label = _plugin_label(pm, plugin) if plugin is not None else _entry_point_label(name)
    pm.set_blocked(name)  # unregistered, and not loaded again by this manager
    pm.disabled[name] = f"{label}: {why}"
    logger.warning("%s is disabled: %s; the built-in commands and the other plugins work without it (fix or "
                   "uninstall it; declip --debug shows its traceback)", label, why)
    if exc is not None:
        logger.debug("%s failed", label, exc_info=exc)


def _load_entrypoints(pm):
    """Each entry point of group ``deepfakebench`` on its own: one that cannot be imported, or whose hooks
    pluggy refuses, is disabled (:func:`disable`) and the others load."""
    group = hookspecs.ENTRY_POINT_GROUP
    names = dict.fromkeys(ep.name for dist in importlib.metadata.distributions() for ep in dist.entry_points
                          if ep.group == group)
    loaded = 0
    for name in names:
        try:
            loaded += pm.load_setuptools_entrypoints(group, name=name)
        except Exception as exc:  # noqa: BLE001 - whatever its import raises is the plugin's
            disable(pm, name, f"loading it raised {type(exc).__name__}: {exc}", exc)
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:  # a hook this project does not have (a misspelt name)
            disable(pm, pm.get_name(exc.plugin), str(exc), exc)
    logger.debug("loaded %d plugin(s) from entry points of group %r", loaded, group)


def create_plugin_manager(load_entrypoints=True):
    """A fresh plugin manager with the built-in plugins and (optionally) all entry points."""
    pm = PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name, module_path in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_path), name=name)
    pm.check_pending()
    if load_entrypoints:
        _load_entrypoints(pm)
    return pm


def _register_kind(pm, kind, reg):
    hook_name = f"deepfakebench_register_{kind}"
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        label, name = _plugin_label(pm, impl.plugin), pm.get_name(impl.plugin)

        def register(item, obj, _label=label, _name=name):
            if isinstance(item, str) and item in reg:
                raise PluginFailed(_name, f"it registers {_LABELS[kind]} {item!r}, which {reg.source(item)} "
                                          f"registers already (rename it or uninstall one of them)")
            reg.register(item, obj, source=_label, owner=_name)

        try:
            impl.function(register=register)
        except PluginFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - what a plugin's hook raises is the plugin's fault
            raise PluginFailed(name, f"its {hook_name} raised {type(exc).__name__}: {one_line(exc)}", exc) from exc


def build_registries(pm, kinds=KINDS):
    """Call every plugin's register hooks and collect the results in one Registry per kind. A plugin whose
    hook raises, or that registers a name another plugin has, is disabled (:func:`disable`), and the
    registries are built again without it."""
    while True:
        registries = {kind: Registry(_LABELS[kind]) for kind in kinds}
        try:
            for kind in kinds:
                _register_kind(pm, kind, registries[kind])
            return registries
        except PluginFailed as failed:
            disable(pm, failed.name, failed.why, failed.exc)


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
            disabled = len(pm.disabled)
            built = build_registries(pm, (kind,))
            if len(pm.disabled) != disabled:  # a plugin disabled now: gone from the kinds built before too
                registries.clear()
            registries.update(built)
        return registries[kind]


def disable_plugin(name, why, exc=None):
    """Disable the plugin ``name`` in the process-wide manager (e.g. one whose command's parser cannot be
    built); the registries are built again without it."""
    pm = get_plugin_manager()
    with _lock:
        disable(pm, name, why, exc)
        _state.get("registries", {}).clear()


def reset():
    """Forget the process-wide manager (tests use this after installing fake distributions)."""
    with _lock:
        _state.clear()
