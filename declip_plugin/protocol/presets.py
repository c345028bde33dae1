"""Protocol presets kept as data: ``configs/protocol/<name>.yaml``, one named protocol per file.

File format (every key but ``methods``, ``train`` and ``test`` optional)::

    description: one line           # what the preset reproduces
    methods: [clip_enhanced, ...]   # detector YAMLs: bundled names or paths
    train: [FaceForensics++]        # train datasets (one cell per method and train set)
    test: [FaceForensics++, DFDC]   # test datasets
    optional_test: [Celeb-DF-v1]    # added to ``test`` with --optional_tests
    headline: video_auc             # the metric printed first and drawn in the heat-maps
    metrics: [video_auc, auc]       # the metrics of the grids (default: every one the runs report)
    references:                     # published figures shown beside the measured rows (references.py)
      - {source: ..., metric: ..., rows: ...}

Every preset is such a file: the paper's (``dolos``, ``autosplice``, with DeCLIP's published figures), the
CPU-sized demos (``demo``, ``demo-video``) and DeepFakesDetection's (``ff-cross``). A preset is read when it
is asked for (:func:`load_preset`), so a broken file fails the command that uses it with one line naming the
file and the key, not every command.
"""
import os

from ..config import configs_dir, load_yaml
from ..errors import ConfigError
from ..references import from_data

KIND = "protocol"
KEYS = ("description", "methods", "train", "test", "optional_test", "headline", "metrics", "references")
REQUIRED = ("methods", "train", "test")


def preset_dir():
    return str(configs_dir() / KIND)


def preset_files():
    """``{name: path}`` of the preset files (their stems), sorted by name."""
    folder = preset_dir()
    if not os.path.isdir(folder):
        return {}
    files = {os.path.splitext(n)[0]: os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".yaml")}
    return {name: files[name] for name in sorted(files)}


def _names(doc, key, path):
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path}: {key} must be a list of names, got {value!r}")
    return list(value)


def _metric(name, path, key):
    from ..metrics.base import metric_infos
    from ..registry import closest

    infos = metric_infos()
    if name not in infos:
        hint = closest(name, infos)
        raise ConfigError(f"{path}: {key}: {name!r} is no metric; known: {', '.join(infos)}"
                          + (f" (did you mean {hint!r}?)" if hint else ""))
    return name


def load_preset(name):
    """The preset ``name`` of its file, in the form :func:`~declip_plugin.protocol.plan.make_plan` reads: methods,
    train, test, optional_test, headline, metrics, reference (a list of blocks), description, file."""
    from ..registry import closest

    path = preset_files()[name]
    doc = load_yaml(path)
    for key in doc:
        if key not in KEYS:
            hint = closest(key, KEYS)
            raise ConfigError(f"{path}: unknown key {key!r}; known: {', '.join(KEYS)}"
                              + (f" (did you mean {hint!r}?)" if hint else ""))
    out = {key: _names(doc, key, path) for key in ("methods", "train", "test", "optional_test", "metrics")}
    for key in REQUIRED:
        if not out[key]:
            raise ConfigError(f"{path}: {key} is required (a list of names)")
    out["metrics"] = [_metric(m, path, "metrics") for m in out["metrics"]]
    headline = doc.get("headline")
    out["headline"] = _metric(headline, path, "headline") if headline is not None else None
    refs = doc.get("references") or []
    if not isinstance(refs, list):
        raise ConfigError(f"{path}: references must be a list of blocks (source, metric, rows)")
    out["reference"] = [from_data(block, f"{path}: references[{i}]") for i, block in enumerate(refs)]
    out["description"] = str(doc.get("description") or "")
    out["file"] = path
    return out


def preset_names():
    """Every preset name (the files of configs/protocol), sorted."""
    return list(preset_files())


def preset_definition(name):
    """The preset ``name`` (:func:`load_preset`); an unknown name is a ConfigError listing the known ones."""
    if name in preset_files():
        return load_preset(name)
    from ..registry import closest

    hint = closest(name, preset_names())
    raise ConfigError(f"--preset {name!r}: unknown protocol preset; known: {', '.join(preset_names())}"
                      + (f" (did you mean {hint!r}?)" if hint else ""))


__all__ = ["preset_files", "preset_names", "preset_definition", "load_preset", "preset_dir", "KEYS"]
