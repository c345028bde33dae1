"""The frozen-feature cache (engine/feature_cache.py): same outputs, invalidation, corruption, bounds."""
import glob
import logging
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import tiny_config
from declip_plugin import build_detector
from declip_plugin.config import RunConfig, load_run_config
from declip_plugin.config.run import FeatureCacheKeys
from declip_plugin.data.images import read_image
from declip_plugin.data.transforms import SampleTransform
from declip_plugin.engine.evaluator import evaluate
from declip_plugin.engine.feature_cache import FeatureCache, backbone_fingerprint, cache_applicable, maybe_feature_cache
from declip_plugin.errors import ConfigError

N = 4


def _write_png(path, seed):
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp.png"
    assert cv2.imwrite(tmp, rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    os.replace(tmp, path)  # a new inode, as a real rewrite of the file


def _batch(paths, config):
    """A batch as the loader makes it: the images read and transformed from the files."""
    tf = SampleTransform(config)
    images = torch.stack([tf(read_image(p))[0] for p in paths])
    label = torch.tensor([i % 2 for i in range(len(paths))])
    mask = (torch.rand(len(paths), 1, 256, 256) > 0.5).float() * label.view(-1, 1, 1, 1)
    return {"image": images, "label": label, "mask": mask, "name": list(paths), "video": None}


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(N):
        p = str(tmp_path / f"img{i}.png")
        _write_png(p, i)
        paths.append(p)
    return paths


def _detector(**kw):
    """The tiny frozen ViT; the linear decoder unless asked (the cache is the same for every decoder)."""
    torch.manual_seed(0)
    return build_detector(tiny_config(**{"decoder_type": "linear", **kw})).eval()


def _cfg(det_kw=None, **cache):
    return {**tiny_config(**(det_kw or {})), "precision": "fp32", "feature_cache": cache}


@torch.inference_mode()
def _masks(det, batch):
    return det(batch, inference=True)["mask"]


def test_same_outputs_with_and_without_cache(images):
    det = _detector(decoder_type="conv-4")
    cfg = _cfg()
    batch = _batch(images, cfg)
    hook = FeatureCache(det, cfg)
    plain = _masks(det, batch)
    first = _masks(det, hook(batch))  # all computed and stored
    second = _masks(det, hook(batch))  # all from the cache
    assert torch.equal(plain, first) and torch.equal(plain, second)
    s = hook.cache_stats()
    assert (s["misses"], s["hits"], s["memory_entries"]) == (N, N, N)
    assert s["memory_bytes"] == N * 197 * 64 * 4  # fp32 (1+14*14, 64) tokens per image
    # a batch mixing cached and new images
    extra = images[0].replace("img0", "other")
    _write_png(extra, 99)
    mixed = _batch(images[:2] + [extra], cfg)
    out = _masks(det, hook(mixed))
    torch.testing.assert_close(out, _masks(det, mixed), rtol=0, atol=1e-6)
    assert hook.cache_stats()["hits"] == N + 2


def test_evaluate_and_train_with_the_hook(images):
    det = _detector()
    cfg = _cfg()
    batch = _batch(images, cfg)
    hook = FeatureCache(det, cfg)
    device = torch.device("cpu")
    plain = evaluate(det, [batch], device, cfg, "fp32", progress=False).metrics
    # the hook fills the cache under inference_mode here
    cached = evaluate(det, [batch], device, cfg, "fp32", progress=False, batch_hook=hook).metrics
    assert plain == cached
    # a training step on entries stored under inference_mode: same loss and gradients as without the cache
    grads = []
    for b in (batch, hook(batch)):
        torch.manual_seed(1)
        det.train()
        det.zero_grad(set_to_none=True)
        loss = det.get_losses(b, det(b))["overall"]
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for p in det.decoder.parameters()]))
    assert grads[0][0] == grads[1][0]
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
    assert hook.cache_stats()["hits"] == N


def test_staging_buffer_made_in_inference_mode_is_writable_in_training():
    """The CUDA path copies hits through a reused (pinned) buffer; evaluation may create it."""
    hook = FeatureCache(_detector(), _cfg())
    x = torch.randn(2, 3)
    with torch.inference_mode():
        hook._staging(x, pin=False).copy_(x)
    buf = hook._staging(x, pin=False)
    buf.copy_(x + 1)  # outside inference_mode: fails if the buffer were an inference tensor
    assert torch.equal(buf, x + 1)


