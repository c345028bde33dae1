"""A cache of the frozen backbone's tapped features, used as the engine's ``batch_hook``.

With a frozen backbone and a deterministic image pipeline, the backbone computes the same
features for an image in every epoch: the first epoch computes and stores them, later epochs
(and every validation after the first) only run the decoder on the stored features.

Usage (``engine/run.py``)::

    hook = maybe_feature_cache(detector, config, run_dir)  # None (and the reason logged) when not applicable
    Trainer(..., batch_hook=hook); evaluate(..., batch_hook=hook); hook.log_stats()

``FeatureCache.__call__(batch)`` returns the batch with ``batch['features']`` set; the detector
then skips its tapped trunk (``features()`` of the detector contract).

Keys. An entry's key is the sha256 of
  * the image file's content (sha256 of its bytes by :func:`declip_plugin.digests.file_digest`, read
    once per file and memoized by (path, size, mtime_ns, inode)) - the batch's ``name`` list must
    hold the image paths;
  * the backbone: ``backbone.cache_key`` (architecture | weights source | layer | resolution) and
    a fingerprint of its tensors (sha256 over the name, dtype, shape and bytes of every parameter
    and buffer; ViT-L/14 cut at layer 20 is ~1.0 GB: ~0.8 s on a CPU with SHA extensions, once
    per run, and again only when a tensor is changed in place - its version counter moves);
  * the image pipeline (resolution, mean, std; the resize policy of the item, the batch's ``resize``
    list: data/transforms.py RESIZES, ``declip`` where the batch names none) and the compute path (device type
    and autocast precision: ``cpu-fp32``, ``cuda-fp32``, ``cuda-bf16``), since bf16 features are
    not fp32 features.

Storage. Features are stored in the dtype the backbone returns them in (fp32 on the CPU; under
bf16 autocast on CUDA what the tower returns there), one (1+N, C) or (C, H, W) tensor per image:
  * ``memory: true`` - an LRU dict in host memory, at most ``max_gb``;
  * ``dir: PATH`` - one file per entry under PATH (two-level fan-out), written atomically
    (:func:`declip_plugin.atomicio.atomic_open`), at most ``max_gb`` on disk (least recently used entries removed; a hit
    refreshes the file's mtime). A stale or corrupt entry (unreadable, bad header, wrong key,
    shape or dtype, crc32 mismatch) is logged, removed and recomputed; it never stops the run.
    Several processes (DDP ranks) may share a directory: writes are atomic, and each process
    bounds the size it sees (eviction races are tolerated).
  * neither (``memory: false``, ``dir: null``): a disk cache under ``<run_dir>/feature_cache``.

Config (``feature_cache``, config/run.py ``FeatureCacheKeys``: its defaults and limits): ``enabled``
true | false | 'auto' (on when applicable), ``dir``, ``max_gb`` (per tier), ``memory``.
The cache is only applicable with a frozen backbone and a deterministic pipeline
(``augmentation`` none and ``flip_prob`` 0): see :func:`cache_applicable`.

Note: the data loader still decodes every image (the hook sees the batch after loading); what the
cache removes is the backbone's forward pass.
"""
import collections
import contextlib
import hashlib
import json
import logging
import os
import struct
import time
import weakref
import zlib

import torch

from ..atomicio import atomic_open
from ..config import RunConfig
from ..detectors.base import capability
from ..digests import file_digest
from ..run_folder import RunDir
from . import runtime

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MAGIC = b"DCLPFC01"
SUFFIX = ".feat"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_STALE_TMP_S = 3600.0
#: an entry being written (atomicio's temporary file); one older than _STALE_TMP_S was left by a dead process
TMP_SUFFIX = ".tmp"


