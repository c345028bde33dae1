"""The configurations ``declip bench`` measures, built through the detector contract alone.

* **reference** - how the detector's official code runs it, when the detector offers one
  (``bench_reference()``, detectors/base.py; DeCLIP's: detectors/declip/reference.py): inference under
  ``torch.no_grad``; a training step computes the frozen parts inside the training forward, fp32, then
  the detector's loss, backward and an optimizer step.
* **optimized** - how our engine runs it: the engine's inference and training steps
  (``engine.evaluator.inference_step``, ``engine.trainer.train_step``) at the engine's precision on the
  device (``engine.runtime.decide_precision``), channels_last and ``torch.compile`` where the config and
  the detector's ``prepare_fast_paths`` ask for them, and, when the detector declares a frozen
  ``feature_tap``, the feature cache (``engine.feature_cache.FeatureCache``, host-memory tier) as the
  engine's batch hook:
  - ``train, first epoch``: every image is a cache miss (backbone + store + head step);
  - ``train, cached``: a warm cache, i.e. the epochs after the first: head-only steps on the cached
    features (the cache lookups and the host -> device copy are timed too);
  - ``inference, cached``: validation passes after the first.
* **components** - the reference's parts on their own, when the reference offers them (``components``).
"""
import torch
from torch import nn

from ..config.run import FeatureCacheKeys
from ..errors import ConfigError
from .memory import module_bytes, train_state_bytes

#: the host-memory cache of the cached configurations: large enough to hold every synthetic batch
BENCH_CACHE = FeatureCacheKeys(enabled=True, memory=True, dir=None, max_gb=1e3)


class Variant:
    """One measured configuration: ``step(batch)`` runs one batch; ``state_bytes()`` its resident state."""

    def __init__(self, mode, name, describe, precision, step, state_bytes, host_cache=None):
        self.mode, self.name, self.describe, self.precision = mode, name, describe, precision
        self.step, self.state_bytes, self.host_cache = step, state_bytes, host_cache
        self.prepare = None  # optional: called once with every batch before the warm-up (untimed)
        self.times, self.cpu_times, self.deltas = [], [], []
        self.hits = self.misses = 0  # feature-cache lookups of the measured steps


class Setup:
    """What every configuration of one measurement shares: the detector (and its reference), the
    run config, the device, the engine's precision there, and the feature caches (when the detector
    declares a frozen ``feature_tap``): ``warm`` filled before the measured batches, ``cold`` empty."""

    def __init__(self, detector, reference, config, device, compile_model):
        from ..detectors.base import capability
        from ..engine import runtime
        from ..engine.feature_cache import FeatureCache

        self.detector, self.reference, self.config, self.device = detector, reference, config, device
        self.precision = runtime.decide_precision(config.precision, device)  # what the engine runs here
        self.opt_precision = f"{self.precision.name} autocast" if self.precision.dtype is not None else "fp32"
        self.channels_last = model_channels_last(detector)
        self.opt_desc = (f"engine path, {self.opt_precision}, {'channels_last' if self.channels_last else 'NCHW'}, "
                         f"{'compiled, ' if compile_model else ''}")
        tap = capability(detector, "feature_tap")
        cache_cfg = config.replace(feature_cache=BENCH_CACHE)
        self.warm = FeatureCache(detector, cache_cfg) if tap is not None else None
        self.cold = FeatureCache(detector, cache_cfg) if tap is not None else None

    def resident(self):
        return module_bytes(self.detector)


def _inference_variants(s):
    """The engine's inference step (engine.evaluator.inference_step), with and without the warm cache;
    the reference under ``torch.no_grad``."""
    from ..engine.evaluator import inference_step, to_device

    @torch.inference_mode()
    def opt_infer(batch, hook=None):
        s.detector.eval()
        return inference_step(s.detector, batch, s.device, s.precision, hook)[1]["prob"].float().cpu()

    variants = []
    if s.reference is not None:
        @torch.no_grad()
        def ref_infer(batch):
            s.reference.eval()
            return s.reference(to_device(batch, s.device), inference=True)["prob"].float().cpu()

        variants.append(Variant("inference", "reference", s.reference.describe + ", no_grad", "fp32", ref_infer,
                                lambda: module_bytes(s.reference)))
    variants.append(Variant("inference", "optimized", s.opt_desc + "inference_mode", s.opt_precision, opt_infer,
                            s.resident))
    if s.warm is not None:
        variants.append(Variant("inference", "optimized, cached", s.opt_desc + "inference_mode, warm feature cache",
                                s.opt_precision, lambda b: opt_infer(b, s.warm), s.resident, host_cache=s.warm))
    return variants


