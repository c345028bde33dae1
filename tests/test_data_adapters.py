"""The dataset adapters on small data generated in tmp_path."""
import json
import os

import cv2
import numpy as np
import pytest
import torch

from declip_plugin.config import RunConfig
from declip_plugin.data import build_dataset, collate_fn, dataset_spec, list_datasets
from declip_plugin.data.autosplice import AutoSpliceAdapter
from declip_plugin.data.base import hash_split
from declip_plugin.data.deepfakebench_json import DeepfakeBenchJsonAdapter, mask_path_of
from declip_plugin.data.dolos import DolosAdapter
from declip_plugin.data.folder import FolderAdapter
from declip_plugin.errors import DataError

SMALL = {"resolution": 32, "mask_size": 16, "include_real": False}  # localization data: fakes only


def write(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return str(path)


def image(seed=0, h=32, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def half_mask(h=32, w=32, value=255):
    """Left half set to ``value`` (the rest 255 - value)."""
    m = np.full((h, w), 255 - value, np.uint8)
    m[:, : w // 2] = value
    return m


def make_dolos(root, generator="lama", splits=("train", "valid", "test"), n=3, n_real=2):
    for split in splits:
        for i in range(n):
            write(root / "celebahq" / "fake" / generator / "images" / split / f"{i:03d}.png", image(i))
            # Dolos masks are inverted: black (0) = manipulated, here the left half
            write(root / "celebahq" / "fake" / generator / "masks" / split / f"{i:03d}.png", half_mask(value=0))
        for i in range(n_real):
            write(root / "celebahq" / "real" / split / f"r{i:03d}.png", image(100 + i))


# ---- dolos ---------------------------------------------------------------------------------

def test_dolos_inverted_mask_is_one_where_the_file_is_black(tmp_path):
    make_dolos(tmp_path / "dolos_data")
    ds = DolosAdapter({"root": str(tmp_path / "dolos_data"), "generator": "lama"}, "train", SMALL)
    assert len(ds) == 3 and ds.split == "train"
    item = ds[0]
    assert item["label"] == 1
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    mask = item["mask"]
    assert mask.shape == (1, 16, 16)
    assert torch.all(mask[0, :, :8] == 1) and torch.all(mask[0, :, 8:] == 0)
    assert item["name"].endswith(os.path.join("images", "train", "000.png"))
    assert item["video"] is None


def test_dolos_named_dataset_valid_alias_and_include_real(tmp_path):
    make_dolos(tmp_path / "dolos_data")
    cfg = {**SMALL, "data_root": str(tmp_path)}
    val = build_dataset("dolos-lama", "valid", cfg)
    assert val.split == "val" and val.name == "dolos-lama"
    assert all(os.sep + "valid" + os.sep in p for p, _, _ in val.samples)
    assert [lab for _, lab, _ in val.samples] == [1, 1, 1]

    det = build_dataset("dolos-lama", "test", {**cfg, "include_real": True})  # include_real auto
    labels = sorted(lab for _, lab, _ in det.samples)
    assert labels == [0, 0, 1, 1, 1]
    real_idx = next(i for i, s in enumerate(det.samples) if s[1] == 0)
    assert torch.count_nonzero(det[real_idx]["mask"]) == 0
    assert det.samples == sorted(det.samples, key=lambda s: s[0])

    loc = build_dataset("dolos-lama", "test", {**cfg, "include_real": True})
    assert len(loc) == 5


def test_data_root_from_environment(tmp_path, monkeypatch):
    make_dolos(tmp_path / "dolos_data", splits=("train",))
    monkeypatch.setenv("DECLIP_DATA_ROOT", str(tmp_path))
    assert len(build_dataset("dolos-lama", "train", SMALL)) == 3


def test_max_samples_is_deterministic_and_keeps_both_labels(tmp_path):
    make_dolos(tmp_path / "d", n=6, n_real=6)
    spec = {"adapter": "dolos", "root": str(tmp_path / "d"), "generator": "lama"}
    a = build_dataset(spec, "train", {**SMALL, "max_samples": 4, "include_real": True})
    b = build_dataset(spec, "train", {**SMALL, "max_samples": 4, "include_real": True})
    assert a.samples == b.samples and len(a) == 4
    assert sorted(s[1] for s in a.samples) == [0, 0, 1, 1]
    c = build_dataset(spec, "train", {**SMALL, "max_samples": 2})
    assert [os.path.basename(s[0]) for s in c.samples] == ["000.png", "001.png"]


# ---- autosplice ----------------------------------------------------------------------------

def make_autosplice(root, stems=("a_b", "cat", "dog_1"), quality=75):
    for k, stem in enumerate(stems):
        write(root / f"Forged_JPEG{quality}" / f"{stem}_{k + 3}.jpg", image(k))
        write(root / "Mask" / f"{stem}_mask.png", half_mask(value=255))


def test_autosplice_mask_naming_strips_last_underscore(tmp_path):
    make_autosplice(tmp_path / "AutoSplice")
    ds = AutoSpliceAdapter({"root": str(tmp_path / "AutoSplice"), "quality": 75, "split": "all"}, "test", SMALL)
    pairs = {os.path.basename(p): os.path.basename(m) for p, _, m in ds.samples}
    assert pairs["a_b_3.jpg"] == "a_b_mask.png"
    assert pairs["dog_1_5.jpg"] == "dog_1_mask.png"
    item = ds[0]
    # normal polarity: white = manipulated (left half)
    assert torch.all(item["mask"][0, :, :8] == 1) and torch.all(item["mask"][0, :, 8:] == 0)


def test_autosplice_hash_split_partitions_and_is_stable(tmp_path):
    stems = tuple(f"img{i}" for i in range(30))
    for q in (75, 90):
        make_autosplice(tmp_path / "AS", stems, quality=q)
    seen = {75: {}, 90: {}}
    for q in (75, 90):
        for split in ("train", "val", "test"):
            try:
                ds = build_dataset({"adapter": "autosplice", "root": str(tmp_path / "AS"), "quality": q}, split, SMALL)
            except DataError:
                continue
            for p, _, _ in ds.samples:
                seen[q][os.path.basename(p)] = split
    assert len(seen[75]) == 30  # every image in exactly one split
    assert set(seen[75].values()) >= {"train", "test"} or set(seen[75].values()) >= {"train", "val"}
    assert seen[75] == seen[90]  # the JPEG versions of an image share a split
    for name, split in seen[75].items():
        assert hash_split(name.rsplit("_", 1)[0]) == split


# ---- folder --------------------------------------------------------------------------------

def test_folder_suffix_match_split_dirs_and_real(tmp_path):
    for split in ("train", "val"):
        for i in range(2):
            write(tmp_path / "fake" / split / f"x{i}.jpg", image(i))
            write(tmp_path / "m" / split / f"x{i}_gt.png", half_mask(value=255))
        write(tmp_path / "real" / split / "r0.png", image(9))
    spec = {"adapter": "folder", "root": str(tmp_path), "images": "fake", "masks": "m", "real": "real",
            "mask_match": "suffix", "mask_suffix": "_gt", "split_dirs": True}
    ds = build_dataset(spec, "val", {**SMALL, "include_real": True})
    assert [(os.path.basename(p), lab, m and os.path.basename(m)) for p, lab, m in ds.samples] == [
        ("x0.jpg", 1, "x0_gt.png"), ("x1.jpg", 1, "x1_gt.png"), ("r0.png", 0, None)]
    batch = collate_fn([ds[i] for i in range(len(ds))])
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["label"].tolist() == [1, 1, 0] and batch["label"].dtype == torch.long
    assert batch["mask"].shape == (3, 1, 16, 16)
    assert batch["mask"][2].sum() == 0 and batch["mask"][0].sum() == 16 * 8
    assert len(batch["name"]) == 3 and batch["video"] == [None, None, None]


def test_folder_inverted_same_stem_and_strip_last_underscore(tmp_path):
    write(tmp_path / "img" / "q_1.png", image(1))
    write(tmp_path / "msk" / "q_1.png", half_mask(value=0))
    write(tmp_path / "msk" / "q_mask.png", half_mask(value=255))
    base = {"root": str(tmp_path), "images": "img", "masks": "msk"}
    inv = FolderAdapter({**base, "mask_polarity": "inverted"}, "test", SMALL)
    assert torch.all(inv[0]["mask"][0, :, :8] == 1) and inv[0]["mask"].sum() == 16 * 8
    strip = FolderAdapter({**base, "mask_match": "strip_last_underscore"}, "test", SMALL)
    assert os.path.basename(strip.samples[0][2]) == "q_mask.png"


def test_folder_without_masks_is_detection_only(tmp_path):
    write(tmp_path / "img" / "a.png", image(1))
    write(tmp_path / "img" / "b.png", image(2))
    ds = FolderAdapter({"root": str(tmp_path), "images": "img"}, "test", {**SMALL, "include_real": True})
    assert ds.has_masks is False and ds[0]["mask"] is None
    assert collate_fn([ds[0], ds[1]])["mask"] is None
    with pytest.raises(DataError, match="has no masks, but detector 'declip' trains on masks"):
        FolderAdapter({"root": str(tmp_path), "images": "img"}, "train",
                      RunConfig.of({**SMALL, "model_name": "declip"}).replace(require_masks=True))


def test_collate_mixed_masks_marks_missing():
    a = {"image": torch.zeros(3, 4, 4), "label": 1, "mask": torch.ones(1, 2, 2), "name": "a", "video": None}
    b = {"image": torch.zeros(3, 4, 4), "label": 1, "mask": None, "name": "b", "video": None}
    out = collate_fn([a, b])
    assert out["mask"].shape == (2, 1, 2, 2) and out["mask"][1].sum() == 0
    assert out["mask_valid"].tolist() == [True, False]


# ---- deepfakebench_json --------------------------------------------------------------------

def make_dfb(root, nested=False):
    frames = {}
    for label, video in (("FF-real", "000"), ("FF-DF", "000_003")):
        kind = "original" if label == "FF-real" else "manipulated"
        paths = []
        for idx in (10, 2, 1):  # deliberately out of order
            rel = f"{kind}/frames/{video}/{idx}.png"
            write(root / rel, image(idx))
            if label == "FF-DF":
                write(root / f"{kind}/masks/{video}/{idx}.png", half_mask(value=255))
            paths.append(rel)
        frames[label] = {video: {"label": label, "frames": paths}}
    info = {"FF-DF": {}}
    for label, videos in frames.items():
        info["FF-DF"][label] = {
            split: ({"c23": videos, "c40": {}} if nested else videos) for split in ("train", "val", "test")
        }
    path = root / "FF-DF.json"
    path.write_text(json.dumps(info))
    return path


@pytest.mark.parametrize("nested", [False, True])
def test_deepfakebench_json_frames_masks_and_videos(tmp_path, nested):
    path = make_dfb(tmp_path, nested)
    spec = {"json": str(path), "rgb_dir": str(tmp_path), "label_dict": {"FF-real": 0, "FF-DF": 1}}
    ds = DeepfakeBenchJsonAdapter(spec, "valid", {**SMALL, "include_real": True})
    names = [os.path.relpath(p, tmp_path) for p, _, _ in ds.samples]
    assert names == [os.path.join("manipulated", "frames", "000_003", f"{i}.png") for i in (1, 2, 10)] + [
        os.path.join("original", "frames", "000", f"{i}.png") for i in (1, 2, 10)]
    assert [s[1] for s in ds.samples] == [1, 1, 1, 0, 0, 0]
    assert all(os.sep + "masks" + os.sep in m for _, lab, m in ds.samples if lab == 1)
    assert ds.videos[0] == "FF-DF/FF-DF/000_003" and ds.videos[-1] == "FF-DF/FF-real/000"
    item = ds[0]
    # masks at resolution (32), not mask_size (16): DeepfakeBench's loader resizes them so
    assert item["video"] == "FF-DF/FF-DF/000_003" and item["mask"].shape == (1, 32, 32) and item["mask"].sum() == 32 * 16
    assert ds[5]["mask"].sum() == 0
    # localization default: fake frames only
    loc = DeepfakeBenchJsonAdapter(spec, "train", SMALL)
    assert [s[1] for s in loc.samples] == [1, 1, 1]


def test_deepfakebench_json_folder_and_errors(tmp_path):
    make_dfb(tmp_path)
    spec = {"adapter": "deepfakebench_json", "dataset_json_folder": str(tmp_path), "dataset": "FF-DF",
            "rgb_dir": str(tmp_path), "label_dict": {"FF-real": 0, "FF-DF": 1}, "with_mask": False}
    ds = build_dataset(spec, "test", {**SMALL, "include_real": True})
    assert ds.has_masks is False and ds[0]["mask"] is None
    with pytest.raises(DataError, match="not in label_dict"):
        build_dataset({**spec, "label_dict": {"FF-DF": 1}}, "test", {**SMALL, "include_real": True})
    assert mask_path_of("a/frames/v/frames/1.png") == "a/frames/v/masks/1.png"
    assert mask_path_of("a/b/1.png") is None


# ---- catalog -------------------------------------------------------------------------------

def test_catalog_declares_the_expected_datasets():
    names = list_datasets()
    for n in ("dolos-lama", "dolos-ldm", "dolos-pluralistic", "dolos-repaint-p2-9k",
              "autosplice-75", "autosplice-90", "autosplice-100", "demo-telea"):
        assert n in names
    assert names == sorted(names)
    spec = dataset_spec("dolos-repaint-p2-9k")
    assert spec == {"adapter": "dolos", "root": "dolos_data", "source": "celebahq",
                    "generator": "repaint-p2-9k", "mask_polarity": "inverted"}
    spec["root"] = "changed"
    assert dataset_spec("dolos-repaint-p2-9k")["root"] == "dolos_data"  # a copy
    assert dataset_spec("autosplice-100")["quality"] == 100


@pytest.mark.parametrize("entry", ["file", "missing"])
def test_dataset_configs_env_naming_a_file_or_nothing_is_refused(tmp_path, monkeypatch, capsys, entry):
    """$DECLIP_DATASET_CONFIGS lists folders: a file (or a path that does not exist) is named in one line,
    not skipped (which left the user with "unknown dataset")."""
    from declip_plugin.cli import main

    path = tmp_path / "mine.yaml"
    if entry == "file":
        path.write_text("datasets:\n  mine:\n    adapter: folder\n    root: x\n")
    monkeypatch.setenv("DECLIP_DATASET_CONFIGS", str(path))
    work = tmp_path / "work"
    work.mkdir()
    code = main(["train", "--detector_path", "declip_demo", "--train_dataset", "mine", "--test_dataset", "mine",
                 "--data_root", str(tmp_path), "--device", "cpu", "--log_dir", str(work / "logs")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    want = ("names the file {}, but it lists folders of dataset YAMLs" if entry == "file" else
            "names {}, which does not exist; list existing folders of dataset YAMLs")
    assert line.startswith("error: $DECLIP_DATASET_CONFIGS " + want.format(path)), line
    assert list(work.iterdir()) == []


def test_folder_hash_split_partitions_files(tmp_path):
    for i in range(20):
        write(tmp_path / "img" / f"f{i}.png", image(i, 8, 8))
    spec = {"adapter": "folder", "root": str(tmp_path), "images": "img", "split": "hash",
            "split_ratios": [0.5, 0.25, 0.25]}
    cfg = {**SMALL, "include_real": True}
    parts = {}
    for split in ("train", "val", "test"):
        try:
            parts[split] = {p for p, _, _ in build_dataset(spec, split, cfg).samples}
        except DataError:
            parts[split] = set()
    assert sum(len(v) for v in parts.values()) == 20
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])
    assert len(parts["train"]) >= 5
