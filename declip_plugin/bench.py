"""``declip bench``: images/s and peak memory of the reference and the optimized configuration.

Both configurations run the same detector config, side by side in one process, on synthetic
images (random tensors, random masks), so that no data set is needed:

* **reference** - how the official DeCLIP code runs: fp32, the *whole* CLIP image tower (every
  block, then ln_post / proj as ``encode_image`` does; the tapped block's output taken with a
  forward hook), channels-first (NCHW) decoder fed in the official layout, no feature cache.
  Inference under ``torch.no_grad``; a training step computes the tower inside the training
  forward with frozen (``requires_grad=False``) parameters, as the official trainer does, then
  decoder forward / backward / optimizer step.
* **optimized** - how our engine runs: the tower cut after the tapped block, bf16 autocast on
  CUDA (fp32 elsewhere: ``engine.runtime.autocast``), channels_last decoder when the config asks
  for it (``channels_last``), ``torch.inference_mode`` for inference, no autograd through the
  backbone, optionally ``torch.compile`` of the decoder, and the feature cache
  (``engine.feature_cache.FeatureCache``, host-memory tier) as the engine's batch hook:
  - ``train, first epoch``: every image is a cache miss (backbone + store + decoder step);
  - ``train, cached``: a warm cache, i.e. the epochs after the first: decoder-only steps on the
    cached features (the cache lookups and the host -> device copy are timed too);
  - ``inference, cached``: validation passes after the first.

Configurations are measured interleaved, batch by batch (round r runs batch r of every
configuration), after warm-up batches, so that a machine shared with other work slows them alike;
images/s is batch_size / the median batch time (the mean and the best are reported too); the
speed-up of an optimized configuration is the median over batches of (reference time / its time)
for the same batch, measured in the same round (the order alternates from round to round).

Peak memory of a configuration = its resident state (its modules' parameters and buffers,
gradients and optimizer state, and on the CPU the cached features, counted exactly) + the most
memory one of its steps allocated on top: on CUDA ``torch.cuda.max_memory_allocated`` -
``memory_allocated`` at the step's start (peak stats reset per step); on the CPU the process's
peak RSS during the step (``VmHWM``, reset per step through ``/proc/self/clear_refs``) - its RSS
at the step's start, after ``gc.collect()`` and glibc ``malloc_trim(0)``. On CUDA the cached
features live in host memory and are reported apart.

The weights are random (``pretrained: none`` unless overridden): speed does not depend on them.
"""
import ctypes
import dataclasses
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Optional

import torch
from torch import nn

from .errors import ConfigError

logger = logging.getLogger(__name__)

MODES = ("inference", "train")
ALL_MODES = MODES + ("components",)
QUICK_DETECTOR = "declip_quick"  # the bundled config `--quick` benchmarks when no detector is named
QUICK_SIZES = {"batch_size": 1, "n_images": 2}
RATIOS = {"inference": ("inference", "optimized"), "inference_cached": ("inference", "optimized, cached"),
          "train_first_epoch": ("train", "optimized, first epoch"), "train_cached": ("train", "optimized, cached")}


# --- memory probes --------------------------------------------------------------------------------
def _proc_status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


_LIBC = None


def _malloc_trim():
    global _LIBC
    try:
        if _LIBC is None:
            _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


class MemoryProbe:
    """Extra memory of one step: CUDA allocator peak, or peak RSS (Linux) on the CPU."""

    def __init__(self, device):
        self.device = device
        self.cuda = device.type == "cuda"
        self.available = self.cuda or (_proc_status_kb("VmHWM") is not None and _reset_hwm())
        if self.cuda:
            self.method = ("torch.cuda.max_memory_allocated - memory_allocated at the step start, peak stats reset "
                           "per step")
        elif self.available:
            self.method = ("peak RSS of the step (VmHWM reset through /proc/self/clear_refs) - RSS at the step start "
                           "after gc.collect() and malloc_trim(0)")
        else:
            self.method = "unavailable (no /proc/self/clear_refs): peak memory not measured"
        self.base = 0

    def start(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self.available:
            gc.collect()
            _malloc_trim()
            self.base = _proc_status_kb("VmRSS") * 1024
            _reset_hwm()

    def stop(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        if self.available:
            return max(0, _proc_status_kb("VmHWM") * 1024 - self.base)
        return None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _module_bytes(*modules):
    seen, total = set(), 0
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def _train_state_bytes(params, optimizer):
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))
    return grads + state


