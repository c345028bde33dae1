"""The measurement of ``declip bench``: synthetic batches, the interleaved timed rounds, and the rows and
speed-ups computed from them.

Configurations are measured interleaved, batch by batch (round r runs batch r of every configuration),
after warm-up batches, so that a machine shared with other work slows them alike; images/s is
batch_size / the median batch time (the mean and the best are reported too); the speed-up of an
optimized configuration is the median over batches of (reference time / its time) for the same batch,
measured in the same round (the order alternates from round to round).

The images are random tensors and the masks random: no data set is needed, and speed does not depend
on the pixels (nor on the weights: ``pretrained: none`` unless overridden).
"""
import dataclasses
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Optional

import torch

from ..errors import ConfigError
from .configurations import build_variants
from .memory import MemoryProbe, sync

logger = logging.getLogger(__name__)

MODES = ("inference", "train")
ALL_MODES = MODES + ("components",)
QUICK_SIZES = {"batch_size": 1, "n_images": 2}
#: speed-up keys -> (mode, configuration) compared with the mode's reference
RATIOS = {"inference": ("inference", "optimized"), "inference_cached": ("inference", "optimized, cached"),
          "train_first_epoch": ("train", "optimized, first epoch"), "train_cached": ("train", "optimized, cached")}


# --- what is measured ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    """What one ``declip bench`` measures: the detector config (name or path), the modes, the batch
    size, the measured and the warm-up batches, and the options, checked by :func:`make_plan`."""

    name: Optional[str]
    modes: tuple
    batch_size: int
    n_batches: int
    warmup: int
    quick: bool
    overrides: Optional[dict]
    compile: Optional[bool]  # None: the config's ``compile``


def make_plan(config_name_or_path, batch_size, n_images, modes, quick, overrides, compile, warmup):
    modes = tuple(m.strip() for m in ((modes.split(",") if isinstance(modes, str) else modes) or MODES))
    bad = [m for m in modes if m not in ALL_MODES]
    if bad or not modes:
        raise ConfigError(f"bench modes {bad or modes}: use inference, train and/or components")
    if quick:
        batch_size = min(int(batch_size), QUICK_SIZES["batch_size"])
        n_images = min(int(n_images), QUICK_SIZES["n_images"])
    batch_size, warmup = int(batch_size), max(1, int(warmup))
    if batch_size < 1 or int(n_images) < 1:
        raise ConfigError("bench: batch_size and n_images must be positive")
    return Plan(config_name_or_path, modes, batch_size, max(1, -(-int(n_images) // batch_size)), warmup,
                bool(quick), overrides, compile)


def make_data(n_batches, batch_size, device, folder, detector, config, seed=0):
    """Batches as the loader gives them for ``detector`` at the config's ``resolution`` (frames, or clips
    of ``clip_size``; a ``mask_size`` mask only for a detector that produces one); ``name`` holds real
    (small, random) files for the cache keys."""
    from ..detectors.base import capability

    clip = capability(detector, "input_kind") == "clip"
    frames = (config.clip_size or 8,) if clip else ()
    with_mask = bool(capability(detector, "produces_mask"))
    g = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(n_batches):
        names = []
        for i in range(batch_size):
            path = os.path.join(folder, f"synthetic_{b:04d}_{i:03d}.bin")
            with open(path, "wb") as f:
                f.write(torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=g).numpy().tobytes())
            names.append(path)
        label = torch.randint(0, 2, (batch_size,), generator=g)
        size = config.mask_size
        mask = (torch.rand(batch_size, 1, size, size, generator=g) > 0.7).float() * label.view(-1, 1, 1, 1)
        mask = mask if with_mask else None
        image = torch.randn(batch_size, *frames, 3, config.resolution, config.resolution, generator=g)
        if device.type == "cuda":
            image = image.pin_memory()
            mask = mask.pin_memory() if mask is not None else None
        batches.append({"image": image, "label": label, "mask": mask, "name": names, "video": None})
    return batches


# --- the timed rounds ------------------------------------------------------------------------------
def measure(detector, reference, config, device, plan):
    """Synthetic batches, the configurations, the warm cache filled, warm-up, then the measured rounds.
    Returns the configurations (their times and memory deltas filled), the memory probe and the
    seconds the cache fill took (or None)."""
    n_batches, warmup = plan.n_batches, plan.warmup
    folder = tempfile.mkdtemp(prefix="declip-bench-")
    try:
        data = make_data(n_batches + warmup, plan.batch_size, device, folder, detector, config)
        warm_batches, batches = data[:warmup], data[warmup:]
        variants, warm_cache = build_variants(detector, reference, config, device, plan.modes, plan.compile)
        probe = MemoryProbe(device)
        fill_s = (_fill(warm_cache, data, device) if warm_cache is not None and
                  any(v.host_cache is warm_cache for v in variants) else None)
        for v in variants:
            if v.prepare is not None:
                v.prepare(data)
        for i, b in enumerate(warm_batches):
            for v in variants:
                v.step(b)
            logger.info("bench: warm-up batch %d/%d done", i + 1, warmup)
        sync(device)
        for r, b in enumerate(batches):
            for v in (variants if r % 2 == 0 else variants[::-1]):  # alternate the order: drifts cancel out
                _timed_step(v, b, probe, device)
            logger.info("bench: batch %d/%d: %s", r + 1, n_batches,
                        ", ".join(f"{v.mode}/{v.name} {v.times[-1]:.2f} s" for v in variants))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return variants, probe, fill_s


def _fill(hook, batches, device):
    """The first epoch's backbone passes of the warm cache (timed: the cost of filling it)."""
    from ..engine.evaluator import to_device

    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            hook(to_device(b, device))
    sync(device)
    return time.perf_counter() - t0


