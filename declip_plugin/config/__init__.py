"""YAML configs: bundled-name lookup, loading, merging and validation.

Order of precedence (later wins): ``configs/train_config.yaml`` (or ``test_config.yaml``) <- the
detector YAML <- command-line overrides. Every key must be known (to DeepfakeBench, to DeCLIP,
or to the engine); an unknown key is an error that names the closest valid key, and a value of
the wrong type names the key and the type expected.
"""
import copy
import os
from importlib import resources
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..registry import closest

ANY = object()
NUM = (int, float)
OPT_STR = (str, type(None))
OPT_INT = (int, type(None))
OPT_NUM = (int, float, type(None))
STR_LIST = (list, str)

ADAM = {"lr": NUM, "beta1": NUM, "beta2": NUM, "eps": NUM, "weight_decay": NUM, "amsgrad": bool}
SGD = {"lr": NUM, "momentum": NUM, "weight_decay": NUM}

# DeepfakeBench's detector / train / test YAML keys (training/config/*.yaml)
DEEPFAKEBENCH_KEYS = {
    "log_dir": str, "pretrained": ANY, "model_name": str, "backbone_name": OPT_STR, "backbone_config": (dict, type(None)),
    "all_dataset": STR_LIST, "train_dataset": STR_LIST, "test_dataset": STR_LIST, "compression": OPT_STR,
    "train_batchSize": int, "test_batchSize": int, "workers": int, "frame_num": (dict, int), "resolution": int,
    "with_mask": bool, "with_landmark": bool, "use_data_augmentation": bool, "data_aug": (dict, type(None)),
    "mean": list, "std": list,
    "optimizer": {"type": str, "adam": ADAM, "sgd": SGD},
    "lr_scheduler": OPT_STR, "lr_step": OPT_INT, "lr_gamma": OPT_NUM, "lr_T_max": OPT_INT, "lr_eta_min": OPT_NUM,
    "nEpochs": int, "start_epoch": int, "save_epoch": int, "rec_iter": int, "logdir": OPT_STR, "manualSeed": int,
    "save_ckpt": bool, "save_feat": bool, "loss_func": OPT_STR, "losstype": OPT_STR, "metric_scoring": str,
    "cuda": bool, "cudnn": bool, "ddp": bool, "local_rank": int, "mode": str, "lmdb": bool, "dry_run": bool,
    "rgb_dir": str, "lmdb_dir": str, "dataset_json_folder": str, "label_dict": dict, "SWA": bool, "save_avg": bool,
    "video_mode": bool, "clip_size": OPT_INT, "dataset_type": OPT_STR, "test_metric": OPT_STR,
    "task_target": OPT_STR, "swa_start": OPT_INT, "weights_path": OPT_STR,
}

# DeCLIP detector keys (official option names; ``arch`` is accepted for ``backbone``)
DECLIP_KEYS = {
    "backbone": str, "arch": str, "feature_layer": OPT_STR, "decoder_type": str, "fully_supervised": bool,
    "fix_backbone": bool, "init_gain": NUM, "score_reduction": str,
}

# keys of the embedded engine and the data side
ENGINE_KEYS = {
    "data_root": OPT_STR, "val_dataset": (list, str, type(None)), "in_domain": (list, str, type(None)),
    "mask_size": int, "include_real": (bool, type(None)), "augmentation": OPT_STR, "flip_prob": NUM,
    "skip_bad_files": bool, "max_samples": OPT_INT,
    "early_stopping": {"enabled": bool, "patience": int, "delta": NUM, "lr_factor": NUM, "min_lr": NUM},
    "device": OPT_STR, "precision": str, "channels_last": bool, "compile": bool, "pin_memory": bool,
    "persistent_workers": bool, "feature_cache": {"enabled": (bool, str), "dir": OPT_STR, "max_gb": NUM,
                                                  "memory": bool},
    "save_masks": bool, "tensorboard_masks": int, "log_every": int, "val_every": int,
    "name": OPT_STR, "dist_backend": OPT_STR, "val_metric": OPT_STR,
}

SCHEMA = {**DEEPFAKEBENCH_KEYS, **DECLIP_KEYS, **ENGINE_KEYS}


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


def _type_name(expected):
    if expected is ANY:
        return "any value"
    if isinstance(expected, dict):
        return "a mapping"
    types = expected if isinstance(expected, tuple) else (expected,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
             dict: "a mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def validate(config, schema=None, where="config", extra_keys=None):
    """Check every key and type of ``config`` against ``schema`` (recursively); returns config."""
    schema = dict(SCHEMA if schema is None else schema)
    if extra_keys:
        schema.update(extra_keys)
    for key, value in config.items():
        if key.startswith("_"):  # bookkeeping added by the loader (e.g. _config_path)
            continue
        if key not in schema:
            hint = closest(key, schema)
            raise ConfigError(f"{where}: unknown key {key!r}" + (f"; did you mean {hint!r}?" if hint else "")
                              + " (remove it or fix its spelling)")
        expected = schema[key]
        if expected is ANY:
            continue
        if isinstance(expected, dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: key {key!r} must be a mapping, got {value!r}")
            validate(value, expected, where=f"{where}: {key}")
            continue
        types = expected if isinstance(expected, tuple) else (expected,)
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok and float in types and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise ConfigError(f"{where}: key {key!r} must be {_type_name(expected)}, got {value!r} "
                              f"({type(value).__name__})")
    return config


def parse_overrides(items):
    """``['optimizer.adam.lr=1e-4', 'nEpochs=3']`` -> nested dict (values parsed as YAML)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. nEpochs=5 or optimizer.adam.lr=1e-4)")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_detector_config(name_or_path, overrides=None, base=None, validate_keys=True):
    """Load a detector YAML (path or bundled name) over ``base`` (e.g. the train config) and
    ``overrides`` on top; validates the result."""
    path = resolve_config_path(name_or_path, "detector")
    merged = merge(base or {}, load_yaml(path))
    merged = merge(merged, overrides or {})
    if validate_keys:
        validate(merged, where=str(path), extra_keys=_detector_keys(merged.get("model_name")))
    merged.setdefault("_config_path", str(path))
    return merged


def load_run_config(detector, mode="train", overrides=None):
    """The merged config of a run: ``configs/<mode>_config.yaml`` <- detector YAML <- overrides."""
    base_path = configs_dir() / f"{mode}_config.yaml"
    base = load_yaml(base_path) if base_path.is_file() else {}
    if isinstance(detector, dict):
        merged = merge(merge(base, detector), overrides or {})
        validate({k: v for k, v in merged.items() if not k.startswith("_")}, where="config",
                 extra_keys=_detector_keys(merged.get("model_name")))
        return merged
    return load_detector_config(detector, overrides=overrides, base=base)


def _detector_keys(model_name):
    """Extra keys a plugin's detector declares (``config_keys`` class attribute)."""
    if not model_name:
        return None
    try:
        from ..plugins import get_registry

        cls = get_registry("detectors").get(model_name)
    except Exception:  # unknown detector: reported when it is built
        return None
    return getattr(cls, "config_keys", None)
