"""Device, precision, seeding and torch.distributed helpers, each decided once per run."""
import contextlib
import dataclasses
import functools
import logging
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig
from ..errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(config):
    """The run config's ``device`` or CUDA when available, else CPU; under torchrun, the local GPU."""
    want = RunConfig.of(config).device
    if want in (None, "", "auto"):
        want = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(want)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device {want!r} is not a device: use cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {want!r}: use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {want!r} requested but CUDA is not available; use device: cpu or leave it empty")
        if device.index is None:
            device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


def seed_everything(seed):
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def epoch_seed(seed, epoch, rank_=0):
    """The seed of one epoch of one rank: a function of the three alone."""
    return (int(seed) * 1_000_003 + int(epoch) * 1_009 + int(rank_)) % (2 ** 63 - 1)


# --- precision --------------------------------------------------------------------------------
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def device_capabilities(device):
    """What the device can do, asked here and nowhere else (tests fake this one function):
    ``{"name", "bf16"}``; ``bf16`` is native bf16 support (compute capability 8.0 or newer: A100,
    H100, L4, RTX 30xx ...), not the emulation older GPUs offer."""
    if device.type != "cuda":
        return {"name": "cpu", "bf16": False}
    return dict(_cuda_capabilities(device.index if device.index is not None else torch.cuda.current_device()))


@functools.lru_cache(maxsize=None)
def _cuda_capabilities(index):
    major, minor = torch.cuda.get_device_capability(index)
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch without the argument
        native = torch.cuda.is_bf16_supported()
    return {"name": f"{torch.cuda.get_device_name(index)} (compute capability {major}.{minor})",
            "bf16": bool(native and major >= 8)}


@dataclasses.dataclass(frozen=True)
class Precision:
    """The precision a run uses on its device: ``name`` bf16 | fp16 (autocast) or fp32;
    fp16 always comes with a gradient scaler."""
    name: str
    device_type: str
    requested: str = ""
    reason: str = ""

    @property
    def dtype(self):
        return _DTYPES.get(self.name)

    @property
    def uses_scaler(self):
        return self.name == "fp16"

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def make_scaler(self):
        """A ``torch.amp.GradScaler`` for fp16, None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.uses_scaler else None

    def describe(self):
        """What run.json records."""
        return {"requested": self.requested, "used": self.name, "scaler": self.uses_scaler, "reason": self.reason}


def decide_precision(requested, device):
    """The precision ``requested`` (a config's ``precision``) gives on ``device``.

    auto: bf16 where the GPU has it natively, else fp16 with a gradient scaler; bf16: refused on a
    GPU without it (one line naming auto / fp16 / fp32); fp16: always with a gradient scaler;
    fp32: exact. On the CPU autocast is not used: every request runs fp32."""
    requested = "auto" if requested in (None, "") else requested
    if isinstance(requested, Precision):
        return requested
    if requested not in PRECISIONS:
        raise ConfigError(f"precision {requested!r}: use {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        return Precision("fp32", device.type, requested,
                         "" if requested == "fp32" else "autocast is used on CUDA only; the CPU runs fp32")
    if requested == "fp32":
        return Precision("fp32", "cuda", requested)
    if requested == "fp16":
        return Precision("fp16", "cuda", requested, "fp16 autocast with a gradient scaler")
    caps = device_capabilities(device)
    if caps["bf16"]:
        return Precision("bf16", "cuda", requested, f"{caps['name']} has native bf16")
    if requested == "bf16":
        raise ConfigError(f"precision: bf16, but {caps['name']} has no native bf16 support; use precision: auto "
                          f"(fp16 with a gradient scaler on this GPU), fp16 or fp32")
    return Precision("fp16", "cuda", requested,
                     f"{caps['name']} has no native bf16: fp16 autocast with a gradient scaler")


def resolve_precision(config, device):
    """:func:`decide_precision` for a run's config, stated in one log line."""
    precision = decide_precision(RunConfig.of(config).precision, device)
    logger.info("precision: %s (requested %s)%s", precision.name, precision.requested,
                f": {precision.reason}" if precision.reason else "")
    return precision


def autocast(device, precision):
    """The autocast context of ``precision`` (a config value or a :class:`Precision`) on ``device``:
    bf16 / fp16 autocast on CUDA, exact fp32 everywhere else."""
    return decide_precision(precision, device).autocast()


# --- distributed ------------------------------------------------------------------------------
def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main():
    return rank() == 0


def check_ddp(config):
    """DeepfakeBench's ``ddp`` flag (``--ddp``): there, as here, the processes come from torchrun
    (which sets WORLD_SIZE); without it the flag is refused, since one process cannot make several."""
    if RunConfig.of(config).ddp and "WORLD_SIZE" not in os.environ:
        raise ConfigError("ddp: true (--ddp) needs one process per GPU started by torchrun: torchrun "
                          "--nproc_per_node=<GPUs> -m declip_plugin train ... (docs/distributed.md)")


def init_distributed(config):
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); nccl on GPU, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    config = RunConfig.of(config)
    backend = config.dist_backend or ("nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
    dist.init_process_group(backend=backend)
    logger.info("distributed: rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def shutdown_distributed(failed=False):
    """Leave the process group; after a failure without the barrier, so that this rank exits at
    once and torchrun ends the other ranks (a barrier here would wait for them forever)."""
    if dist.is_available() and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


def barrier():
    if world_size() > 1:
        dist.barrier()


def gather_objects(obj):
    """Every rank's ``obj`` as a list in rank order (a one-element list without distribution)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ShardSampler(torch.utils.data.Sampler):
    """Rank r takes samples r, r+W, r+2W, ...: every sample exactly once over all ranks (no padding),
    for evaluation, where DistributedSampler's padding would count samples twice."""

    def __init__(self, dataset, num_replicas=None, rank_=None):
        self.n = len(dataset)
        self.w = world_size() if num_replicas is None else num_replicas
        self.r = rank() if rank_ is None else rank_

    def __iter__(self):
        return iter(range(self.r, self.n, self.w))

    def __len__(self):
        return len(range(self.r, self.n, self.w))
