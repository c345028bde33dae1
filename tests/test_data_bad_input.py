"""Every kind of bad input gives a DataError naming the file and the problem."""
import logging
import os

import cv2
import numpy as np
import pytest

from declip_plugin.errors import DeclipError

from declip_plugin.data import build_dataset
from declip_plugin.data import images as dio
from declip_plugin.errors import DataError

SMALL = {"resolution": 32, "mask_size": 16, "include_real": False}  # localization data: fakes only


def write(path, array, params=()):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array, list(params))
    return str(path)


def image(seed=0, h=32, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def mask(h=32, w=32):
    m = np.zeros((h, w), np.uint8)
    m[: h // 2] = 255
    return m


def truncate(path, keep=0.5):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


def folder(tmp_path, n=3):
    """images/NNN.png with masks/NNN.png (normal polarity)."""
    for i in range(n):
        write(tmp_path / "images" / f"{i:03d}.png", image(i))
        write(tmp_path / "masks" / f"{i:03d}.png", mask())
    return {"adapter": "folder", "root": str(tmp_path), "images": "images", "masks": "masks"}


def load_all(ds):
    return [ds[i] for i in range(len(ds))]


def test_unreadable_image(tmp_path):
    spec = folder(tmp_path)
    bad = tmp_path / "images" / "001.png"
    bad.write_bytes(b"this is not an image at all")
    ds = build_dataset(spec, "test", SMALL)
    with pytest.raises(DataError, match=r"image .*001\.png cannot be decoded"):
        load_all(ds)


def test_empty_and_missing_image(tmp_path):
    spec = folder(tmp_path)
    (tmp_path / "images" / "000.png").write_bytes(b"")
    ds = build_dataset(spec, "test", SMALL)
    with pytest.raises(DataError, match=r"000\.png is empty"):
        ds[0]
    os.remove(tmp_path / "images" / "001.png")
    with pytest.raises(DataError, match=r"001\.png does not exist"):
        ds[1]


def test_truncated_png_image(tmp_path):
    spec = folder(tmp_path)
    truncate(tmp_path / "images" / "002.png")
    ds = build_dataset(spec, "test", SMALL)
    ds[0]
    with pytest.raises(DataError, match=r"image .*002\.png is truncated"):
        ds[2]


def test_truncated_jpeg_image(tmp_path):
    # OpenCV decodes a cut JPEG with only a warning: the end-of-image check must catch it
    path = write(tmp_path / "images" / "a.jpg", image(1, 64, 64), (cv2.IMWRITE_JPEG_QUALITY, 95))
    write(tmp_path / "masks" / "a.png", mask(64, 64))
    truncate(path, 0.7)
    ds = build_dataset({"adapter": "folder", "root": str(tmp_path), "images": "images", "masks": "masks"}, "test", SMALL)
    with pytest.raises(DataError, match=r"image .*a\.jpg is truncated"):
        ds[0]


def test_truncated_mask(tmp_path):
    spec = folder(tmp_path)
    truncate(tmp_path / "masks" / "001.png", 0.6)
    ds = build_dataset(spec, "test", SMALL)
    with pytest.raises(DataError, match=r"mask .*masks.001\.png is truncated"):
        ds[1]


def test_mask_aspect_ratio_mismatch(tmp_path):
    spec = folder(tmp_path)
    write(tmp_path / "masks" / "000.png", mask(32, 48))
    write(tmp_path / "masks" / "001.png", mask(64, 64))  # other size, same aspect: fine
    ds = build_dataset(spec, "test", SMALL)
    with pytest.raises(DataError, match=r"000\.png: mask 48x32 does not match image 32x32"):
        ds[0]
    assert ds[1]["mask"].shape == (1, 16, 16)


def test_non_binary_mask(tmp_path):
    spec = folder(tmp_path)
    write(tmp_path / "masks" / "002.png", np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1)))
    ds = build_dataset(spec, "test", SMALL)
    with pytest.raises(DataError, match=r"mask .*002\.png is not binary.*masks must be binary black/white"):
        ds[2]