# --- settings and applicability -----------------------------------------------------------------
def cache_applicable(detector, config):
    """``(True, why)`` when the feature cache may be used for this detector and config, else
    ``(False, reason)``; the reason is meant for the run log."""
    config = RunConfig.of(config)
    if config.feature_cache.enabled is False:
        return False, "feature_cache.enabled is false"
    tap = capability(detector, "feature_tap")
    if tap is None:
        return False, (f"detector {type(detector).__name__} declares no frozen feature tap (its trunk is trained, "
                       f"or it has none), so its features change at every step")
    if not hasattr(tap, "cache_key"):
        return False, f"the feature tap of {type(detector).__name__} has no cache_key"
    if config.augmentation != "none":
        return False, f"augmentation {config.augmentation!r} changes the training images every epoch"
    if config.flip_prob > 0:
        return False, f"flip_prob {config.flip_prob} flips training images at random"
    if config.use_data_augmentation and config.data_aug:
        return False, "use_data_augmentation is on with a data_aug section"
    return True, "frozen backbone and deterministic image pipeline"


def maybe_feature_cache(detector, config, run_dir=None):
    """The run's ``batch_hook``: a :class:`FeatureCache` when :func:`cache_applicable`, else None;
    logs which and why (a warning when ``enabled: true`` was asked for but cannot be honoured)."""
    config = RunConfig.of(config)
    ok, reason = cache_applicable(detector, config)
    if not ok:
        asked = config.feature_cache.enabled is True
        (logger.warning if asked else logger.info)("feature cache off: %s", reason)
        return None
    return FeatureCache(detector, config, run_dir)


# --- hashing ------------------------------------------------------------------------------------
def _tensors(module):
    yield from module.named_parameters(recurse=True)
    yield from module.named_buffers(recurse=True)


def _version_signature(module):
    """Cheap per-batch check that no tensor of ``module`` was replaced or changed in place."""
    sig = []
    for _, t in _tensors(module):
        try:
            v = t._version
        except RuntimeError:  # inference tensors keep no version counter
            v = -1
        sig.append((t.data_ptr(), v))
    return tuple(sig)


#: backbone module -> (version signature, fingerprint): one hash per set of weights per process
_FINGERPRINTS = weakref.WeakKeyDictionary()


def backbone_fingerprint(module):
    """sha256 hex over the name, dtype, shape and bytes of every parameter and buffer."""
    h = hashlib.sha256()
    for name, t in _tensors(module):
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            data = t.to("cpu").contiguous().reshape(-1).view(torch.uint8)
            h.update(memoryview(data.numpy()))
    return h.hexdigest()


def _tensor_bytes(module):
    return sum(t.numel() * t.element_size() for _, t in _tensors(module))


def _compute_tag(device, precision):
    precision = runtime.decide_precision(precision, device).name  # what runs (``auto`` resolved)
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return f"cuda-{precision}"
    return f"{device.type}-fp32"


def pipeline_signature(config, backbone):
    mean, std = config.normalisation()
    return {"resolution": config.resolution, "mean": list(mean), "std": list(std),
            "backbone_size": getattr(backbone, "image_size", None)}


def resize_signature(name):
    """The key part of the resize policy ``name`` an item went through (None: the default policy)."""
    from ..data.transforms import DEFAULT_RESIZE, resize_policy

    return resize_policy(name or DEFAULT_RESIZE).signature