# --- synthetic data --------------------------------------------------------------------------------
def _make_data(n_batches, batch_size, resolution, device, folder, detector, config, seed=0):
    """Batches as the loader gives them for ``detector`` (frames or clips of ``clip_size``; a mask only
    for a detector that produces one); ``name`` holds real (small, random) files for the cache keys."""
    from .detectors.base import capability

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
        mask = (torch.rand(batch_size, 1, 256, 256, generator=g) > 0.7).float() * label.view(-1, 1, 1, 1)
        mask = mask if with_mask else None
        image = torch.randn(batch_size, *frames, 3, resolution, resolution, generator=g)
        if device.type == "cuda":
            image = image.pin_memory()
            mask = mask.pin_memory() if mask is not None else None
        batches.append({"image": image, "label": label, "mask": mask, "name": names, "video": None})
    return batches


# --- configurations --------------------------------------------------------------------------------
class Config:
    """One measured configuration: ``step(batch)`` runs one batch; ``state_bytes()`` its resident state."""

    def __init__(self, mode, name, describe, precision, step, state_bytes, host_cache=None):
        self.mode, self.name, self.describe, self.precision = mode, name, describe, precision
        self.step, self.state_bytes, self.host_cache = step, state_bytes, host_cache
        self.prepare = None  # optional: called once with every batch before the warm-up (untimed)
        self.times, self.cpu_times, self.deltas = [], [], []
        self.hits = self.misses = 0  # feature-cache lookups of the measured steps


class _Setup:
    """What every configuration of one measurement shares: the detector (and its reference), the
    config, the device, the engine's precision there, and the feature caches (when the detector
    declares a frozen ``feature_tap``): ``warm`` filled before the measured batches, ``cold`` empty."""

    def __init__(self, detector, reference, config, device, compile_model):
        from .config.run import FeatureCacheKeys
        from .detectors.base import capability
        from .engine import runtime
        from .engine.feature_cache import FeatureCache

        self.detector, self.reference, self.config, self.device = detector, reference, config, device
        self.precision = runtime.decide_precision(config.precision, device)  # what the engine runs here
        self.opt_precision = f"{self.precision.name} autocast" if self.precision.dtype is not None else "fp32"
        self.channels_last = model_channels_last(detector)
        self.opt_desc = (f"engine path, {self.opt_precision}, {'channels_last' if self.channels_last else 'NCHW'}, "
                         f"{'compiled, ' if compile_model else ''}")
        tap = capability(detector, "feature_tap")
        cache_cfg = config.replace(feature_cache=FeatureCacheKeys(enabled=True, memory=True, dir=None, max_gb=1e3))
        self.warm = FeatureCache(detector, cache_cfg) if tap is not None else None
        self.cold = FeatureCache(detector, cache_cfg) if tap is not None else None

    def resident(self):
        return _module_bytes(self.detector)


def _inference_configs(s):
    """The engine's inference step (engine.evaluator.inference_step), with and without the warm cache;
    the reference under ``torch.no_grad``."""
    from .engine.evaluator import inference_step, to_device

    @torch.inference_mode()
    def opt_infer(batch, hook=None):
        s.detector.eval()
        return inference_step(s.detector, batch, s.device, s.precision, hook)[1]["prob"].float().cpu()

    configs = []
    if s.reference is not None:
        @torch.no_grad()
        def ref_infer(batch):
            s.reference.eval()
            return s.reference(to_device(batch, s.device), inference=True)["prob"].float().cpu()

        configs.append(Config("inference", "reference", s.reference.describe + ", no_grad", "fp32", ref_infer,
                              lambda: _module_bytes(s.reference)))
    configs.append(Config("inference", "optimized", s.opt_desc + "inference_mode", s.opt_precision, opt_infer,
                          s.resident))
    if s.warm is not None:
        configs.append(Config("inference", "optimized, cached", s.opt_desc + "inference_mode, warm feature cache",
                              s.opt_precision, lambda b: opt_infer(b, s.warm), s.resident, host_cache=s.warm))
    return configs


