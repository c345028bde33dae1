"""`declip report`: one self-contained HTML file (no external reference), rendered in headless Chromium; bad
input (a missing folder, no results, a truncated metrics.json, --out that cannot be written): one line, no
report."""
import json
import os
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from tests.dfb_support import in_ci
from tests.conftest import assert_one_line, files_under, make_world, run_cli, tiny_rn112_config
from declip_plugin.report import external_references, pick_examples, write_report


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from declip_plugin.engine.run import train

    root = tmp_path_factory.mktemp("report")
    cfg = tiny_rn112_config(train_batchSize=4, test_batchSize=4, workers=0, nEpochs=1, early_stopping={"enabled": False},
                            data_root=str(root / "data"), log_dir=str(root / "logs"), device="cpu",
                            train_dataset=["demo-telea"], test_dataset=["demo-telea", "demo-grid"],
                            test_include_real=True)
    make_world(root, cfg, seed=4, size=64, n_train=4, n_val=2, n_test=4, methods=("telea", "grid"))
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
    """Headless Chromium; in CI (CI=1 or CI=true) installed from the Debian packages when missing (never a skip there)."""
    def find():
        for name in ("chromium", "chromium-browser", "google-chrome"):
            if shutil.which(name):
                return shutil.which(name)
        return None

    if find() is None and in_ci():
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            subprocess.run(cmd, check=True, capture_output=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    path = find()
    if path is None:
        if in_ci():
            pytest.fail("CI: headless Chromium is required (apt-get install -y chromium)")
        pytest.skip("no headless browser installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def tiny_video_run(tmp_path_factory):
    """A one-epoch timesformer on a few tiny demo videos: a video run for the report's strips."""
    import yaml

    from declip_plugin.data.demo_video import make_demo_videos
    from declip_plugin.engine.run import train

    root = tmp_path_factory.mktemp("video")
    make_demo_videos(root / "data" / "demo_video", size=32, n_frames=8, n_train=2, n_val=1, n_test=2,
                     methods=("flicker", "jitter"))
    cfg = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "configs", "detector",
                                           "timesformer_demo.yaml"), encoding="utf-8"))
    cfg.update({"resolution": 64, "clip_size": 4, "frame_num": {"train": 8, "test": 8}, "nEpochs": 1,
                "data_root": str(root / "data"), "log_dir": str(root / "logs"), "device": "cpu",
                "train_dataset": ["demo-video-flicker"], "in_domain": ["demo-video-flicker"],
                "test_dataset": ["demo-video-flicker", "demo-video-jitter"]})
    (root / "tsf.yaml").write_text(yaml.safe_dump(cfg))
    return train(str(root / "tsf.yaml"))


def test_report_of_images_and_video_puts_the_summary_first_and_a_leaderboard_per_task(tiny_run, tiny_video_run,
                                                                                     tmp_path):
    root, run_dir = tiny_run
    text = open(write_report([run_dir, tiny_video_run], out=str(tmp_path / "r.html")), encoding="utf-8").read()
    assert external_references(text) == []
    order = [text.index(h) for h in ("<h2>Summary</h2>", "<h2>Leaderboards</h2>", "<h3>image localization</h3>",
                                     "<h3>image detection</h3>", "<h3>video detection</h3>", "<h2>Video maps</h2>")]
    assert order == sorted(order)
    first_img = text.index("<img")
    assert text.index("<h2>Summary</h2>") < first_img < text.index("<h2>Leaderboards</h2>")  # the summary figure
    video = text[text.index("<h3>video detection</h3>"):text.index("<h2>Video maps</h2>")]
    assert "tsf" in video and "tiny" not in video.split("</table>")[0]  # the image run is not a video method
    strip = text[text.index("<h2>Video maps</h2>"):]
    assert "video strip" in strip and "demo-video-flicker" in strip and "(manipulated)" in strip