# --- disk tier ----------------------------------------------------------------------------------
class DiskStore:
    """One file per entry: MAGIC, uint32 header length, JSON header (padded to 64 bytes), payload."""

    def __init__(self, root, max_bytes, stats):
        self.root, self.max_bytes, self.stats = os.path.abspath(os.path.expanduser(str(root))), int(max_bytes), stats
        os.makedirs(self.root, exist_ok=True)
        self.index = collections.OrderedDict()  # key -> size, least recently used first
        self.bytes = 0
        self._scan()

    def path(self, key):
        return os.path.join(self.root, key[:2], key + SUFFIX)

    def _scan(self):
        found, now = [], time.time()
        for sub in os.scandir(self.root):
            if not sub.is_dir():
                continue
            for e in os.scandir(sub.path):
                try:
                    st = e.stat()
                except OSError:
                    continue
                if e.name.endswith(SUFFIX):
                    found.append((st.st_mtime_ns, e.name[: -len(SUFFIX)], st.st_size))
                elif e.name.endswith(TMP_SUFFIX) and now - st.st_mtime > _STALE_TMP_S:
                    _remove(e.path)  # left by a process that died mid-write
        for _, key, size in sorted(found):
            self.index[key] = size
            self.bytes += size
        if found:
            logger.info("feature cache: %d entries (%.2f GB) in %s", len(found), self.bytes / 1e9, self.root)
        self._evict()

    def get(self, key, expect_shape, expect_dtype):
        path = self.path(key)  # also tried when not indexed: another process may have written it
        try:
            with open(path, "rb") as f:
                buf = bytearray(os.fstat(f.fileno()).st_size)
                n = f.readinto(buf)
            tensor = _decode(buf, n, key, expect_shape, expect_dtype)
        except FileNotFoundError:  # evicted by another process
            self._forget(key)
            return None
        except (OSError, ValueError) as exc:
            self.stats["corrupt"] += 1
            logger.warning("feature cache: bad entry %s (%s); recomputing it", path, exc)
            _remove(path)
            self._forget(key)
            return None
        if key in self.index:
            self.index.move_to_end(key)
        else:
            self.index[key] = len(buf)
            self.bytes += len(buf)
        with contextlib.suppress(OSError):
            os.utime(path)
        return tensor

    def put(self, key, tensor):
        data = tensor.detach().to("cpu").contiguous()
        payload = memoryview(data.reshape(-1).view(torch.uint8).numpy())
        header = json.dumps({"v": FORMAT_VERSION, "key": key, "dtype": str(data.dtype).replace("torch.", ""),
                             "shape": list(data.shape), "nbytes": payload.nbytes,
                             "crc32": zlib.crc32(payload)}).encode()
        pad = (-(len(MAGIC) + 4 + len(header))) % 64
        header += b" " * pad
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:  # a cache entry: atomic, without the fsync (a lost entry is computed again)
            with atomic_open(path, suffix=TMP_SUFFIX, durable=False) as f:
                f.write(MAGIC)
                f.write(struct.pack("<I", len(header)))
                f.write(header)
                f.write(payload)
        except OSError as exc:
            logger.warning("feature cache: cannot write %s (%s); the entry is not stored", path, exc)
            return
        size = len(MAGIC) + 4 + len(header) + payload.nbytes
        self._forget(key)
        self.index[key] = size
        self.bytes += size
        self.stats["disk_writes"] += 1
        self._evict()

    def _forget(self, key):
        size = self.index.pop(key, None)
        if size is not None:
            self.bytes -= size

    def _evict(self):
        while self.bytes > self.max_bytes and self.index:
            key, size = self.index.popitem(last=False)
            self.bytes -= size
            _remove(self.path(key))
            self.stats["evictions"] += 1
            _warn_full("disk", self.stats, self.max_bytes)


def _warn_full(tier, stats, max_bytes):
    if stats[f"{tier}_full_warned"]:
        return
    stats[f"{tier}_full_warned"] = 1
    logger.warning("feature cache: the %s tier is full (%.2f GB): least recently used entries are dropped; if the "
                   "images of an epoch do not all fit, later epochs hit only in part (none at all when they are read "
                   "in the same order). Raise feature_cache.max_gb%s", tier, max_bytes / 1e9,
                   "" if tier == "disk" else " or add a feature_cache.dir")


