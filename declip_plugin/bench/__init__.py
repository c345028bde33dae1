"""``declip bench``: images/s and peak memory of a detector's reference and optimized configurations.

Every configuration runs the same detector config, side by side in one process, on synthetic batches
(no data set needed), through the detector contract alone: the reference is the detector's own
``bench_reference()`` (how its official code runs it; DeCLIP's in detectors/declip/reference.py), the
optimized ones the engine's steps. With no detector named, the bundled config a registered detector
declares in ``bench_configs`` is measured (DeCLIP's, ``--quick``: its tiny one).

The package, by concern: :mod:`.memory` (memory probes), :mod:`.configurations` (what is measured),
:mod:`.measure` (synthetic data, the timed rounds, rows and speed-ups), :mod:`.table` (what is printed);
here the run from a config to its result.
"""
import dataclasses
import json
import logging
import time

import torch

from ..errors import ConfigError
from .configurations import model_channels_last
from .measure import (ALL_MODES, MODES, QUICK_SIZES, RATIOS, Plan, device_name, loadavg, make_plan, measure,
                      paired_ratio, ratios, row, versions)
from .memory import MemoryProbe
from .table import format_table

logger = logging.getLogger(__name__)

__all__ = ["run_bench", "load_bench_config", "default_config_name", "format_table", "paired_ratio", "device_name",
           "versions", "make_plan", "Plan", "MemoryProbe", "MODES", "ALL_MODES", "QUICK_SIZES", "RATIOS"]


def default_config_name(quick=False):
    """The detector config ``declip bench`` measures when none is named: the one a registered detector
    class declares in ``bench_configs`` (``{"default": name, "quick": name}``; DeCLIP's); when several
    declare one, the built-in plugin's."""
    from ..plugins import BUILTIN_PLUGIN_NAME, get_registry

    registry = get_registry("detectors")
    offers = {}
    for name, cls in registry.items():
        if getattr(cls, "bench_configs", None):
            offers.setdefault(cls, name)
    names = list(offers.values())
    if len(names) > 1:
        names = [n for n in names if registry.owner(n) == BUILTIN_PLUGIN_NAME] or names
    if len(names) != 1:
        raise ConfigError(f"declip bench: name the detector config to measure (detectors that declare bench "
                          f"configs: {', '.join(sorted(names)) or 'none'})")
    return registry.get(names[0]).bench_configs["quick" if quick else "default"]


def load_bench_config(config_name_or_path=None, quick=False, overrides=None):
    """The detector config of the benchmark (typed): the run config (train defaults <- detector YAML),
    with random weights (``pretrained: none``: speed does not depend on them), then ``overrides``.
    Without a detector: :func:`default_config_name`."""
    from ..config import load_run_config, merge

    name = config_name_or_path or default_config_name(quick)
    return load_run_config(name, "train", merge({"pretrained": "none"}, overrides or {}))


def _prepare(config, device):
    """The detector as `declip train` / `declip test` set it up, its reference (or None) and the reference's
    max |difference| from ours (or None)."""
    from ..engine.run import prepare_detector

    torch.manual_seed(config.manualSeed)
    t0 = time.perf_counter()
    detector = prepare_detector(config, device)
    make_reference = getattr(detector, "bench_reference", None)
    reference = make_reference() if make_reference is not None else None
    if reference is not None:
        reference = reference.to(device)
    build_s = time.perf_counter() - t0
    check = reference.check(detector, device, config.resolution) if hasattr(reference, "check") else None
    logger.info("bench: built %s in %.1f s%s", config.model_name, build_s,
                f"; reference vs ours: max |diff| {check:.2e}" if check is not None else "; no reference configuration")
    return detector, reference, check


def run_bench(config_name_or_path=None, batch_size=64, n_images=256, device=None, modes=MODES, quick=False,
              overrides=None, compile=None, warmup=1):
    """Measure the reference and the optimized configuration side by side; returns a dict with
    ``results`` (one row per mode x configuration), ``ratios`` (speed-ups over the reference, see
    :func:`paired_ratio`; ``*_peak_mem``: peak memory optimized / reference),
    the environment and a printable ``table``."""
    from ..detectors.base import capability

    plan = make_plan(config_name_or_path, batch_size, n_images, modes, quick, overrides, compile, warmup)
    config = load_bench_config(config_name_or_path, quick, overrides)
    plan = dataclasses.replace(plan, compile=config.compile if compile is None else bool(compile))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench: CUDA requested but not available")

    load_start = loadavg()
    detector, reference, check = _prepare(config, device)
    variants, probe, fill_s = measure(detector, reference, config, device, plan)

    bs, n_batches = plan.batch_size, plan.n_batches
    rows = [row(v, bs, device) for v in variants]
    result = {
        "device": device_name(device), "device_type": device.type, **versions(),
        "config": str(config.config_path or config_name_or_path), "quick": plan.quick,
        "detector": capability(detector, "describe"), "model_name": config.model_name,
        "resolution": config.resolution, "pretrained": str(config.pretrained),
        "batch_size": bs, "n_images": n_batches * bs, "measured_batches": n_batches,
        "warmup_batches": plan.warmup, "compile": plan.compile,
        "channels_last": model_channels_last(detector),
        "precision": {"reference": "fp32", "optimized": rows[-1]["precision"] if rows else None},
        "reference_check_max_abs_diff": check, "memory_method": probe.method,
        "cache_fill_img_s": (n_batches + plan.warmup) * bs / fill_s if fill_s else None,
        "results": rows, "ratios": ratios(rows), "load_avg_1min": [load_start, loadavg()],
    }
    result["command"] = _command(plan, device)
    result["table"] = format_table(result)
    logger.debug("bench results\n%s", result["table"])
    return result


def _command(plan, device):
    parts = ["declip bench", str(plan.name), f"--batch_size {plan.batch_size}",
             f"--n_images {plan.n_batches * plan.batch_size}", f"--device {device.type}",
             f"--modes {','.join(plan.modes)}", f"--warmup {plan.warmup}"]
    if plan.quick:
        parts.append("--quick")
    if plan.compile:
        parts.append("--compile")
    for k, v in _flatten(plan.overrides or {}):
        parts.append(f"--opt {k}={json.dumps(v) if not isinstance(v, str) else v}")
    return " ".join(parts)


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