def _component_configs(s):
    """The reference's parts on their own, when the detector's reference offers them."""
    parts = getattr(s.reference, "components", None)
    if parts is None:
        raise ConfigError(f"bench mode components: detector {s.config.model_name!r} offers no reference "
                          f"components; use inference and/or train")
    configs = []
    for c in parts(s.detector, s.config, s.device, s.precision, s.opt_precision, s.channels_last):
        cfg = Config("components", c["name"], c["describe"], c["precision"], c["step"],
                     lambda mods=c["modules"]: _module_bytes(*mods))
        cfg.prepare = c.get("prepare")
        configs.append(cfg)
    return configs


def _reference_train_config(s):
    """The reference's training step: the frozen tower inside the autograd forward, fp32, the detector's loss."""
    from .engine.evaluator import to_device
    from .optim import build_optimizer

    ref_params = [p for p in s.reference.parameters() if p.requires_grad]
    ref_opt = build_optimizer(ref_params, s.config)

    def ref_train(batch):
        s.reference.train()
        batch = to_device(batch, s.device)
        loss = s.detector.get_losses(batch, s.reference(batch))["overall"]  # the detector's loss, fp32
        ref_opt.zero_grad(set_to_none=True)
        loss.backward()
        ref_opt.step()
        return loss.item()

    return Config("train", "reference", s.reference.describe + ", frozen tower inside the autograd forward", "fp32",
                  ref_train, lambda: _module_bytes(s.reference) + _train_state_bytes(ref_params, ref_opt))


def _train_configs(s):
    """The engine's training step (engine.trainer.train_step): every step through the whole model, or,
    with a feature tap, the first epoch (cache misses stored) and the cached epochs."""
    from .engine.trainer import train_step
    from .optim import build_optimizer

    params = [p for p in s.detector.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"bench mode train: detector {s.config.model_name!r} has no trainable parameters")
    opt = build_optimizer(params, s.config)
    scaler = s.precision.make_scaler()  # fp16: the trainer's gradient scaler

    def opt_train(batch, hook=None):
        s.detector.train()
        _, losses, _ = train_step(s.detector, s.detector, batch, s.device, s.precision, opt, params, scaler, hook)
        return losses["overall"].item()  # inf/NaN steps skipped, as in the trainer

    configs = [_reference_train_config(s)] if s.reference is not None else []
    state = lambda: s.resident() + _train_state_bytes(params, opt)  # noqa: E731
    if s.cold is not None:
        configs.append(Config("train", "optimized, first epoch", s.opt_desc + "frozen tap under no_grad, cache "
                              "misses stored", s.opt_precision, lambda b: opt_train(b, s.cold), state,
                              host_cache=s.cold))
        configs.append(Config("train", "optimized, cached", s.opt_desc + "warm feature cache: head-only steps",
                              s.opt_precision, lambda b: opt_train(b, s.warm), state, host_cache=s.warm))
    else:
        configs.append(Config("train", "optimized", s.opt_desc + "every step through the whole model",
                              s.opt_precision, opt_train, state))
    return configs


def _build_configs(detector, reference, config, device, modes, compile_model):
    """The measured configurations, through the detector contract only: the engine's steps
    (``forward`` / ``get_losses``, with the feature cache when the detector declares a frozen
    ``feature_tap``) and, when the detector offers one (``bench_reference()``), the reference."""
    s = _Setup(detector, reference, config, device, compile_model)
    configs = []
    if "inference" in modes:
        configs += _inference_configs(s)
    if "components" in modes:
        configs += _component_configs(s)
    if "train" in modes:
        configs += _train_configs(s)
    if compile_model:  # after the copies above (reference and components run uncompiled)
        detector.prepare_fast_paths(device, compile=True)
    return configs, s.warm


