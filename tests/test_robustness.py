"""Test-time perturbations: image only, deterministic per seed; the robustness sweep's curve files; bad
--perturb and --levels values refused in one line before any work."""
import csv
import json
import os

import numpy as np
import pytest

from declip_plugin.data import perturb
from declip_plugin.data.demo import make_demo_data
from declip_plugin.data.transforms import SampleTransform
from declip_plugin.errors import ConfigError
from tests.conftest import assert_nothing_under, assert_one_line, data_args, run_cli


def _img(seed=0, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("spec", ["jpeg=30", "blur=2", "noise=10", "downscale=3", "jpeg=50,noise=4"])
def test_each_perturbation_changes_the_image_and_keeps_its_shape(spec):
    img = _img()
    out = perturb.apply(img, perturb.parse(spec), seed=1, key="a.png")
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 1.0
    assert np.array_equal(img, _img())  # the input is not modified in place


def test_noise_is_deterministic_per_seed_and_image():
    img, steps = _img(), perturb.parse("noise=8")
    a = perturb.apply(img, steps, seed=3, key="x/0001.png")
    assert np.array_equal(a, perturb.apply(img, steps, seed=3, key="x/0001.png"))
    assert not np.array_equal(a, perturb.apply(img, steps, seed=4, key="x/0001.png"))
    assert not np.array_equal(a, perturb.apply(img, steps, seed=3, key="x/0002.png"))


def test_bad_specs_are_refused_with_the_kinds():
    for bad, msg in (("jpg=50", "jpeg"), ("jpeg=0", "out of range"), ("noise=abc", "not a number"),
                     ("downscale=0.5", "out of range")):
        with pytest.raises(ConfigError, match=msg):
            perturb.parse(bad)


def test_the_test_transform_perturbs_the_image_never_the_mask():
    img = _img(size=96)
    mask = (np.random.default_rng(1).random((96, 96)) > 0.5).astype(np.uint8)
    cfg = {"resolution": 96, "mask_size": 96, "perturb": "noise=20,jpeg=40", "manualSeed": 5}
    clean_img, clean_mask = SampleTransform(cfg, perturb=False)(img, mask, key="k.png")
    p_img, p_mask = SampleTransform(cfg, perturb=True)(img, mask, key="k.png")
    p_img2, _ = SampleTransform(cfg, perturb=True)(img, mask, key="k.png")
    assert np.array_equal(p_mask.numpy(), clean_mask.numpy())
    assert np.array_equal(p_mask.numpy()[0], mask.astype(np.float32))
    assert (p_img - clean_img).abs().mean() > 0.05
    assert np.array_equal(p_img.numpy(), p_img2.numpy())


def test_only_the_test_split_is_perturbed(tmp_path):
    from declip_plugin.data import build_dataset

    make_demo_data(tmp_path / "demo", seed=2, size=64, n_train=2, n_val=2, n_test=2, methods=("telea",))
    cfg = {"data_root": str(tmp_path), "resolution": 64, "mask_size": 64, "perturb": "blur=3"}
    clean = {"data_root": str(tmp_path), "resolution": 64, "mask_size": 64}
    for split, changed in (("test", True), ("val", False)):
        a = build_dataset("demo-telea", split, cfg)[0]
        b = build_dataset("demo-telea", split, clean)[0]
        assert np.array_equal(a["mask"].numpy(), b["mask"].numpy())
        assert (not np.array_equal(a["image"].numpy(), b["image"].numpy())) is changed, split


def test_robustness_sweep_writes_curves(tmp_path):
    from declip_plugin.engine.robustness import sweep

    seen = []

    def fake_test(config, weights, overrides):  # IoU falls with the JPEG level as a real model's would
        seen.append(overrides["perturb"])
        q = 100 if overrides["perturb"] is None else float(overrides["perturb"].split("=")[1])
        run = os.path.join(overrides["log_dir"], f"{overrides['name']}_x")
        os.makedirs(os.path.join(run, "test", "demo-telea"))
        with open(os.path.join(run, "test", "demo-telea", "metrics.json"), "w") as f:
            json.dump({"metrics": {"iou": q * 0.8, "auc": q / 100}}, f)
        return run

    out = sweep("declip_demo", "w.pth", "jpeg", [70, 30], out_dir=str(tmp_path / "r"), test_fn=fake_test)
    assert seen == [None, "jpeg=70", "jpeg=30"]
    rows = list(csv.DictReader(open(out["csv"])))
    iou = [(r["level"], float(r["value"])) for r in rows if r["metric"] == "iou"]
    assert iou == [("0", 80.0), ("70", 56.0), ("30", 24.0)]
    assert sorted(os.path.basename(p) for p in out["plots"]) == ["robustness_jpeg_auc.png", "robustness_jpeg_iou.png"]
    with pytest.raises(ConfigError, match="kinds"):
        sweep("declip_demo", "w.pth", "rain", [1], out_dir=str(tmp_path / "r"), test_fn=fake_test)
    # its own section of the report (engine/robustness.py report_section): the curves' table and plots
    from declip_plugin.report import build_html

    section = build_html([str(tmp_path / "r")]).split(f"<h2>Robustness: {tmp_path / 'r'}</h2>")[1]
    assert "<tr><td>jpeg</td><td>30</td><td>demo-telea</td><td>iou</td><td>24</td></tr>" in section
    assert 'alt="robustness_jpeg_auc.png"' in section and 'alt="robustness_jpeg_iou.png"' in section


# --- bad --perturb and --levels values are refused before any work (the `world`: tests/conftest.py) -------
PERTURB_CASES = [("inf", "blur=inf", "inf"), ("nan", "noise=nan", "nan"), ("not a number", "jpeg=high", "'high'"),
                 ("negative", "blur=-1", "-1"), ("above the range", "downscale=1e9", "1e9"), ("jpeg 0", "jpeg=0", "0"),
                 ("unknown kind", "fog=3", "'fog=3'")]


@pytest.mark.parametrize("case,spec,word", PERTURB_CASES, ids=[c[0] for c in PERTURB_CASES])
def test_perturbation_values_are_refused_before_any_work(world, tmp_path, capsys, case, spec, word):
    code, _, err = run_cli(["test", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                            "--perturb", spec, "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "perturb", word)
    assert_nothing_under(tmp_path / "logs")


def test_robustness_with_a_bad_level(world, tmp_path, capsys):
    code, _, err = run_cli(["robustness", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                            "--kind", "jpeg", "--levels", "90,abc", "--out", tmp_path / "rob", *data_args(world)],
                           capsys)
    assert code == 2
    assert_one_line(err, "abc")
    assert not (tmp_path / "rob").exists()


@pytest.mark.parametrize("levels", ["1,inf", "nan", "2,1e9"])
def test_robustness_levels_out_of_range_are_refused(world, tmp_path, capsys, levels):
    code, _, err = run_cli(["robustness", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                            "--kind", "blur", "--levels", levels, "--out", tmp_path / "rob", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "blur=", "out of range")
    assert not (tmp_path / "rob").exists()