def _timed_step(v, batch, probe, device):
    """One measured step of configuration ``v``: wall and CPU time, extra memory, cache hits."""
    before = v.host_cache.cache_stats() if v.host_cache is not None else None
    probe.start()
    t, cpu = time.perf_counter(), time.process_time()
    v.step(batch)
    sync(device)
    v.times.append(time.perf_counter() - t)
    v.cpu_times.append(time.process_time() - cpu)
    v.deltas.append(probe.stop())
    if before is not None:
        after = v.host_cache.cache_stats()
        v.hits += after["hits"] - before["hits"]
        v.misses += after["misses"] - before["misses"]


# --- rows and speed-ups ----------------------------------------------------------------------------
def row(v, batch_size, device):
    """The result row of measured configuration ``v``."""
    med = statistics.median(v.times)
    delta = max(v.deltas) if v.deltas and all(d is not None for d in v.deltas) else None
    state = v.state_bytes()
    cache = v.host_cache.cache_stats() if v.host_cache is not None else None
    cache_bytes = cache["memory_bytes"] if cache else 0
    if device.type == "cpu":
        state += cache_bytes  # on the CPU the cached features share the memory measured
    mib = 2 ** 20
    return {"mode": v.mode, "configuration": v.name, "describe": v.describe, "precision": v.precision,
            "img_s": batch_size / med if med > 0 else float("inf"),
            "img_s_mean": batch_size * len(v.times) / sum(v.times), "img_s_best": batch_size / min(v.times),
            "batch_s": v.times, "batch_cpu_s": v.cpu_times,
            "cpu_s_per_img": statistics.median(v.cpu_times) / batch_size,
            "peak_mem_mb": (state + delta) / mib if delta is not None else None,
            "state_mb": state / mib, "step_mem_mb": delta / mib if delta is not None else None,
            "cache_host_mb": cache_bytes / mib if cache else None,
            "cache_hit_rate": v.hits / (v.hits + v.misses) if cache and v.hits + v.misses else None}


def paired_ratio(ref_times, opt_times):
    """Speed-up of the optimized over the reference configuration: the median over batches of
    reference time / optimized time of the same batch (measured in the same round, so that load from
    other work on the machine affects both sides of each pair alike)."""
    return statistics.median(r / o for r, o in zip(ref_times, opt_times))


def ratios(rows):
    """The speed-ups of :data:`RATIOS` (and their CPU-time and peak-memory ratios) the rows allow."""
    by = {(r["mode"], r["configuration"]): r for r in rows}
    out = {}
    for key, (mode, name) in RATIOS.items():
        ref, opt = by.get((mode, "reference")), by.get((mode, name))
        if ref and opt:
            out[key] = paired_ratio(ref["batch_s"], opt["batch_s"])
            out[key + "_cpu_time"] = paired_ratio(ref["batch_cpu_s"], opt["batch_cpu_s"])
            if ref.get("peak_mem_mb") and opt.get("peak_mem_mb") is not None:
                out[key + "_peak_mem"] = opt["peak_mem_mb"] / ref["peak_mem_mb"]
    return out


# --- the environment -------------------------------------------------------------------------------
def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def versions():
    import open_clip

    from .. import __version__

    return {"torch": torch.__version__, "open_clip": open_clip.__version__, "declip_plugin": __version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None