def model_channels_last(module):
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return bool(convs) and convs[-1].weight.is_contiguous(memory_format=torch.channels_last)


def _fill(hook, batches, device):
    """The first epoch's backbone passes of the warm cache (timed: the cost of filling it)."""
    from .engine.evaluator import to_device

    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            hook(to_device(b, device))
    _sync(device)
    return time.perf_counter() - t0


# --- the run --------------------------------------------------------------------------------------
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

    from . import __version__

    return {"torch": torch.__version__, "open_clip": open_clip.__version__, "declip_plugin": __version__,
            "python": platform.python_version(),
            "cuda": torch.version.cuda if torch.cuda.is_available() else None}


def load_bench_config(config_name_or_path=None, quick=False, overrides=None):
    """The detector config of the benchmark: the run config (train defaults <- detector YAML), with
    random weights (``pretrained: none``: speed does not depend on them), then ``overrides``.
    Without a detector: ``declip`` (ViT-L/14 layer20 + conv-20), or the tiny ``declip_quick`` with
    ``quick``."""
    from .config import load_run_config, merge

    name = config_name_or_path or (QUICK_DETECTOR if quick else "declip")
    return load_run_config(name, "train", merge({"pretrained": "none"}, overrides or {}))


def _prepare(config, device):
    """The detector as `declip train` / `declip test` set it up, its reference (or None), the reference's
    max |difference| from ours (or None) and the resolution."""
    from .engine.run import prepare_detector

    torch.manual_seed(config.manualSeed)
    t0 = time.perf_counter()
    detector = prepare_detector(config, device)
    make_reference = getattr(detector, "bench_reference", None)
    reference = make_reference() if make_reference is not None else None
    if reference is not None:
        reference = reference.to(device)
    build_s = time.perf_counter() - t0
    res = config.resolution
    check = reference.check(detector, device, res) if hasattr(reference, "check") else None
    logger.info("bench: built %s in %.1f s%s", config.model_name, build_s,
                f"; reference vs ours: max |diff| {check:.2e}" if check is not None else "; no reference configuration")
    return detector, reference, check, res


def _measure(detector, reference, config, device, plan, res):
    """Synthetic batches, the configurations, the warm cache filled, warm-up, then the measured rounds.
    Returns the configurations (their times and memory deltas filled), the memory probe and the
    seconds the cache fill took (or None)."""
    n_batches, warmup = plan.n_batches, plan.warmup
    folder = tempfile.mkdtemp(prefix="declip-bench-")
    try:
        data = _make_data(n_batches + warmup, plan.batch_size, res, device, folder, detector, config)
        warm_batches, batches = data[:warmup], data[warmup:]
        configs, warm_cache = _build_configs(detector, reference, config, device, plan.modes, plan.compile)
        probe = MemoryProbe(device)
        fill_s = (_fill(warm_cache, data, device) if warm_cache is not None and
                  any(c.host_cache is warm_cache for c in configs) else None)
        for c in configs:
            if c.prepare is not None:
                c.prepare(data)
        for i, b in enumerate(warm_batches):
            for c in configs:
                c.step(b)
            logger.info("bench: warm-up batch %d/%d done", i + 1, warmup)
        _sync(device)
        for r, b in enumerate(batches):
            for c in (configs if r % 2 == 0 else configs[::-1]):  # alternate the order: drifts cancel out
                _timed_step(c, b, probe, device)
            logger.info("bench: batch %d/%d: %s", r + 1, n_batches,
                        ", ".join(f"{c.mode}/{c.name} {c.times[-1]:.2f} s" for c in configs))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return configs, probe, fill_s


