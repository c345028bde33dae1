"""The metric contract: what the evaluator asks of every metric of the metric registry.

A metric plugin registers a class (``register(name, Cls)`` in ``deepfakebench_register_metrics``)
with:

* ``keys``: the metric names it can report (the leaderboard's ``--metrics`` accepts these);
* ``applies(detector, config)`` (classmethod): whether it runs for this detector and config;
* ``from_config(config)`` (classmethod; default ``cls(config)``): a fresh accumulator;
* ``update_batch(data_dict, pred_dict)``: one batch (``label``, ``name``, ``video``, ``mask``,
  ``mask_valid`` on the batch; ``prob``, ``mask``, ... on the prediction);
* ``compute() -> dict``; ``state()`` / ``from_state(state)`` / ``merge(other)`` (plain python, for
  gathering over DDP ranks);
* optional ``per_sample() -> [(sample_index, {column: value})]`` for per_image.csv, and
  ``write_files(folder)`` for files of its own (e.g. a per-video CSV);
* ``describe``: one :class:`MetricInfo` per reported metric (direction, scale, family, display name,
  where the leaderboards show it, whether a protocol's grids and a robustness sweep's curves show it),
  as torchmetrics' ``higher_is_better`` / ``plot_upper_bound`` live on the metric class. The trainer's
  early stopping, the evaluator's log line, the leaderboards (columns, best marks, default families,
  one table per task), the protocol (its grids, the metric of its heat-maps), the robustness curves and
  the report (its summary's metric per task, its galleries' ranking) read these and nothing else. A key
  left undescribed counts as higher-is-better on 0-1, in no family (never in a default table, a grid or
  a curve), with one warning naming the metric, its plugin and the key.

Keys named ``n`` or ``n_...`` are counts, not metrics. Metric classes need not inherit from
:class:`Metric`; it only supplies the defaults.
"""
import dataclasses
import logging
from typing import Optional, Tuple

#: the metric families, in the order the leaderboards show their columns
FAMILIES = ("detection", "localization", "video")


@dataclasses.dataclass(frozen=True)
class Task:
    """The task of a metric ``family``: one per-task leaderboard, titled ``title``. ``exclusive``: a run with
    one of the family's metrics belongs to this task alone (a video run reports frame AUC too, yet it is no
    image-detection run)."""

    family: str
    title: str
    exclusive: bool = False


#: the tasks, in the order of the per-task leaderboards (and of a protocol's grids); a family of a plugin
#: metric that is none of these is a task of its own, titled by its name, after them
TASKS = (Task("localization", "image localization"), Task("detection", "image detection"),
         Task("video", "video detection", exclusive=True))


@dataclasses.dataclass(frozen=True)
class MetricInfo:
    """What a metric is: ``name`` (its key), ``display`` (its name for people), ``higher_is_better``,
    ``scale`` (the top of its range: 1 for 0-1, 100 for 0-100), ``family`` (one of :data:`FAMILIES`),
    ``needs_both_classes`` (undefined on a test set of real or fake images alone), ``headline`` (the
    family's metric with a column per test set: the task's metric in the report's summary and in a
    protocol's heat-maps, :func:`lead_metric`), ``tables``: the leaderboards that show its ID / OOD
    means besides the headline's, ``"default"`` (the table of every family) and family names (that
    family's task table), ``grid``: a protocol draws its grid (per cell and test set, with ID / OOD means)
    and ``curve``: a robustness sweep draws its degradation curve."""

    name: str
    display: str = ""
    higher_is_better: bool = True
    scale: float = 1.0
    family: Optional[str] = None
    needs_both_classes: bool = False
    headline: bool = False
    tables: Tuple[str, ...] = ()
    grid: bool = False
    curve: bool = False

    @property
    def label(self):
        return self.display or self.name

    def best(self, values):
        """The best of ``values`` by this metric's direction."""
        return max(values) if self.higher_is_better else min(values)

    def format(self, value, precise=False):
        """``value`` as tables show it (0-100 metrics one decimal, 0-1 three; ``precise``: a log line's,
        one more of each); "" for None."""
        if value is None:
            return ""
        digits = (1 if self.scale > 1 else 3) + (1 if precise else 0)
        return f"{value:.{digits}f}"


def is_count(key):
    """Whether ``key`` names a count (``n``, ``n_images``, ...) rather than a metric."""
    return key == "n" or str(key).startswith("n_")


def metric_infos():
    """``{key: MetricInfo}`` of every metric any registered metric class reports, in registry order
    (a class's own order within it); undescribed keys get the defaults, with one warning per metric
    class naming its plugin and the keys (:func:`_warn_undescribed`)."""
    from ..plugins import get_registry

    out, registry = {}, get_registry("metrics")
    for name, cls in registry.items():
        described = {i.name: i for i in getattr(cls, "describe", ())}
        keys = [k for k in getattr(cls, "keys", ()) if not is_count(k)]
        _warn_undescribed(name, registry.source(name), [k for k in keys if k not in described])
        for k in list(described) + keys:
            out.setdefault(k, described.get(k) or MetricInfo(k))
    return out


