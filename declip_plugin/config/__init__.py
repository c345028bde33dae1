"""YAML configs: bundled-name lookup, loading, merging and validation.

Order of precedence (later wins): the run keys' defaults (config/run.py) <-
``configs/train_config.yaml`` (or ``test_config.yaml``) <- the detector YAML <- command-line
overrides. Every key must be known to the run schema (DeepfakeBench's keys and the engine's) or to
the detector's own ``config_class``; an unknown key is an error that names the closest valid key,
and a wrong value names the key, the type expected and where the value came from.

:func:`load_run_config` and :func:`load_resume_config` give a typed :class:`~.run.RunConfig` (its
``to_dict()`` is the merged dict a detector is built from); :func:`load_detector_config` the merged dict.
"""
import copy
import os
from importlib import resources
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..registry import closest
from .run import RunConfig, list_keys
from .schema import check_mapping, defaults


def configs_dir():
    """The bundled ``configs/`` folder (``configs/detector``, ``configs/dataset``, train/test configs)."""
    return Path(str(resources.files("declip_plugin") / "configs"))


def bundled_names(kind):
    folder = configs_dir() / kind
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def resolve_config_path(name_or_path, kind="detector"):
    """A YAML path as given, or the bundled ``configs/<kind>/<name>.yaml``."""
    p = Path(os.path.expanduser(str(name_or_path)))
    if p.is_file():
        return p
    bundled = configs_dir() / kind / f"{p.stem if p.suffix in ('.yaml', '.yml') else p.name}.yaml"
    if bundled.is_file() and (len(p.parts) == 1 or not p.suffix):
        return bundled
    names = bundled_names(kind)
    hint = closest(p.stem, names)
    raise ConfigError(f"{kind} config {str(name_or_path)!r} not found: not a file, and not one of the bundled "
                      f"{kind} configs ({', '.join(names)})" + (f"; did you mean {hint!r}?" if hint else ""))


def load_yaml(path):
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError(f"{path}: invalid YAML{at}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys to values, got {type(data).__name__}")
    return data


def merge(base, override):
    """Deep merge of mappings (nested dicts merged, everything else replaced)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def schemas_for(model_name):
    """The schemas a config of ``model_name`` is checked against: the run keys, then the detector's
    own ``config_class`` (whose declarations win for :data:`run.DETECTOR_OWNED` keys)."""
    out = [RunConfig]
    if model_name:
        from ..plugins import get_registry

        cls = get_registry("detectors").get(model_name)  # an unknown name lists the available ones
        if getattr(cls, "config_class", None) is not None:
            out.append(cls.config_class)
    return out


def validate(config, where="config", origins=None):
    """Check every key and value of ``config`` against the run schema and its detector's schema;
    ``origins`` maps a key to the file or command line it came from. Returns ``config``."""
    return check_mapping(config, schemas_for(config.get("model_name")), where=where, origins=origins)


def normalise(config):
    """``config`` as the engine reads it, once, at loading: every list key (:func:`list_keys`) a list (a
    single name ``x`` -> ``[x]``, null -> ``[]``). Returns a new dict."""
    out = dict(config)
    for name in list_keys():
        value = out.get(name)
        out[name] = [] if value is None else [value] if isinstance(value, str) else list(value)
    return out


def parse_overrides(items):
    """``['optimizer.adam.lr=1e-4', 'nEpochs=3']`` -> nested dict (values parsed as YAML)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. nEpochs=5 or optimizer.adam.lr=1e-4)")
        key, raw = item.split("=", 1)
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {item!r}: empty key; expected KEY=VALUE (e.g. nEpochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r} on the command line: the value is not valid YAML "
                              f"({getattr(exc, 'problem', None) or exc}); quote it or fix it") from exc
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _origins(origins, mapping, source):
    for k in mapping:
        origins[k] = source
    return origins


def load_detector_config(name_or_path, overrides=None, base=None, validate_keys=True):
    """Load a detector YAML (path or bundled name) over ``base`` and ``overrides`` on top; validated
    (an error names the file, or the command line, the bad value came from)."""
    path = resolve_config_path(name_or_path, "detector")
    own = load_yaml(path)
    origins = _origins(_origins({}, own, str(path)), overrides or {}, "the command line (--opt)")
    merged = merge(merge(base or {}, own), overrides or {})
    if validate_keys:
        validate(merged, where=str(path), origins=origins)
        merged = normalise(merged)
    merged.setdefault("_config_path", str(path))
    return merged


def run_defaults(mode):
    """The run keys' defaults (config/run.py) with ``configs/<mode>_config.yaml`` over them."""
    base_path = configs_dir() / f"{mode}_config.yaml"
    mode_yaml = load_yaml(base_path) if base_path.is_file() else {}
    validate(mode_yaml, where=str(base_path))
    return merge(defaults(RunConfig), mode_yaml)


def load_run_config(detector, mode="train", overrides=None):
    """The typed config of a run (:class:`~.run.RunConfig`): the run keys' defaults <-
    ``configs/<mode>_config.yaml`` <- the detector YAML (a path, a bundled name or a dict) <-
    ``overrides`` (the command line); validated (an error names the file or the command line)."""
    base = run_defaults(mode)
    if isinstance(detector, dict):
        origins = _origins(_origins({}, detector, "the detector config"), overrides or {}, "the command line (--opt)")
        merged = merge(merge(base, detector), overrides or {})
        validate(merged, where="config", origins=origins)
        return RunConfig.from_dict(merged)
    merged = load_detector_config(detector, overrides=overrides, base=base)
    return RunConfig.from_dict(merged, where=merged["_config_path"])


def load_resume_config(run_dir, overrides=None):
    """A run directory's ``config.yaml`` with ``overrides`` on top, validated like a new run, typed."""
    from ..run_folder import RunDir

    path = RunDir(run_dir).config
    saved = load_yaml(path)
    origins = _origins(_origins({}, saved, path), overrides or {}, "the command line (--opt)")
    merged = merge(saved, overrides or {})
    validate(merged, where=path, origins=origins)
    return RunConfig.from_dict(merged, where=path)


def keys_markdown():
    """docs/config.md: every run key, then each registered detector's own keys."""
    from ..plugins import get_registry
    from .schema import markdown

    parts = ["# Config keys", "",
             "Generated by `declip config-keys` from the schemas in the code (config/run.py and each detector's "
             "`config_class`); a test keeps this file equal to its output.", "",
             markdown(RunConfig, "Run keys (DeepfakeBench's and the engine's)")]
    for name, cls in get_registry("detectors").items():
        if getattr(cls, "config_class", None) is not None:
            parts.append(markdown(cls.config_class, f"Detector `{name}` ({cls.__module__}.{cls.__name__})"))
    return "\n".join(parts)
