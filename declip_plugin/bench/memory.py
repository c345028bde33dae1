"""Memory probes of ``declip bench``: the extra memory one step allocates, and the resident state.

Peak memory of a configuration = its resident state (its modules' parameters and buffers, gradients
and optimizer state, and on the CPU the cached features, counted exactly) + the most memory one of
its steps allocated on top: on CUDA ``torch.cuda.max_memory_allocated`` - ``memory_allocated`` at the
step's start (peak stats reset per step); on the CPU the process's peak RSS during the step
(``VmHWM``, reset per step through ``/proc/self/clear_refs``) - its RSS at the step's start, after
``gc.collect()`` and glibc ``malloc_trim(0)``.
"""
import ctypes
import gc

import torch


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


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def module_bytes(*modules):
    """Bytes of the parameters and buffers of ``modules`` (a tensor shared between them once)."""
    seen, total = set(), 0
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total


def train_state_bytes(params, optimizer):
    """Bytes of the gradients of ``params`` and of ``optimizer``'s state."""
    grads = sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    state = sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))
    return grads + state