_warned = set()  # (metric name, source) already warned about in this process


def _warn_undescribed(name, source, keys):
    """One warning line per metric class whose ``keys`` lack a MetricInfo: the defaults may be wrong for
    them (a lower-is-better metric would be marked best at its worst), and its author should know."""
    if not keys or (name, source) in _warned:
        return
    _warned.add((name, source))
    logging.getLogger(__name__).warning(
        "metric %r of %s does not describe %s: taken as higher-is-better on a 0-1 scale, in no leaderboard "
        "family; add a MetricInfo per key to its `describe` (declip_plugin/metrics/base.py)", name, source,
        ", ".join(repr(k) for k in keys))


def info_of(key, infos=None):
    """The :class:`MetricInfo` of ``key`` (defaults for a key no registered metric describes)."""
    infos = metric_infos() if infos is None else infos
    return infos.get(key) or MetricInfo(key)


# ---- roles: which metrics a table, a grid, a curve, a heat-map shows --------------------------------------

def ordered_infos(infos=None):
    """Every :class:`MetricInfo`, families in the order of :data:`FAMILIES` (the leaderboards' columns), the
    registry's order within a family."""
    infos = metric_infos() if infos is None else infos

    def rank(info):
        return FAMILIES.index(info.family) if info.family in FAMILIES else len(FAMILIES)
    return sorted(infos.values(), key=rank)


def tasks(infos=None):
    """The tasks of every family the metrics have: :data:`TASKS`, then the other families by name."""
    infos = metric_infos() if infos is None else infos
    known = {t.family for t in TASKS}
    return list(TASKS) + [Task(f, f) for f in sorted({i.family for i in infos.values() if i.family} - known)]


def in_task(task, keys, infos=None):
    """Whether results with the metric ``keys`` belong to ``task``: they have its family's headline and, unless the
    task is exclusive, no metric of an exclusive task's family."""
    infos = metric_infos() if infos is None else infos
    keys = [k for k in keys if k in infos]
    if not any(infos[k].headline and infos[k].family == task.family for k in keys):
        return False
    exclusive = {t.family for t in tasks(infos) if t.exclusive}
    return task.exclusive or not any(infos[k].family in exclusive for k in keys)


def lead_metric(keys, infos=None):
    """The headline metric of the first task (in :func:`tasks` order) that results with the metric ``keys``
    belong to (:func:`in_task`); None when they belong to none."""
    infos = metric_infos() if infos is None else infos
    for task in tasks(infos):
        if in_task(task, keys, infos):
            return next(k for k in keys if k in infos and infos[k].headline and infos[k].family == task.family)
    return None


def grid_metrics(keys=None, infos=None):
    """The metrics a protocol's grids show (``MetricInfo.grid``) among ``keys`` (default: all), task by task
    (:func:`tasks`), the registry's order within a family."""
    infos = metric_infos() if infos is None else infos
    order = [t.family for t in tasks(infos)]
    shown = [i for i in infos.values() if i.grid and (keys is None or i.name in keys)]
    return [i.name for i in sorted(shown, key=lambda i: order.index(i.family) if i.family in order else len(order))]


def curve_metrics(keys=None, infos=None):
    """The metrics a robustness sweep draws (``MetricInfo.curve``) among ``keys`` (default: all), in the
    leaderboards' column order (:func:`ordered_infos`)."""
    return [i.name for i in ordered_infos(infos) if i.curve and (keys is None or i.name in keys)]


def per_image_headline(columns, infos=None):
    """The first of ``columns`` (per_image.csv's) that is a family's headline metric: what the report's
    galleries rank images by; None when there is none."""
    infos = metric_infos() if infos is None else infos
    return next((c for c in columns if c in infos and infos[c].headline), None)


class Metric:
    keys = ()
    describe = ()

    @classmethod
    def applies(cls, detector, config):
        return True

    @classmethod
    def from_config(cls, config):
        return cls(config)

    def per_sample(self):
        return []

    def write_files(self, folder):
        return []


def create_metrics(detector, config):
    """``{name: accumulator}`` of every registered metric that applies to ``detector``."""
    from ..plugins import get_registry

    out = {}
    for name, cls in get_registry("metrics").items():
        applies = getattr(cls, "applies", None)
        if applies is not None and not applies(detector, config):
            continue
        make = getattr(cls, "from_config", None)
        out[name] = make(config) if make is not None else cls(config)
    return out


def known_metric_keys():
    """Every metric name any registered metric can report, sorted."""
    from ..plugins import get_registry

    return sorted({k for _, cls in get_registry("metrics").items() for k in getattr(cls, "keys", ())})
