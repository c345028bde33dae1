"""Device, precision, seeding and torch.distributed helpers, each decided once per run."""
import contextlib
import logging
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(config):
    """``config['device']`` or CUDA when available, else CPU; under torchrun, the local GPU."""
    want = (config or {}).get("device")
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


def autocast(device, precision):
    """bf16 autocast on CUDA when ``precision`` is bf16; exact fp32 everywhere else."""
    if precision not in ("bf16", "fp32", "fp16"):
        raise ConfigError(f"precision {precision!r}: use bf16 or fp32")
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


# --- distributed ------------------------------------------------------------------------------
def world_size():
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def local_rank():
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main():
    return rank() == 0


def init_distributed(config):
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); nccl on GPU, gloo on CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    backend = (config or {}).get("dist_backend") or ("nccl" if torch.cuda.is_available() and
                                                     (config or {}).get("device") != "cpu" else "gloo")
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