def test_binary_rule_tolerates_noise_and_label_maps():
    m = mask()
    noisy = m.copy()
    noisy[0, :5] = 128  # 5 of 1024 pixels in between (< 1%)
    out = dio.binarize_mask(noisy)
    assert out[0, 0] == 1 and out[-1, 0] == 0
    assert dio.binarize_mask(m // 255).sum() == m.size // 2  # a 0/1 label map
    assert dio.binarize_mask(m, polarity="inverted").sum() == m.size // 2
    assert (dio.binarize_mask(m, polarity="inverted") == 1 - dio.binarize_mask(m)).all()
    mid = m.copy()
    mid[:, :1] = 128  # 32 of 1024 = 3% in between
    with pytest.raises(DataError, match="not binary"):
        dio.binarize_mask(mid, "x.png")


def test_jpeg_mask_is_accepted(tmp_path):
    spec = folder(tmp_path)
    os.remove(tmp_path / "masks" / "000.png")
    write(tmp_path / "masks" / "000.jpg", mask(), (cv2.IMWRITE_JPEG_QUALITY, 90))
    ds = build_dataset(spec, "test", SMALL)
    assert ds[0]["mask"].sum() == 16 * 8


def test_manipulated_image_without_mask(tmp_path):
    spec = folder(tmp_path)
    os.remove(tmp_path / "masks" / "001.png")
    with pytest.raises(DataError, match=r"manipulated image .*001\.png has no mask \(expected .*masks.001\.png\)"):
        build_dataset(spec, "test", SMALL)
    ds = build_dataset(spec, "test", {**SMALL, "skip_bad_files": True})
    assert len(ds) == 2 and [os.path.basename(p) for p, _ in ds.skipped] == ["001.png"]


def test_empty_split_names_the_directory(tmp_path):
    root = tmp_path / "dolos_data"
    write(root / "celebahq" / "fake" / "lama" / "images" / "train" / "0.png", image())
    write(root / "celebahq" / "fake" / "lama" / "masks" / "train" / "0.png", mask())
    cfg = {**SMALL, "data_root": str(tmp_path)}
    with pytest.raises(DataError, match=r"no manipulated images found for split 'test' in .*lama.images.test"):
        build_dataset("dolos-lama", "test", cfg)
    with pytest.raises(DataError, match=r"no real images .*real.train"):
        build_dataset("dolos-lama", "train", {**cfg, "include_real": True})
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"in .*empty"):
        build_dataset({"adapter": "folder", "root": str(tmp_path), "images": "empty"}, "test", SMALL)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError) as err:
        build_dataset("dolos-lamma", "train", SMALL)
    msg = str(err.value)
    assert "unknown dataset 'dolos-lamma'" in msg
    assert "dolos-ldm" in msg and "autosplice-75" in msg
    assert "did you mean 'dolos-lama'" in msg


def test_skip_bad_files_checks_up_front_and_logs(tmp_path, caplog):
    spec = folder(tmp_path, n=5)
    truncate(tmp_path / "images" / "000.png")
    (tmp_path / "images" / "001.png").write_bytes(b"garbage")
    write(tmp_path / "masks" / "002.png", np.full((32, 32), 128, np.uint8))
    write(tmp_path / "masks" / "003.png", mask(32, 64))
    with caplog.at_level(logging.WARNING, logger="declip_plugin.data.base"):
        ds = build_dataset(spec, "test", {**SMALL, "skip_bad_files": True})
    assert [os.path.basename(p) for p, _, _ in ds.samples] == ["004.png"]
    reasons = dict((os.path.basename(p), r) for p, r in ds.skipped)
    assert set(reasons) == {"000.png", "001.png", "002.png", "003.png"}
    assert "truncated" in reasons["000.png"] and "cannot be decoded" in reasons["001.png"]
    assert "not binary" in reasons["002.png"] and "does not match image" in reasons["003.png"]
    assert "skipped 4 bad file(s)" in caplog.text and "000.png" in caplog.text
    assert ds[0]["name"].endswith("004.png")

    # without skip_bad_files the same data constructs, and the error comes with the sample
    strict = build_dataset(spec, "test", SMALL)
    assert len(strict) == 5
    with pytest.raises(DataError, match="truncated"):
        strict[0]


def test_skip_bad_files_with_nothing_left(tmp_path):
    spec = folder(tmp_path, n=1)
    truncate(tmp_path / "images" / "000.png")
    with pytest.raises(DataError, match=r"no manipulated images found .*1 skipped"):
        build_dataset(spec, "test", {**SMALL, "skip_bad_files": True})


def test_unknown_adapter_and_bad_split_rule(tmp_path):
    with pytest.raises(DeclipError, match=r"unknown dataset adapter 'dolo'.*did you mean 'dolos'"):
        build_dataset({"adapter": "dolo", "root": "x"}, "train", SMALL)
    spec = folder(tmp_path)
    with pytest.raises(Exception, match="split must be 'all' or 'hash'"):
        build_dataset({**spec, "split": "random"}, "test", SMALL)
    with pytest.raises(Exception, match="unknown split"):
        build_dataset(spec, "training", SMALL)
