"""Against a real DeepfakeBench checkout: export the demo data, run the checkout's own
training/test.py through our launcher with model_name declip, find DeepfakeBench's metrics and
our localization metrics.

Runs only when $DEEPFAKEBENCH_ROOT names a checkout (git clone https://github.com/SCLBD/DeepfakeBench).
The child runs under $DEEPFAKEBENCH_PYTHON (default: this interpreter), which needs DeepfakeBench's
requirements and this package (docs/deepfakebench.md). $DEEPFAKEBENCH_CPU=0 runs without --cpu
(on a GPU machine with dlib's landmark file in place). The checkout is not written to: results go
to pytest's tmp folder and the child runs with PYTHONDONTWRITEBYTECODE=1.

    DEEPFAKEBENCH_ROOT=/path/to/DeepfakeBench DEEPFAKEBENCH_PYTHON=/path/to/dfbenv/bin/python \\
        python -m pytest tests/test_integration_dfb_real.py -v
"""
import glob
import json
import os
import pickle

import pytest

ROOT = os.environ.get("DEEPFAKEBENCH_ROOT")
pytestmark = pytest.mark.skipif(
    not ROOT, reason="DEEPFAKEBENCH_ROOT is not set: no DeepfakeBench checkout to run against "
                     "(set it to a clone of SCLBD/DeepfakeBench, and DEEPFAKEBENCH_PYTHON to an interpreter "
                     "with its requirements)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    from declip_plugin import build_detector
    from declip_plugin.config import load_yaml
    from declip_plugin.data.demo import make_demo_data
    from declip_plugin.integrations import export_dfb, validate_checkout

    validate_checkout(ROOT)
    tmp = tmp_path_factory.mktemp("dfb_real")
    make_demo_data(str(tmp / "data" / "demo"), n_train=2, n_val=1, n_test=3, size=64)
    summary = export_dfb("demo-telea", str(tmp / "export"), {"data_root": str(tmp / "data"), "bench_root": ROOT})
    detector = build_detector(load_yaml(summary["yaml"]))
    ckpt = str(tmp / "declip_demo.pth")
    torch.save(detector.state_dict(), ckpt)  # the format DeepfakeBench's test.py loads (strict=True)
    return tmp, summary, ckpt


def _run(tmp, summary, ckpt, lmdb, name):
    from declip_plugin.integrations import launch

    results = tmp / name
    rc = launch(ROOT, "test", ["--detector_path", summary["yaml"], "--test_dataset", "demo-telea",
                               "--weights_path", ckpt],
                cpu=os.environ.get("DEEPFAKEBENCH_CPU", "1") != "0", data_dir=summary["out_dir"], lmdb=lmdb,
                results_dir=str(results), overrides={"workers": 0, "test_batchSize": 4},
                env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert rc == 0
    (folder,) = glob.glob(str(results / "declip_*" / "test" / "demo-telea"))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        dfb_metrics = pickle.load(f)
    with open(os.path.join(folder, "localization_metrics.json"), encoding="utf-8") as f:
        loc = json.load(f)["metrics"]
    return dfb_metrics, loc


def test_checkout_test_py_with_declip_on_exported_demo_data(exported):
    tmp, summary, ckpt = exported
    dfb_metrics, loc = _run(tmp, summary, ckpt, None, "results_rgb")
    # DeepfakeBench's own metrics (metrics/utils.py get_test_metrics) over the 6 test images
    assert {"acc", "auc", "eer", "ap", "video_auc", "pred", "label"} <= set(dfb_metrics)
    assert len(dfb_metrics["pred"]) == 6 and sorted(dfb_metrics["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    # ours, from the same forward passes
    assert loc["n_manipulated"] == 3 and loc["n_real"] == 3
    for key in ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc"):
        assert loc[key] is not None
    from declip_plugin.leaderboard import collect

    assert [(e.method, e.dataset) for e in collect([str(tmp / "results_rgb")])] == [("declip", "demo-telea")]


def test_checkout_reads_the_exported_lmdb_alike(exported):
    tmp, summary, ckpt = exported
    if not summary["lmdb"]:
        pytest.skip("the lmdb package is not installed here: no LMDB was exported")
    rgb, loc_rgb = _run(tmp, summary, ckpt, None, "results_rgb2")
    lmdb, loc_lmdb = _run(tmp, summary, ckpt, True, "results_lmdb")
    for label in (0, 1):  # the same images through either store (the loader shuffles them alike)
        a = sorted(rgb["pred"][rgb["label"] == label].tolist())
        b = sorted(lmdb["pred"][lmdb["label"] == label].tolist())
        assert a == pytest.approx(b, abs=1e-5)
    assert loc_lmdb["n_manipulated"] == loc_rgb["n_manipulated"] == 3
    assert loc_lmdb["pixel_ap"] == pytest.approx(loc_rgb["pixel_ap"], abs=1e-3)


def test_checkout_test_py_with_clip_enhanced(exported, tmp_path):
    """The checkout's test.py builds model_name clip_enhanced from its DETECTOR registry and scores
    the export with its own metrics; the checkpoint is in our format (converted by the launcher)."""
    from declip_plugin import build_detector
    from declip_plugin.checkpoints import save_detector_checkpoint
    from declip_plugin.config import load_yaml
    from declip_plugin.integrations import export_dfb, launch

    tmp, _, _ = exported
    summary = export_dfb("demo-telea", str(tmp_path / "export"),
                         {"data_root": str(tmp / "data"), "bench_root": ROOT, "detector": "clip_enhanced_demo"})
    config = load_yaml(summary["yaml"])
    assert config["model_name"] == "clip_enhanced"
    ckpt = save_detector_checkpoint(tmp_path / "clip_enhanced.pth", build_detector(config))
    results = tmp_path / "results"
    rc = launch(ROOT, "test", ["--detector_path", summary["yaml"], "--test_dataset", "demo-telea", "--weights_path", ckpt],
                cpu=os.environ.get("DEEPFAKEBENCH_CPU", "1") != "0", data_dir=summary["out_dir"],
                results_dir=str(results), overrides={"workers": 0, "test_batchSize": 4},
                env={"PYTHONDONTWRITEBYTECODE": "1"})
    assert rc == 0
    (folder,) = glob.glob(str(results / "clip_enhanced_*" / "test" / "demo-telea"))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        dfb_metrics = pickle.load(f)
    assert {"acc", "auc", "eer", "ap", "video_auc", "pred", "label"} <= set(dfb_metrics)
    assert len(dfb_metrics["pred"]) == 6 and sorted(dfb_metrics["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert not os.path.exists(os.path.join(folder, "localization_metrics.json"))  # no mask, no pixel metrics
