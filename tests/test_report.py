"""`declip report`: one self-contained HTML file (no external reference), rendered in headless Chromium."""
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from declip_plugin.data.demo import make_demo_data
from declip_plugin.report import external_references, pick_examples, write_report


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from declip_plugin.engine.run import train

    root = tmp_path_factory.mktemp("report")
    make_demo_data(root / "data" / "demo", seed=4, size=64, n_train=4, n_val=2, n_test=4, methods=("telea", "grid"))
    cfg = {"model_name": "declip", "backbone": "declip-tiny-rn112", "pretrained": "none", "feature_layer": "layer1",
           "resolution": 112, "mask_size": 64,
           "decoder_type": "linear", "fully_supervised": True, "fix_backbone": True, "train_batchSize": 4,
           "test_batchSize": 4, "workers": 0, "nEpochs": 1, "early_stopping": {"enabled": False},
           "data_root": str(root / "data"), "log_dir": str(root / "logs"), "device": "cpu",
           "train_dataset": ["demo-telea"], "test_dataset": ["demo-telea", "demo-grid"]}
    import yaml

    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return root, train(str(root / "tiny.yaml"))


def test_report_is_self_contained_with_tables_and_mask_galleries(tiny_run):
    root, run_dir = tiny_run
    out = write_report([run_dir], out=str(root / "report.html"))
    text = open(out, encoding="utf-8").read()
    assert external_references(text) == []
    assert "http://" not in text and "https://" not in text
    assert '<table class="leaderboard">' in text
    for ds in ("demo-telea", "demo-grid"):
        assert f"<h3>{ds}</h3>" in text
    # best, median and worst of each test set, each one inlined strip input | GT | prediction | overlay
    assert text.count("data:image/jpeg;base64,") == 6
    for label in ("best: IoU", "median: IoU", "worst: IoU"):
        assert text.count(label) == 2


def test_external_reference_check_catches_links():
    assert external_references('<img src="data:image/png;base64,AAA"><a href="#x">') == []
    assert external_references('<img src="http://example.com/a.png">')
    assert external_references('<link href="style.css">')
    assert external_references("<style>body{background:url(bg.png)}</style>")


def test_examples_are_best_median_worst_of_the_fakes():
    rows = [{"label": "1", "iou": str(v)} for v in (50, 10, 90, 30, 70)] + [{"label": "0", "iou": "100"}]
    assert [(lab, int(float(r["iou"]))) for lab, _, r in pick_examples(rows)] == [("best", 90), ("median", 50),
                                                                                 ("worst", 10)]


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(_browser() is None, reason="no headless browser installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    root, run_dir = tiny_run
    out = write_report([run_dir], out=str(tmp_path / "report.html"))
    shot = tmp_path / "shot.png"
    proc = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,1600", f"--screenshot={shot}", "file://" + os.path.abspath(out)],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1600, 1200)
    # the page drew something: the inlined gallery images give many distinct colours
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 500
