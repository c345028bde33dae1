"""The synthetic demo set: deterministic, in the Dolos layout, readable by the dolos adapter."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from declip_plugin.data import build_dataset, list_datasets
from declip_plugin.data.demo import METHODS, TRACES, make_demo_data
from declip_plugin.errors import DataError
from tests.conftest import assert_one_line, run_cli

SMALL = dict(size=48, n_train=2, n_val=1, n_test=2)


def digest(root):
    out = {}
    for r, _, files in os.walk(root):
        for f in files:
            p = os.path.join(r, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    summary = make_demo_data(root / "demo", seed=0, **SMALL)
    return root, summary


def test_same_seed_is_byte_identical_other_seed_differs(demo_root, tmp_path):
    root, _ = demo_root
    first = digest(root / "demo")
    make_demo_data(tmp_path / "again", seed=0, **SMALL)
    assert digest(tmp_path / "again") == first
    make_demo_data(tmp_path / "other", seed=1, **SMALL)
    other = digest(tmp_path / "other")
    assert set(other) == set(first)
    images = [k for k in first if k.endswith(".png")]
    assert all(other[k] != first[k] for k in images if "masks" not in k)


def test_layout_counts_and_manifest(demo_root):
    root, summary = demo_root
    base = root / "demo" / "celebahq"
    assert len(METHODS) >= 4 and set(summary["methods"]) == set(METHODS)
    for split, n in (("train", 2), ("valid", 1), ("test", 2)):
        assert len(os.listdir(base / "real" / split)) == n
        for m in METHODS:
            assert sorted(os.listdir(base / "fake" / m / "images" / split)) == [f"{i:04d}.png" for i in range(n)]
            assert sorted(os.listdir(base / "fake" / m / "masks" / split)) == [f"{i:04d}.png" for i in range(n)]
    manifest = json.loads((root / "demo" / "demo.json").read_text())
    assert manifest["images_per_split"] == {"train": 2, "valid": 1, "test": 2}
    assert summary["files"] == 5 + 5 * 2 * len(METHODS)
    assert (root / "demo" / "README.txt").read_text().startswith("Synthetic demo data")


def test_dolos_adapter_reads_every_method_and_split(demo_root):
    root, _ = demo_root
    cfg = {"data_root": str(root), "resolution": 32, "mask_size": 48, "include_real": True}
    for m in METHODS:
        assert f"demo-{m}" in list_datasets()
        for split, n in (("train", 2), ("val", 1), ("test", 2)):
            ds = build_dataset(f"demo-{m}", split, cfg)
            assert len(ds) == 2 * n and sorted(s[1] for s in ds.samples) == [0] * n + [1] * n
            for item in (ds[i] for i in range(len(ds))):
                area = float(item["mask"].mean())
                if item["label"] == 1:
                    assert 0.03 <= area <= 0.4  # the file is inverted; 1 = manipulated
                else:
                    assert area == 0


def _laplacian_inside_outside(base, m, weight=None):
    inside, outside = [], []
    for split in ("train", "test"):
        for i in range(2):
            img = cv2.imread(str(base / m / "images" / split / f"{i:04d}.png"), cv2.IMREAD_GRAYSCALE)
            manipulated = cv2.imread(str(base / m / "masks" / split / f"{i:04d}.png"), cv2.IMREAD_GRAYSCALE) < 128
            core = cv2.erode(manipulated.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            ring = cv2.dilate(manipulated.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            lap = cv2.Laplacian(img.astype(np.float32), cv2.CV_32F)
            if weight is None:
                lap = np.abs(lap)
            else:  # correlation of the high-pass image with the strongest phase of a periodic pattern
                lap = max((np.abs(cv2.blur(lap * w, (8, 8))) for w in weight), key=lambda a: a[core].mean())
            inside.append(lap[core].mean())
            outside.append(lap[~ring].mean())
    return np.mean(inside), np.mean(outside)


def test_each_method_leaves_its_kind_of_trace(demo_root):
    """removed: less fine texture inside than outside; added: more; periodic: a period-4 pattern inside only."""
    root, _ = demo_root
    base = root / "demo" / "celebahq" / "fake"
    size = cv2.imread(str(base / METHODS[0] / "images" / "test" / "0000.png")).shape[0]
    assert set(TRACES) == set(METHODS)
    idx = np.arange(size)
    checkers = [np.where((((idx + p) // 2)[:, None] + ((idx + p) // 2)[None, :]) % 2 == 0, 1.0, -1.0).astype(np.float32)
                for p in range(4)]
    for m in METHODS:
        if TRACES[m] == "removed":
            inside, outside = _laplacian_inside_outside(base, m)
            assert inside < 0.6 * outside, m
        elif TRACES[m] == "added":
            inside, outside = _laplacian_inside_outside(base, m)
            assert inside > 1.3 * outside, m
        else:
            inside, outside = _laplacian_inside_outside(base, m, weight=checkers)
            assert inside > 3 * outside, m


def test_refuses_a_foreign_non_empty_directory(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        make_demo_data(tmp_path, **SMALL)
    assert (tmp_path / "keep.txt").exists()


def test_rerun_replaces_a_previous_demo_set(tmp_path):
    make_demo_data(tmp_path / "d", size=32, n_train=2, n_val=1, n_test=1, methods=("blur",))
    make_demo_data(tmp_path / "d", size=32, n_train=1, n_val=1, n_test=1, methods=("blur",))
    assert os.listdir(tmp_path / "d" / "celebahq" / "real" / "train") == ["0000.png"]
    assert not (tmp_path / "d" / "celebahq" / "fake" / "telea").exists()


def test_demo_localization_configs_test_on_reals_too_and_train_on_fakes_only(demo_root):
    """The demo detectors train on manipulated images only (the paper) but their test splits hold the
    real images as well, so detection AUC/AP/EER and the real-image false-positive rate exist."""
    from declip_plugin.config import load_run_config
    from declip_plugin.detectors import build_detector
    from declip_plugin.engine.loaders import build_split, data_config
    from declip_plugin.engine.run import build_test_sets

    root, _ = demo_root
    for name in ("declip_demo", "clip_linear_demo", "xception_demo"):
        cfg = load_run_config(name, "test", {"data_root": str(root), "test_dataset": ["demo-grid"]})
        cfg = data_config(cfg, build_detector(cfg))
        test = build_test_sets(cfg)["demo-grid"]
        labels = sorted(s[1] for s in test.samples)
        assert labels == [0] * SMALL["n_test"] + [1] * SMALL["n_test"], name
        train = build_split(["demo-grid"], "train", cfg)
        assert {s[1] for s in train.samples} == {1}, name


# --- `declip make-demo-data` with bad input ---------------------------------------------------------------
def test_make_demo_data_into_a_file(tmp_path, capsys):
    (tmp_path / "demo").write_text("keep")
    code, _, err = run_cli(["make-demo-data", tmp_path / "demo"], capsys)
    assert code == 2
    assert_one_line(err, "make-demo-data OUT", "is a file")
