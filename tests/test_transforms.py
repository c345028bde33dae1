"""Resize, normalization, joint flip and the train-only augmentations."""
import os

import cv2
import numpy as np
import pytest
import torch

from declip_plugin.data import build_dataset
from declip_plugin.data import transforms as T
from declip_plugin.errors import ConfigError


def test_normalization_uses_clip_mean_and_std():
    tf = T.SampleTransform({"resolution": 8})
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 0, 128
    out, mask = tf(img)
    assert mask is None and out.shape == (3, 8, 8) and out.dtype == torch.float32
    expected = [(1.0 - 0.48145466) / 0.26862954, (0.0 - 0.4578275) / 0.26130258,
                (128 / 255 - 0.40821073) / 0.27577711]
    for c in range(3):
        assert torch.allclose(out[c], torch.full((8, 8), expected[c]), atol=1e-5)


def test_custom_mean_std_and_defaults():
    tf = T.SampleTransform({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]})
    assert tf.resolution == 224 and tf.mask_size == 256 and tf.augmentation == "none" and tf.flip_prob == 0.0
    out, _ = tf(np.full((10, 10, 3), 255, np.uint8))
    assert out.shape == (3, 224, 224) and torch.allclose(out, torch.ones_like(out))


def test_resize_is_bilinear_and_mask_nearest():
    img = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    assert np.array_equal(T.resize_image(img, 20), cv2.resize(img, (20, 20), interpolation=cv2.INTER_LINEAR))
    m = (np.random.default_rng(1).random((40, 30)) > 0.5).astype(np.uint8)
    assert set(np.unique(T.resize_mask(m, 17))) <= {0, 1}


def test_flip_applies_to_image_and_mask_together():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :2] = 255  # bright left edge
    mask = np.zeros((8, 8), np.uint8)
    mask[:, :2] = 1
    train = T.SampleTransform({"resolution": 8, "mask_size": 8, "flip_prob": 1.0}, train=True)
    out, m = train(img, mask)
    assert out[0, :, -1].min() > out[0, :, 0].max()  # bright edge now on the right
    assert m[0, :, -2:].sum() == 16 and m[0, :, :6].sum() == 0
    # the mask follows the image wherever it goes
    assert torch.equal(out[0] > 0, m[0] > 0)
    val = T.SampleTransform({"resolution": 8, "mask_size": 8, "flip_prob": 1.0}, train=False)
    out, m = val(img, mask)
    assert m[0, :, :2].sum() == 16 and out[0, :, 0].min() > out[0, :, -1].max()


@pytest.mark.parametrize("mode", ["blur", "color_jitter", "jpeg_compression", "all"])
def test_augmentations_change_only_train_images(mode):
    img = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[4:9, 4:20] = 1
    cfg = {"resolution": 32, "mask_size": 32, "augmentation": mode}
    ref, _ = T.SampleTransform({**cfg, "augmentation": "none"}, train=True)(img, mask)
    val, vmask = T.SampleTransform(cfg, train=False)(img, mask)
    assert torch.equal(val, ref)  # no augmentation outside train
    gen = torch.Generator().manual_seed(0)
    train, tmask = T.SampleTransform(cfg, train=True, generator=gen)(img, mask)
    assert train.shape == ref.shape and not torch.allclose(train, ref, atol=1e-3)
    assert torch.equal(tmask, vmask)  # image only


def test_augment_primitives_are_reproducible_and_in_range():
    img = np.random.default_rng(3).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    a = T.augment(img, "all", torch.Generator().manual_seed(5))
    b = T.augment(img, "all", torch.Generator().manual_seed(5))
    assert a.dtype == np.uint8 and a.shape == img.shape and np.array_equal(a, b)
    # a zero-strength color jitter is the identity (up to rounding)
    same = T.color_jitter(img, torch.Generator().manual_seed(0), 0, 0, 0, 0)
    assert np.abs(same.astype(int) - img).max() <= 1
    # brightness 0.3 scales by a factor in [0.7, 1.3]
    gray = np.full((4, 4, 3), 100, np.uint8)
    out = T.color_jitter(gray, torch.Generator().manual_seed(1), 0.3, 0, 0, 0)
    assert 70 <= out[0, 0, 0] <= 130 and out[0, 0, 0] != 100


def test_bad_transform_settings():
    """The run schema's limits (config/run.py), one line naming the key."""
    with pytest.raises(ConfigError, match="key 'augmentation' is 'mixup'; allowed: none, blur, color_jitter"):
        T.SampleTransform({"augmentation": "mixup"})
    with pytest.raises(ConfigError, match="key 'flip_prob' must be between 0 and 1, got 2"):
        T.SampleTransform({"flip_prob": 2})
    with pytest.raises(ConfigError, match="key 'resolution' must be at least 1, got 0"):
        T.SampleTransform({"resolution": 0})
    with pytest.raises(ConfigError, match=r"key 'mean' must be a list of 3 numbers \(one per RGB channel\), got \[0.5\]"):
        T.SampleTransform({"mean": [0.5]})
    with pytest.raises(ConfigError, match=r"key 'std' must hold 3 positive numbers, got \[0.5, 0, 0.5\]"):
        T.SampleTransform({"std": [0.5, 0, 0.5]})


def test_dataset_applies_augmentation_on_train_split_only(tmp_path):
    for split in ("train", "test"):
        for d, arr in (("images", np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)),
                       ("masks", np.tile(np.array([255] * 8 + [0] * 24, np.uint8), (32, 1)))):
            os.makedirs(tmp_path / d / split, exist_ok=True)
            cv2.imwrite(str(tmp_path / d / split / "a.png"), arr)
    spec = {"adapter": "folder", "root": str(tmp_path), "images": "images", "masks": "masks", "split_dirs": True}
    cfg = {"resolution": 32, "mask_size": 32, "flip_prob": 1.0, "augmentation": "blur"}
    plain = build_dataset(spec, "test", {**cfg, "augmentation": "none", "flip_prob": 0.0})[0]
    test_item = build_dataset(spec, "test", cfg)[0]
    train_item = build_dataset(spec, "train", cfg)[0]
    assert torch.equal(test_item["image"], plain["image"]) and torch.equal(test_item["mask"], plain["mask"])
    assert torch.equal(train_item["mask"], torch.flip(plain["mask"], dims=[2]))
    assert not torch.allclose(train_item["image"], torch.flip(plain["image"], dims=[2]), atol=1e-3)
