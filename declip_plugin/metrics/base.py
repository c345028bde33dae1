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
  ``write_files(folder)`` for files of its own (e.g. a per-video CSV).

Metric classes need not inherit from :class:`Metric`; it only supplies the defaults.
"""


class Metric:
    keys = ()

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