def _component_variants(s):
    """The reference's parts on their own, when the detector's reference offers them."""
    parts = getattr(s.reference, "components", None)
    if parts is None:
        raise ConfigError(f"bench mode components: detector {s.config.model_name!r} offers no reference "
                          f"components; use inference and/or train")
    variants = []
    for c in parts(s.detector, s.config, s.device, s.precision, s.opt_precision, s.channels_last):
        v = Variant("components", c["name"], c["describe"], c["precision"], c["step"],
                    lambda mods=c["modules"]: module_bytes(*mods))
        v.prepare = c.get("prepare")
        variants.append(v)
    return variants


def _reference_train_variant(s):
    """The reference's training step: the frozen tower inside the autograd forward, fp32, the detector's loss."""
    from ..engine.evaluator import to_device
    from ..optim import build_optimizer

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

    return Variant("train", "reference", s.reference.describe + ", frozen tower inside the autograd forward", "fp32",
                   ref_train, lambda: module_bytes(s.reference) + train_state_bytes(ref_params, ref_opt))


def _train_variants(s):
    """The engine's training step (engine.trainer.train_step): every step through the whole model, or,
    with a feature tap, the first epoch (cache misses stored) and the cached epochs."""
    from ..engine.trainer import train_step
    from ..optim import build_optimizer

    params = [p for p in s.detector.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"bench mode train: detector {s.config.model_name!r} has no trainable parameters")
    opt = build_optimizer(params, s.config)
    scaler = s.precision.make_scaler()  # fp16: the trainer's gradient scaler

    def opt_train(batch, hook=None):
        s.detector.train()
        _, losses, _ = train_step(s.detector, s.detector, batch, s.device, s.precision, opt, params, scaler, hook)
        return losses["overall"].item()  # inf/NaN steps skipped, as in the trainer

    variants = [_reference_train_variant(s)] if s.reference is not None else []
    state = lambda: s.resident() + train_state_bytes(params, opt)  # noqa: E731
    if s.cold is not None:
        variants.append(Variant("train", "optimized, first epoch", s.opt_desc + "frozen tap under no_grad, cache "
                                "misses stored", s.opt_precision, lambda b: opt_train(b, s.cold), state,
                                host_cache=s.cold))
        variants.append(Variant("train", "optimized, cached", s.opt_desc + "warm feature cache: head-only steps",
                                s.opt_precision, lambda b: opt_train(b, s.warm), state, host_cache=s.warm))
    else:
        variants.append(Variant("train", "optimized", s.opt_desc + "every step through the whole model",
                                s.opt_precision, opt_train, state))
    return variants


def build_variants(detector, reference, config, device, modes, compile_model):
    """The measured configurations of ``modes`` and the warm cache (or None), through the detector
    contract only: the engine's steps (``forward`` / ``get_losses``, with the feature cache when the
    detector declares a frozen ``feature_tap``) and, when the detector offers one (``bench_reference()``),
    the reference."""
    s = Setup(detector, reference, config, device, compile_model)
    variants = []
    if "inference" in modes:
        variants += _inference_variants(s)
    if "components" in modes:
        variants += _component_variants(s)
    if "train" in modes:
        variants += _train_variants(s)
    if compile_model:  # after the copies above (reference and components run uncompiled)
        detector.prepare_fast_paths(device, compile=True)
    return variants, s.warm


def model_channels_last(module):
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return bool(convs) and convs[-1].weight.is_contiguous(memory_format=torch.channels_last)