def _decode(buf, n, key, expect_shape, expect_dtype):
    if n != len(buf) or n < len(MAGIC) + 4 or bytes(buf[: len(MAGIC)]) != MAGIC:
        raise ValueError("not a feature-cache file (bad magic or short read)")
    (hlen,) = struct.unpack_from("<I", buf, len(MAGIC))
    start = len(MAGIC) + 4 + hlen
    if start > n:
        raise ValueError("truncated header")
    try:
        head = json.loads(bytes(buf[len(MAGIC) + 4: start]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"unreadable header: {exc}") from None
    if not isinstance(head, dict) or head.get("v") != FORMAT_VERSION or head.get("key") != key:
        raise ValueError("header of another version or key")
    dtype = _DTYPES.get(head.get("dtype"))
    shape = tuple(head.get("shape") or ())
    if dtype is None:
        raise ValueError(f"unknown dtype {head.get('dtype')!r}")
    if expect_dtype is not None and dtype != expect_dtype:
        raise ValueError(f"dtype {dtype}, expected {expect_dtype}")
    if expect_shape is not None and shape != tuple(expect_shape):
        raise ValueError(f"shape {shape}, expected {tuple(expect_shape)}")
    numel = 1
    for d in shape:
        numel *= int(d)
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if head.get("nbytes") != nbytes or n - start != nbytes:
        raise ValueError(f"payload of {n - start} bytes, expected {nbytes}")
    payload = memoryview(buf)[start:]
    if zlib.crc32(payload) != head.get("crc32"):
        raise ValueError("checksum mismatch")
    return torch.frombuffer(buf, dtype=dtype, count=numel, offset=start).reshape(shape)


def _remove(path):
    with contextlib.suppress(OSError):
        os.remove(path)


# --- the hook -----------------------------------------------------------------------------------
class FeatureCache:
    """The engine's ``batch_hook``: fills ``batch['features']`` from the cache, computing and
    storing the missing entries with ``detector.backbone``. See the module docstring."""

    def __init__(self, detector, config, run_dir=None):
        self.detector = detector
        self.backbone = capability(detector, "feature_tap")
        self.config = RunConfig.of(config)
        self.settings = self.config.feature_cache
        self.precision = self.config.precision
        self.max_bytes = int(self.settings.max_gb * 1e9)
        self.stats = collections.Counter()
        self._mem = collections.OrderedDict() if self.settings.memory else None
        self._mem_bytes = 0
        root = self.settings.dir
        if root is None and not self.settings.memory:
            if run_dir is None:
                logger.warning("feature cache: memory: false and no dir; keeping the features in memory")
                self._mem = collections.OrderedDict()
            else:
                root = RunDir(run_dir).feature_cache
        self.disk = DiskStore(root, self.max_bytes, self.stats) if root else None
        self._pipeline = pipeline_signature(self.config, self.backbone)
        self._prefix, self._prefix_for = None, None
        self._signature, self.fingerprint = None, None
        self._shape, self._dtype = _expected_shape(self.backbone), None
        self._warned_names = False
        self._pinned, self._copy_event = None, None
        self._refresh_fingerprint()
        tiers = (["host memory"] if self._mem is not None else []) + ([f"disk {self.disk.root}"] if self.disk else [])
        logger.info("feature cache on: %s, at most %.1f GB each; features kept in the dtype they are computed in",
                    " + ".join(tiers), self.settings.max_gb)

    # -- keys --
    def _refresh_fingerprint(self):
        sig = _version_signature(self.backbone)
        if sig == self._signature:
            return False
        memo = _FINGERPRINTS.get(self.backbone)
        if memo is not None and memo[0] == sig:
            self.fingerprint = memo[1]
        else:
            t0 = time.perf_counter()
            self.fingerprint = backbone_fingerprint(self.backbone)
            _FINGERPRINTS[self.backbone] = (sig, self.fingerprint)
            logger.info("feature cache: backbone %s fingerprint %s (%.2f GB hashed in %.2f s)", self.backbone.cache_key,
                        self.fingerprint[:16], _tensor_bytes(self.backbone) / 1e9, time.perf_counter() - t0)
        changed = self._signature is not None
        self._signature = sig
        self._prefix = None
        return changed

    def key_prefix(self, device):
        tag = _compute_tag(device, self.precision)
        if self._prefix is None or self._prefix_for != tag:
            desc = {"v": FORMAT_VERSION, "backbone": self.backbone.cache_key, "weights": self.fingerprint,
                    "layer": getattr(self.backbone, "layer", None), "kind": self.backbone.kind,
                    "pipeline": self._pipeline, "compute": tag}
            self._prefix = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()
            self._prefix_for = tag
        return self._prefix

    def key(self, path, device, resize=None):
        """The entry key of image file ``path`` resized by the policy ``resize`` (None when it is not a
        readable file)."""
        digest = file_digest(str(path))
        if digest is None:
            return None
        return hashlib.sha256(f"{self.key_prefix(device)}:{resize_signature(resize)}:{digest}".encode()).hexdigest()

    # -- tiers --
    def _get(self, key):
        if self._mem is not None:
            t = self._mem.get(key)
            if t is not None:
                self._mem.move_to_end(key)
                self.stats["memory_hits"] += 1
                return t
        if self.disk is not None:
            t = self.disk.get(key, self._shape, self._dtype)
            if t is not None:
                self.stats["disk_hits"] += 1
                self._mem_put(key, t)
                return t
        return None

    def _mem_put(self, key, t):
        if self._mem is None:
            return
        size = t.numel() * t.element_size()
        if size > self.max_bytes:
            return
        old = self._mem.pop(key, None)
        if old is not None:
            self._mem_bytes -= old.numel() * old.element_size()
        self._mem[key] = t
        self._mem_bytes += size
        while self._mem_bytes > self.max_bytes:
            _, ev = self._mem.popitem(last=False)
            self._mem_bytes -= ev.numel() * ev.element_size()
            self.stats["evictions"] += 1
            _warn_full("memory", self.stats, self.max_bytes)

    def _put(self, key, t):
        self._mem_put(key, t)
        if self.disk is not None:
            self.disk.put(key, t)

    # -- compute --
    def _probe(self, images):
        """Shape and dtype of one image's features on this compute path (checked on disk reads)."""
        feats = self._compute(torch.zeros_like(images[:1]))
        self._dtype, self._shape = feats.dtype, tuple(feats.shape[1:])

    def _compute(self, images):
        grad = contextlib.nullcontext() if torch.is_inference_mode_enabled() else torch.no_grad()
        with grad, runtime.autocast(images.device, self.precision):
            feats = self.backbone(images)
        return feats

    def __call__(self, batch):
        if batch.get("features") is not None:
            return batch
        images = batch["image"]
        device = images.device
        if self._refresh_fingerprint():
            logger.info("feature cache: the backbone's weights changed; earlier entries no longer match")
        names = batch.get("name")
        n = images.shape[0]
        if names is None or len(names) != n:
            names = [None] * n
        resizes = batch.get("resize")
        if resizes is None or len(resizes) != n:
            resizes = [None] * n
        keys = [self.key(p, device, r) if p is not None else None for p, r in zip(names, resizes)]
        if self.disk is not None and self._dtype is None and any(k is not None for k in keys):
            self._probe(images)
        if any(k is None for k in keys) and not self._warned_names:
            self._warned_names = True
            logger.warning("feature cache: batch entries without a readable image file in 'name' (e.g. %r) are "
                           "computed every time", next(p for p, k in zip(names, keys) if k is None))
        found = [self._get(k) if k is not None else None for k in keys]
        miss = [i for i, t in enumerate(found) if t is None]
        hit = [i for i, t in enumerate(found) if t is not None]
        self.stats["hits"] += len(hit)
        self.stats["misses"] += sum(1 for i in miss if keys[i] is not None)
        self.stats["uncacheable"] += sum(1 for i in miss if keys[i] is None)
        computed = None
        if miss:
            sub = images if len(miss) == n else images.index_select(0, torch.tensor(miss, device=device))
            computed = self._compute(sub)
            if (computed.dtype, tuple(computed.shape[1:])) != (self._dtype, self._shape):
                if self._dtype is not None:
                    logger.warning("feature cache: the backbone returned %s %s, expected %s %s", computed.dtype,
                                   tuple(computed.shape[1:]), self._dtype, self._shape)
                self._dtype, self._shape = computed.dtype, tuple(computed.shape[1:])
            host = computed.detach().to("cpu")
            for j, i in enumerate(miss):
                if keys[i] is not None:
                    # own storage per entry, so that evicting it frees it
                    self._put(keys[i], host[j].clone())
        if not hit:
            feats = computed
        else:
            stacked = self._to_device(torch.stack([found[i] for i in hit]), device)
            if not miss:
                feats = stacked
            else:
                feats = torch.empty((n,) + tuple(computed.shape[1:]), dtype=computed.dtype, device=device)
                feats.index_copy_(0, torch.tensor(hit, device=device), stacked.to(computed.dtype))
                feats.index_copy_(0, torch.tensor(miss, device=device), computed)
        out = dict(batch)
        out["features"] = feats
        return out

    def _to_device(self, host, device):
        if device.type != "cuda":
            return host.to(device)
        # through a reused pinned buffer: an asynchronous copy, fenced before the buffer is reused
        if self._copy_event is not None:
            self._copy_event.synchronize()
        buf = self._staging(host, pin=True)
        buf.copy_(host)
        out = buf.to(device, non_blocking=True)
        self._copy_event = torch.cuda.Event()
        self._copy_event.record()
        return out

    def _staging(self, host, pin):
        """A reused host buffer shaped like ``host``; a normal tensor even when first made under
        inference_mode (evaluation), so that training steps may write into it later."""
        if self._pinned is None or self._pinned.numel() < host.numel() or self._pinned.dtype != host.dtype:
            with torch.inference_mode(False):
                self._pinned = torch.empty(host.numel(), dtype=host.dtype, pin_memory=pin)
        return self._pinned[: host.numel()].view(host.shape)

    # -- reporting --
    def cache_stats(self):
        """hits / misses / bytes (memory and disk) / evictions / corrupt entries, for the log."""
        s = dict(self.stats)
        total = s.get("hits", 0) + s.get("misses", 0)
        return {"hits": s.get("hits", 0), "misses": s.get("misses", 0), "uncacheable": s.get("uncacheable", 0),
                "hit_rate": (s.get("hits", 0) / total) if total else 0.0,
                "memory_hits": s.get("memory_hits", 0), "disk_hits": s.get("disk_hits", 0),
                "memory_entries": len(self._mem) if self._mem is not None else 0, "memory_bytes": self._mem_bytes,
                "disk_entries": len(self.disk.index) if self.disk else 0,
                "disk_bytes": self.disk.bytes if self.disk else 0, "disk_writes": s.get("disk_writes", 0),
                "evictions": s.get("evictions", 0), "corrupt": s.get("corrupt", 0)}

    def log_stats(self, where="feature cache"):
        s = self.cache_stats()
        logger.info("%s: %d hits, %d misses (hit rate %.1f%%), %d uncacheable; memory %d entries / %.2f GB, "
                    "disk %d entries / %.2f GB; %d evicted, %d corrupt entries recomputed", where, s["hits"],
                    s["misses"], 100 * s["hit_rate"], s["uncacheable"], s["memory_entries"], s["memory_bytes"] / 1e9,
                    s["disk_entries"], s["disk_bytes"] / 1e9, s["evictions"], s["corrupt"])
        return s


def _expected_shape(backbone):
    """The per-image feature shape the backbone's attributes promise (None if unknown)."""
    c, g = getattr(backbone, "out_channels", None), getattr(backbone, "grid", None)
    if c is None or g is None:
        return None
    return (1 + g * g, c) if backbone.kind == "tokens" else (c, g, g)
