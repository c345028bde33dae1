"""One leaderboard per task, the published reference rows of a preset, and the report's summary figure data."""
import pytest

from declip_plugin.protocol.plan import make_plan
from declip_plugin.engine.evaluator import EvalResult, write_results
from declip_plugin.leaderboard import by_task, collect, render, render_by_task
from declip_plugin.report import summary_panels


def _run(root, method, results):
    for ds, (metrics, in_domain) in results.items():
        write_results(root / f"{method}_2026-01-01-00-00-00" / "test" / ds, ds, EvalResult(metrics, []),
                      {"method": method, "in_domain": in_domain})


@pytest.fixture
def runs(tmp_path):
    img = {"iou": 60.0, "f1_best": 0.7, "pixel_auc": 0.9, "empty_gt_fp_rate": 0.1, "auc": 0.9, "ap": 0.9, "eer": 0.2,
           "n_real": 4, "n_fake": 4}
    _run(tmp_path, "declip", {"a": ({**img, "iou": 60.0, "auc": 0.9}, True),
                              "b": ({**img, "iou": 20.0, "auc": 0.7}, False),
                              "c": ({**img, "iou": 30.0, "auc": 0.5}, False)})
    vid = {"auc": 0.8, "video_auc": 0.85, "video_eer": 0.2, "n_real": 4, "n_fake": 4}
    _run(tmp_path, "stan", {"v1": ({**vid, "video_auc": 0.9}, True), "v2": ({**vid, "video_auc": 0.6}, False)})
    return collect([str(tmp_path)])


def test_tasks_split_image_localization_detection_and_video(runs):
    tasks = {task: sorted({e.method for e in mine}) for task, mine, _ in by_task(runs)}
    assert tasks == {"image localization": ["declip"], "image detection": ["declip"], "video detection": ["stan"]}
    text = dict(render_by_task(runs))
    assert "iou a" in text["image localization"] and "auc a" not in text["image localization"]
    assert "auc a" in text["image detection"] and "iou" not in text["image detection"]
    assert "video_auc v1" in text["video detection"] and "declip" not in text["video detection"]


def test_summary_panels_are_the_id_and_ood_means_of_each_tasks_headline(runs):
    panels = {task: (metric, rows) for task, metric, rows in summary_panels(runs)}
    assert panels["image localization"] == ("iou", [("declip", 60.0, 25.0, False)])
    metric, rows = panels["image detection"]
    assert metric == "auc" and rows[0][:2] == ("declip", 0.9) and rows[0][2] == pytest.approx(0.6)
    assert panels["video detection"] == ("video_auc", [("stan", 0.9, 0.6, False)])


def test_dolos_preset_carries_the_papers_published_iou_as_reference_rows(runs):
    (ref,) = make_plan("dolos")["reference"]  # a plan holds a list of reference blocks
    assert ref["metric"] == "iou"
    assert {k: (v["id"], v["ood"]) for k, v in ref["rows"].items()} == {
        "Patch Forensics": (69.3, 20.4), "CLIP-linear": (36.2, 18.5), "DeCLIP ViT-L/14+RN50": (73.8, 34.7),
        "PSCC-Net": (81.0, 21.6)}
    loc = [e for e in runs if e.method == "declip"]
    md = render(loc, reference=ref, columns=(("iou",), ()))
    def cells(line):
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header = cells(md.splitlines()[0])
    row = next(line for line in md.splitlines() if line.startswith("| DeCLIP ViT-L/14+RN50 (published)"))
    got = dict(zip(header, cells(row)))
    assert got["iou ID mean"] == "73.8" and got["iou OOD mean"] == "34.7" and got["iou a"] == ""
    assert "**" not in row  # published rows are never ranked
    assert "not measured by this run" in md
    # the summary figure shows them beside the measured method, flagged as published
    rows = dict((task, rows) for task, _, rows in summary_panels(runs, [ref]))["image localization"]
    assert ("PSCC-Net", 81.0, 21.6, True) in rows and rows[0] == ("declip", 60.0, 25.0, False)
    # a preset without a reference block carries none, and an image-detection table shows no iou reference rows
    assert make_plan("demo")["reference"] == []
    assert "(published)" not in render([e for e in runs if e.method == "declip"], reference=ref, columns=(("auc",), ()))


def test_the_roles_of_the_built_in_metrics_come_from_their_descriptions():
    """metrics/base.py: which metrics a protocol grid and a robustness curve show (MetricInfo.grid / .curve, in
    task / column order), and the heat-maps' metric: the headline of the task the results belong to (a video
    run's frame AUC does not make it an image-detection run)."""
    from declip_plugin.metrics.base import curve_metrics, grid_metrics, lead_metric

    assert grid_metrics() == ["iou", "f1_best", "pixel_auc", "empty_gt_fp_rate", "auc", "ap", "eer", "video_auc"]
    assert grid_metrics({"auc", "eer", "video_auc", "video_eer", "n_real"}) == ["auc", "eer", "video_auc"]
    assert curve_metrics() == ["auc", "ap", "iou", "f1_best", "pixel_auc"]
    assert lead_metric(["auc", "ap", "iou", "f1_best"]) == "iou"
    assert lead_metric(["auc", "video_auc"]) == "video_auc"
    assert lead_metric(["auc", "eer"]) == "auc"
    assert lead_metric(["f1_best", "brier"]) is None  # no task's headline among them