def test_summary_png_is_the_reports_summary_figure(tiny_run, tmp_path, capsys):
    """`declip report --summary_png`: the report's first figure as a PNG file (the README's picture)."""
    from declip_plugin import cli

    root, run_dir = tiny_run
    png = tmp_path / "summary.png"
    assert cli.main(["report", run_dir, "--out", str(tmp_path / "r.html"), "--summary_png", str(png)]) == 0
    assert f"summary figure: {png}" in capsys.readouterr().out
    image = cv2.imread(str(png))
    assert image is not None and image.shape[1] > image.shape[0] > 100 and image.std() > 10
    import base64

    html_text = open(tmp_path / "r.html", encoding="utf-8").read()
    first = html_text[html_text.index("<h2>Summary</h2>"):]
    inlined = base64.b64decode(first.split('src="data:image/png;base64,')[1].split('"')[0])
    assert inlined == png.read_bytes()  # the same figure, byte for byte
    assert cli.main(["report", run_dir, "--summary_png", str(tmp_path)]) == 2  # a folder: one line, nothing written
    assert "--summary_png" in capsys.readouterr().err


_CHECK_IMAGES = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var d = document.createElement('pre'); d.id = 'img-check';
  d.textContent = 'IMAGES ' + imgs.length + ' BROKEN ' + bad.length;
  document.body.appendChild(d);
});
</script></body>"""


def test_report_renders_in_headless_chromium(tiny_run, tiny_video_run, tmp_path):
    """Real headless Chromium: a screenshot that is not blank, and every image of the page decoded."""
    browser = _browser()
    root, run_dir = tiny_run
    out = write_report([run_dir, tiny_video_run], out=str(tmp_path / "report.html"))
    n_images = open(out, encoding="utf-8").read().count("<img")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1200,1600"]
    shot = tmp_path / "shot.png"
    proc = subprocess.run(flags + [f"--screenshot={shot}", "file://" + os.path.abspath(out)],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (1600, 1200)
    # not blank: the summary figure at the top and the inlined images give many distinct colours
    assert len(np.unique(img.reshape(-1, 3)[::7], axis=0)) > 500
    # every image loaded: a copy of the page with a checking script (the report itself has none)
    probe = tmp_path / "probe.html"
    probe.write_text(open(out, encoding="utf-8").read().replace("</body>", _CHECK_IMAGES), encoding="utf-8")
    dom = subprocess.run(flags + ["--virtual-time-budget=10000", "--dump-dom", "file://" + str(probe)],
                         capture_output=True, text=True, timeout=120).stdout
    assert f"IMAGES {n_images} BROKEN 0" in dom, dom[-500:]
    assert n_images >= 8  # summary, heat-map-free run: 6 gallery strips, 1 video strip


# --- bad input: an error exits 2, names what the user gave, and writes no report -------------------------
def test_report_of_a_missing_folder(tmp_path, capsys):
    code, _, err = run_cli(["report", tmp_path / "nothing"], capsys)
    assert code == 2
    assert_one_line(err, "nothing")


def _finished_run(tmp_path):
    folder = tmp_path / "runs" / "r_2026" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"method": "m", "metrics": {"iou": 50.0, "auc": 0.9}}))
    (tmp_path / "runs" / "r_2026" / "run.json").write_text(json.dumps({"name": "m"}))
    return tmp_path / "runs"


def test_report_of_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "a.txt").write_text("hello")
    code, _, err = run_cli(["report", tmp_path / "empty"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "empty"), "nothing to report")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_of_a_truncated_metrics_json(tmp_path, capsys):
    runs = _finished_run(tmp_path)
    metrics = runs / "r_2026" / "test" / "demo" / "metrics.json"
    metrics.write_text(metrics.read_text()[:20])
    code, _, err = run_cli(["report", runs], capsys)
    assert code == 2
    assert_one_line(err, str(metrics))
    assert not (runs / "report.html").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_report_out_that_cannot_be_written(tmp_path, capsys, where):
    runs = _finished_run(tmp_path)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "outdir" if where == "a folder" else tmp_path / "afile" / "report.html"
    if where == "a folder":
        out.mkdir()
    code, _, err = run_cli(["report", runs, "--out", out], capsys)
    assert code == 2
    assert_one_line(err, "--out", str(out))
    assert ".tmp-" not in err
    assert files_under(tmp_path / "outdir") == [] and (tmp_path / "afile").read_text() == "x"
