"""Published reference figures: the blocks a protocol preset carries beside its measured rows.

A block is what one publication reports under one metric, in the form the plan (protocol.json), the
leaderboard and the report read::

    {"source": "DeepFakesDetection README (...)",   # where the figures come from
     "label": "DeepFakesDetection",                  # optional: names the block's rows "<row> (published: <label>)"
     "metric": "video_auc",                          # the metric they report (on its own scale, metrics/)
     "rows": {"Xception": {"id": None, "ood": None,  # the published ID / OOD means, when published
                           "datasets": {"DFDC": 0.739, ...}}}}   # per test set, when published

Older protocol folders hold one block without ``label`` and ``datasets`` (the ``dolos`` preset:
``{source, metric, rows: {method: {id, ood}}}``): :func:`blocks` reads both that and a list of blocks.

In a preset file (configs/protocol/*.yaml, read by :mod:`declip_plugin.protocol.presets`) a block is
written as the publication prints it: either ``rows: {method: {id: .., ood: ..}}``, or ``columns:
[test sets]`` with ``rows: {method: [one value per column]}`` (null where the table has none); ``scale:
100`` says the figures are percentages (default: the metric's own scale) and they are converted to the
metric's scale once, at loading (:func:`from_data`).

A published row's ID / OOD mean, where the publication gives per-test-set figures only, is the mean of
its figures over the in-domain / out-of-domain test sets of the table it is shown in, and only when it
has a figure for each of them (:func:`row_means`): a mean over other test sets than the measured rows'
is not shown.
"""
from .errors import ConfigError

PUBLISHED = "(published)"


def blocks(reference):
    """The reference blocks of a plan's ``reference`` value: None, one block (older protocol.json) or a list."""
    if not reference:
        return []
    return [reference] if isinstance(reference, dict) else [b for b in reference if b]


def row_name(name, block):
    """How a published row is named in tables: ``<name> (published)`` or ``<name> (published: <label>)``."""
    label = block.get("label")
    return f"{name} ({PUBLISHED[1:-1]}: {label})" if label else f"{name} {PUBLISHED}"


def row_means(values, id_sets, ood_sets):
    """``(ID mean, OOD mean)`` of one published row: the published ones, else the mean of its per-test-set
    figures over ``id_sets`` / ``ood_sets`` when it has a figure for each of them (else None)."""
    per_set = values.get("datasets") or {}

    def mean(published, sets):
        if published is not None:
            return published
        vals = [per_set.get(d) for d in sets]
        return sum(vals) / len(vals) if vals and None not in vals else None

    return mean(values.get("id"), sorted(id_sets)), mean(values.get("ood"), sorted(ood_sets))


def note(shown):
    """The sentence under a table that shows the rows of the blocks ``shown``."""
    if len(shown) == 1 and not shown[0].get("label"):  # one unlabelled block (the dolos preset): as before
        return (f" Rows marked {PUBLISHED}: the paper's own figures ({shown[0].get('source', 'published')}), "
                "not measured by this run.")
    parts = [f"{row_name('', b).strip()}: {b.get('source', 'published')}" for b in shown]
    return (" Rows marked (published ...): figures as published, not measured by this run, never ranked; "
            + "; ".join(parts) + ".")


# ---- preset files ----------------------------------------------------------------------------------

_BLOCK_KEYS = ("source", "label", "metric", "scale", "columns", "rows")


def from_data(doc, where):
    """A block of a preset file (see the module docstring) in the plan's form; ConfigError naming ``where``."""
    from .metrics.base import metric_infos
    from .registry import closest

    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a reference block is a mapping with {', '.join(_BLOCK_KEYS)}")
    for key in doc:
        if key not in _BLOCK_KEYS:
            hint = closest(key, _BLOCK_KEYS)
            raise ConfigError(f"{where}: unknown key {key!r} in a reference block; known: {', '.join(_BLOCK_KEYS)}"
                              + (f" (did you mean {hint!r}?)" if hint else ""))
    for key in ("source", "metric", "rows"):
        if not doc.get(key):
            raise ConfigError(f"{where}: a reference block needs {key!r}")
    infos = metric_infos()
    metric = doc["metric"]
    if metric not in infos:
        raise ConfigError(f"{where}: reference metric {metric!r} is no metric; known: {', '.join(infos)}")
    scale = doc.get("scale", infos[metric].scale)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        raise ConfigError(f"{where}: scale {scale!r} must be a positive number (100: the figures are percentages)")
    factor = infos[metric].scale / scale
    rows = {str(name): _row(values, doc.get("columns"), factor, f"{where}: row {name!r}")
            for name, values in _mapping(doc["rows"], f"{where}: rows").items()}
    out = {"source": str(doc["source"]), "metric": metric, "rows": rows}
    if doc.get("label"):
        out["label"] = str(doc["label"])
    return out


def _mapping(value, where):
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where} must be a non-empty mapping")
    return value


def _number(value, factor, where):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: {value!r} is not a number")
    return round(value * factor, 10)


def _row(values, columns, factor, where):
    if columns is None:  # {id, ood}
        values = _mapping(values, where)
        bad = [k for k in values if k not in ("id", "ood")]
        if bad:
            raise ConfigError(f"{where}: keys {', '.join(map(repr, bad))}; a row without 'columns' has 'id' and 'ood'")
        return {"id": _number(values.get("id"), factor, f"{where} id"),
                "ood": _number(values.get("ood"), factor, f"{where} ood"), "datasets": {}}
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"{where}: columns must be a list of test set names")
    if not isinstance(values, list) or len(values) != len(columns):
        raise ConfigError(f"{where}: give one value per column ({len(columns)}: {', '.join(columns)}), "
                          f"got {values!r}")
    per_set = {c: _number(v, factor, f"{where} {c}") for c, v in zip(columns, values)}
    return {"id": None, "ood": None, "datasets": {c: v for c, v in per_set.items() if v is not None}}


__all__ = ["PUBLISHED", "blocks", "row_name", "row_means", "note", "from_data"]