def test_invalidated_when_weights_change(images, tmp_path):
    det = _detector()
    cfg = _cfg(dir=str(tmp_path / "cache"))
    batch = _batch(images, cfg)
    hook = FeatureCache(det, cfg)
    hook(batch)
    before = hook.fingerprint
    with torch.no_grad():
        next(det.backbone.parameters()).view(-1)[0] += 1e-3  # one weight of the frozen tower
    assert backbone_fingerprint(det.backbone) != before
    out = _masks(det, hook(batch))  # the same hook sees the change
    assert hook.fingerprint != before
    assert hook.cache_stats()["misses"] == 2 * N and hook.cache_stats()["hits"] == 0
    assert torch.equal(out, _masks(det, batch))
    # a new process (a new hook on the same directory) with the original weights: hits again
    det2 = _detector()
    hook2 = FeatureCache(det2, {**cfg, "feature_cache": {"dir": str(tmp_path / "cache"), "memory": False}})
    hook2(batch)
    assert hook2.fingerprint == before and hook2.cache_stats()["hits"] == N


def test_layer_change_is_a_miss(images, tmp_path):
    shared = {"dir": str(tmp_path / "cache"), "memory": False}
    cfg1 = _cfg(**shared)
    batch = _batch(images, cfg1)
    h1 = FeatureCache(_detector(), cfg1)
    h1(batch)
    det0 = _detector(feature_layer="layer0")
    h0 = FeatureCache(det0, _cfg({"feature_layer": "layer0"}, **shared))
    out = _masks(det0, h0(batch))
    assert h0.cache_stats()["hits"] == 0 and h0.cache_stats()["misses"] == N
    assert torch.equal(out, _masks(det0, batch))
    assert len(glob.glob(str(tmp_path / "cache" / "*" / "*.feat"))) == 2 * N