def _timed_step(c, batch, probe, device):
    """One measured step of configuration ``c``: wall and CPU time, extra memory, cache hits."""
    before = c.host_cache.cache_stats() if c.host_cache is not None else None
    probe.start()
    t, cpu = time.perf_counter(), time.process_time()
    c.step(batch)
    _sync(device)
    c.times.append(time.perf_counter() - t)
    c.cpu_times.append(time.process_time() - cpu)
    c.deltas.append(probe.stop())
    if before is not None:
        after = c.host_cache.cache_stats()
        c.hits += after["hits"] - before["hits"]
        c.misses += after["misses"] - before["misses"]


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


def run_bench(config_name_or_path=None, batch_size=64, n_images=256, device=None, modes=MODES, quick=False,
              overrides=None, compile=None, warmup=1):
    """Measure the reference and the optimized configuration side by side; returns a dict with
    ``results`` (one row per mode x configuration), ``ratios`` (speed-ups over the reference, see
    :func:`paired_ratio`; ``*_peak_mem``: peak memory optimized / reference),
    the environment and a printable ``table``."""
    from .detectors.base import capability

    plan = make_plan(config_name_or_path, batch_size, n_images, modes, quick, overrides, compile, warmup)
    config = load_bench_config(config_name_or_path, quick, overrides)
    plan = dataclasses.replace(plan, compile=config.compile if compile is None else bool(compile))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("bench: CUDA requested but not available")

    load_start = _loadavg()
    detector, reference, check, res = _prepare(config, device)
    configs, probe, fill_s = _measure(detector, reference, config, device, plan, res)

    bs, n_batches = plan.batch_size, plan.n_batches
    rows = [_row(c, bs, device) for c in configs]
    result = {
        "device": device_name(device), "device_type": device.type, **versions(),
        "config": str(config.config_path or config_name_or_path), "quick": plan.quick,
        "detector": capability(detector, "describe"), "model_name": config.model_name,
        "resolution": res, "pretrained": str(config.pretrained),
        "batch_size": bs, "n_images": n_batches * bs, "measured_batches": n_batches,
        "warmup_batches": plan.warmup, "compile": plan.compile,
        "channels_last": model_channels_last(detector),
        "precision": {"reference": "fp32", "optimized": rows[-1]["precision"] if rows else None},
        "reference_check_max_abs_diff": check, "memory_method": probe.method,
        "cache_fill_img_s": (n_batches + plan.warmup) * bs / fill_s if fill_s else None,
        "results": rows, "ratios": _ratios(rows), "load_avg_1min": [load_start, _loadavg()],
    }
    result["command"] = _command(plan, device)
    result["table"] = format_table(result)
    logger.debug("bench results\n%s", result["table"])
    return result


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _row(c, batch_size, device):
    med = statistics.median(c.times)
    delta = max(c.deltas) if c.deltas and all(d is not None for d in c.deltas) else None
    state = c.state_bytes()
    cache = c.host_cache.cache_stats() if c.host_cache is not None else None
    cache_bytes = cache["memory_bytes"] if cache else 0
    if device.type == "cpu":
        state += cache_bytes  # on the CPU the cached features share the memory measured
    mib = 2 ** 20
    return {"mode": c.mode, "configuration": c.name, "describe": c.describe, "precision": c.precision,
            "img_s": batch_size / med if med > 0 else float("inf"),
            "img_s_mean": batch_size * len(c.times) / sum(c.times), "img_s_best": batch_size / min(c.times),
            "batch_s": c.times, "batch_cpu_s": c.cpu_times,
            "cpu_s_per_img": statistics.median(c.cpu_times) / batch_size,
            "peak_mem_mb": (state + delta) / mib if delta is not None else None,
            "state_mb": state / mib, "step_mem_mb": delta / mib if delta is not None else None,
            "cache_host_mb": cache_bytes / mib if cache else None,
            "cache_hit_rate": c.hits / (c.hits + c.misses) if cache and c.hits + c.misses else None}


def paired_ratio(ref_times, opt_times):
    """Speed-up of the optimized over the reference configuration: the median over batches of
    reference time / optimized time of the same batch (measured in the same round, so that load from
    other work on the machine affects both sides of each pair alike)."""
    return statistics.median(r / o for r, o in zip(ref_times, opt_times))