def test_pipeline_change_is_a_miss(images):
    det = _detector()
    cfg = _cfg()
    hook = FeatureCache(det, cfg)
    hook(_batch(images, cfg))
    other = {**cfg, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    hook_other = FeatureCache(det, other)
    assert hook_other.key(images[0], torch.device("cpu")) != hook.key(images[0], torch.device("cpu"))


def test_an_items_resize_policy_is_part_of_its_key(images):
    """The same file read as DeepfakeBench-format data (INTER_CUBIC) and by another adapter (INTER_LINEAR) gives
    other pixels: the batch's ``resize`` list keeps their entries apart (no name: the engine's default)."""
    det = _detector()
    cfg = _cfg()
    hook = FeatureCache(det, cfg)
    batch = _batch(images, cfg)
    hook({**batch, "resize": ["declip"] * N})
    hook({**batch, "resize": ["deepfakebench"] * N})
    assert hook.cache_stats()["misses"] == 2 * N and hook.cache_stats()["hits"] == 0
    hook(batch)  # a batch without the list: the default policy's entries
    assert hook.cache_stats()["hits"] == N


def test_file_change_is_a_miss_and_same_content_is_a_hit(images, tmp_path):
    det = _detector()
    cfg = _cfg()
    hook = FeatureCache(det, cfg)
    hook(_batch(images, cfg))
    _write_png(images[1], 1234)  # new bytes at the same path
    copy = str(tmp_path / "copy_of_img2.png")
    with open(images[2], "rb") as src, open(copy, "wb") as dst:
        dst.write(src.read())
    batch = _batch([images[1], copy], cfg)
    out = _masks(det, hook(batch))
    s = hook.cache_stats()
    assert (s["misses"], s["hits"]) == (N + 1, 1)
    assert torch.equal(out, _masks(det, batch))


def _entries(root):
    return sorted(glob.glob(os.path.join(root, "*", "*.feat")))


def test_corrupt_entries_are_logged_and_recomputed(images, tmp_path, caplog):
    root = str(tmp_path / "cache")
    det = _detector()
    cfg = _cfg(dir=root, memory=False)
    batch = _batch(images, cfg)
    FeatureCache(det, cfg)(batch)
    files = _entries(root)
    assert len(files) == N
    with open(files[0], "r+b") as f:  # truncated
        f.truncate(os.path.getsize(files[0]) // 2)
    with open(files[1], "r+b") as f:  # one payload byte flipped: crc32 mismatch
        f.seek(-5, os.SEEK_END)
        b = f.read(1)
        f.seek(-5, os.SEEK_END)
        f.write(bytes([b[0] ^ 0xFF]))
    with open(files[2], "wb") as f:  # garbage
        f.write(b"not a cache entry at all")
    hook = FeatureCache(det, cfg)
    key3 = os.path.basename(files[3])[:-5]
    hook.disk.put(key3, torch.zeros(3, 5))  # a well-formed entry of the wrong shape
    caplog.set_level(logging.WARNING, logger="declip_plugin.engine.feature_cache")
    out = _masks(det, hook(batch))
    assert torch.equal(out, _masks(det, batch))
    s = hook.cache_stats()
    assert s["corrupt"] == 4 and s["misses"] == N and s["hits"] == 0
    assert sum("bad entry" in r.getMessage() for r in caplog.records) == 4
    assert any("checksum" in r.getMessage() for r in caplog.records)
    assert any("shape" in r.getMessage() for r in caplog.records)
    again = FeatureCache(det, cfg)
    again(batch)
    assert again.cache_stats()["hits"] == N and again.cache_stats()["corrupt"] == 0


def test_bounded_size_evicts(images, tmp_path):
    det = _detector()
    entry = 197 * 64 * 4
    cfg = _cfg(max_gb=2.5 * entry / 1e9)
    hook = FeatureCache(det, cfg)
    batch = _batch(images, cfg)
    hook(batch)
    s = hook.cache_stats()
    assert s["memory_entries"] == 2 and s["memory_bytes"] <= 2.5 * entry and s["evictions"] == N - 2
    hook(_batch(images[:1], cfg))  # evicted (least recently used): computed again
    assert hook.cache_stats()["misses"] == N + 1
    hook(_batch(images[3:], cfg))  # still there
    assert hook.cache_stats()["hits"] == 1

    root = str(tmp_path / "cache")
    disk_cfg = _cfg(dir=root, memory=False, max_gb=2.5 * (entry + 512) / 1e9)
    dhook = FeatureCache(det, disk_cfg)
    dhook(batch)
    assert len(_entries(root)) == 2 and dhook.cache_stats()["disk_bytes"] <= 2.5 * (entry + 512)
    # a new process sees the bounded directory
    assert FeatureCache(det, disk_cfg).cache_stats()["disk_entries"] == 2


def test_names_that_are_not_files_are_computed(images):
    det = _detector()
    cfg = _cfg()
    batch = _batch(images, cfg)
    batch["name"] = [f"frame_{i}" for i in range(N)]
    hook = FeatureCache(det, cfg)
    for _ in range(2):
        assert torch.equal(_masks(det, hook(batch)), _masks(det, batch))
    s = hook.cache_stats()
    assert s["uncacheable"] == 2 * N and s["hits"] == 0 and s["memory_entries"] == 0


@pytest.mark.parametrize("overrides, words", [
    ({"augmentation": "blur"}, "augmentation 'blur'"),
    ({"flip_prob": 0.5}, "flip_prob"),
    ({"fix_backbone": False}, "declares no frozen feature tap"),
    ({"feature_cache": {"enabled": False}}, "enabled is false"),
])
def test_not_applicable_logs_why(overrides, words, caplog):
    cfg = {**tiny_config(), **overrides}
    det = build_detector(cfg)
    ok, reason = cache_applicable(det, cfg)
    assert not ok and words in reason
    caplog.set_level(logging.INFO, logger="declip_plugin.engine.feature_cache")
    assert maybe_feature_cache(det, cfg) is None
    assert any("feature cache off" in r.getMessage() and words in r.getMessage() for r in caplog.records)


def test_applicable_and_explicit_request_warns(caplog):
    cfg = {**tiny_config(), "augmentation": "none", "flip_prob": 0.0}
    det = build_detector(cfg)
    assert cache_applicable(det, cfg)[0]
    assert isinstance(maybe_feature_cache(det, cfg), FeatureCache)
    asked = {**cfg, "augmentation": "all", "feature_cache": {"enabled": True}}
    caplog.set_level(logging.INFO, logger="declip_plugin.engine.feature_cache")
    assert maybe_feature_cache(det, asked) is None
    assert any(r.levelno == logging.WARNING and "augmentation" in r.getMessage() for r in caplog.records)


def test_the_cache_has_the_run_schemas_defaults_and_limits():
    """One default and one set of limits per key (config/run.py): max_gb 0 is refused when the config is
    loaded, naming where it came from, and the cache takes the same settings from a dict."""
    assert RunConfig.of({}).feature_cache == FeatureCacheKeys(enabled="auto", dir=None, max_gb=8.0, memory=True)
    with pytest.raises(ConfigError, match=r"^the command line \(--opt\): feature_cache: key 'max_gb' must be greater "
                                          r"than 0, got 0$"):
        load_run_config("declip_quick", "train", {"feature_cache": {"max_gb": 0}})
    with pytest.raises(ConfigError, match=r"feature_cache: key 'enabled' is 'sometimes'; allowed: True, False, auto"):
        FeatureCache(_detector(), _cfg(enabled="sometimes"))
    assert FeatureCache(_detector(), _cfg(max_gb=0.5)).max_bytes == 500_000_000