def _ratios(rows):
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


def _fmt_ratio(v):
    return f"{v:6.2f}" if v is not None else f"{'-':>6}"


def format_table(result):
    r = result
    what = ", ".join(f"{k} {v}" for k, v in (r.get("detector") or {}).items()
                     if k not in ("model_name", "pretrained") and isinstance(v, (str, int, float)))
    head = (f"declip bench: {r['model_name']}{' (' + what + ')' if what else ''} at {r['resolution']}px, "
            f"batch {r['batch_size']}, {r['measured_batches']} measured batch(es) after {r['warmup_batches']} "
            f"warm-up, synthetic images\n"
            f"device: {r['device']} | torch {r['torch']}, open_clip {r['open_clip']}, declip_plugin "
            f"{r['declip_plugin']}, python {r['python']}\n"
            + (f"reference = ours (max |diff| {r['reference_check_max_abs_diff']:.1e}); "
               if r['reference_check_max_abs_diff'] is not None else "no reference configuration; ")
            + f"load average (1 min) at start / end: {r['load_avg_1min'][0]} / {r['load_avg_1min'][1]}\n")
    cpu = r.get("device_type") == "cpu"
    lines = [f"{'mode':<10} {'configuration':<23} {'precision':<14} {'img/s':>9} {'x ref':>6} {'peak MB':>9} "
             f"{'(state + step)':>18}" + (f" {'CPU s/img':>10} {'x ref':>6}" if cpu else "")]
    ref = {x["mode"]: x for x in r["results"] if x["configuration"] == "reference"}
    for x in r["results"]:
        ratio = paired_ratio(ref[x["mode"]]["batch_s"], x["batch_s"]) if x["mode"] in ref else None
        peak = f"{x['peak_mem_mb']:9.0f}" if x["peak_mem_mb"] is not None else f"{'n/a':>9}"
        split = (f"({x['state_mb']:.0f} + {x['step_mem_mb']:.0f})" if x["step_mem_mb"] is not None else "")
        line = (f"{x['mode']:<10} {x['configuration']:<23} {x['precision']:<14} {x['img_s']:9.2f} "
                f"{_fmt_ratio(ratio)} {peak} {split:>18}")
        if cpu:
            cratio = paired_ratio(ref[x["mode"]]["batch_cpu_s"], x["batch_cpu_s"]) if x["mode"] in ref else None
            line += f" {x['cpu_s_per_img']:10.2f} {_fmt_ratio(cratio)}"
        lines.append(line)
    notes = ["configurations:"]
    for x in r["results"]:
        notes.append(f"  {x['mode']}/{x['configuration']}: {x['describe']}"
                     + (f"; host cache {x['cache_host_mb']:.1f} MB" if x["cache_host_mb"] is not None else ""))
    if r.get("cache_fill_img_s"):
        notes.append(f"cache fill (first-epoch backbone passes, optimized path): {r['cache_fill_img_s']:.2f} img/s")
    notes.append("img/s = batch / median batch time; x ref = median over batches of (reference batch time / this "
                 "configuration's time for the same batch in the same round)")
    if cpu:
        notes.append("CPU s/img = process CPU time (all threads) per image, median batch; its x ref (paired like the "
                     "wall-clock one) is the work ratio, less sensitive than wall-clock time to other load on the "
                     "machine")
    notes.append(f"peak memory: {r['memory_method']}")
    notes.append("speed-ups over the reference (wall clock): " + ", ".join(
        f"{k} {v:.2f}x" for k, v in r["ratios"].items() if not k.endswith(("_peak_mem", "_cpu_time"))))
    notes.append(f"command: {r['command']}")
    return head + "\n".join(lines) + "\n" + "\n".join(notes)


if __name__ == "__main__":
    raise SystemExit("error: declip_plugin.bench is the measuring module; run `declip bench ...` "
                     "(or `python -m declip_plugin bench ...`)")
