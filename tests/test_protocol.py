"""`declip protocol`: grids, ID/OOD means, heat-maps, resumability, sweep plots (the real kill and resume
of subprocess jobs: tests/test_cluster_local.py)."""
import json
import os

import pytest

from declip_plugin.commands.protocol import parse_sweep
from declip_plugin.protocol.cells import Protocol
from declip_plugin.protocol.outputs import write_outputs
from declip_plugin.protocol.plan import make_plan
from declip_plugin.errors import ConfigError

TESTS = ["demo-telea", "demo-ns", "demo-noise"]
# a fixed grid: (method, train) -> {test: iou}
FIXED = {
    ("a", "demo-telea"): {"demo-telea": 90.0, "demo-ns": 70.0, "demo-noise": 10.0},
    ("a", "demo-noise"): {"demo-telea": 20.0, "demo-ns": 30.0, "demo-noise": 80.0},
    ("b", "demo-telea"): {"demo-telea": 60.0, "demo-ns": 50.0, "demo-noise": 40.0},
    ("b", "demo-noise"): {"demo-telea": 5.0, "demo-ns": 15.0, "demo-noise": 50.0},
}


def fake_train(calls):
    """A stand-in for engine.run.train that writes the fixed grid as run results."""
    def train(config, overrides, resume=None):
        method = os.path.splitext(os.path.basename(config))[0]
        key = (method, overrides["train_dataset"][0])
        calls.append(key)
        run_dir = os.path.join(overrides["log_dir"], f"{overrides['name']}_2026-01-01-00-00-0{len(calls)}")
        for t in overrides["test_dataset"]:
            os.makedirs(os.path.join(run_dir, "test", t))
            with open(os.path.join(run_dir, "test", t, "metrics.json"), "w") as f:
                json.dump({"dataset": t, "method": overrides["name"], "in_domain": t in (overrides["in_domain"] or []),
                           "metrics": {"iou": FIXED[key][t], "pixel_auc": FIXED[key][t] / 100}}, f)
        return run_dir
    return train


def test_grid_and_id_ood_means_match_a_hand_computation(tmp_path):
    calls = []
    plan = make_plan(methods=["a", "b"], train=["demo-telea", "demo-noise"], test=TESTS)
    p = Protocol(tmp_path / "p", plan)
    assert p.run(train_fn=fake_train(calls)) == 4
    paths = write_outputs(p)
    summary = json.loads((tmp_path / "p" / "grid.json").read_text())
    rows = {(r["method"], r["train"]): r for r in summary["metrics"]["iou"]}
    # by hand: ID = the diagonal (same generator), OOD = the mean of the other two
    assert rows[("a", "demo-telea")]["id_mean"] == 90.0 and rows[("a", "demo-telea")]["ood_mean"] == 40.0
    assert rows[("a", "demo-noise")]["id_mean"] == 80.0 and rows[("a", "demo-noise")]["ood_mean"] == 25.0
    assert rows[("b", "demo-telea")]["id_mean"] == 60.0 and rows[("b", "demo-telea")]["ood_mean"] == 45.0
    assert rows[("b", "demo-noise")]["id_mean"] == 50.0 and rows[("b", "demo-noise")]["ood_mean"] == 10.0
    csv_text = (tmp_path / "p" / "grid_iou.csv").read_text().splitlines()
    assert csv_text[0] == "method,train,demo-telea,demo-ns,demo-noise,id_mean,ood_mean"
    assert csv_text[1] == "a,demo-telea,90,70,10,90,40"
    heatmaps = paths["heatmaps"]
    assert sorted(os.path.basename(h) for h in heatmaps) == ["heatmap_a_iou.png", "heatmap_b_iou.png"]
    for h in heatmaps:
        with open(h, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # a second run keeps every cell: nothing is trained again
    again = Protocol(tmp_path / "p", make_plan(methods=["a", "b"], train=["demo-telea", "demo-noise"],
                                                             test=TESTS))
    assert again.run(train_fn=fake_train(calls)) == 0 and len(calls) == 4


def test_the_report_shows_the_protocols_own_section(tmp_path):
    """report.py assembles; the protocol's section (protocol/section.py) brings its grids and heat-maps."""
    from declip_plugin.report import build_html

    p = Protocol(tmp_path / "p", make_plan(methods=["a", "b"], train=["demo-telea", "demo-noise"], test=TESTS))
    p.run(train_fn=fake_train([]))
    write_outputs(p)
    text = build_html([str(tmp_path / "p")])
    section = text.split(f"<h2>Protocol: {tmp_path / 'p'}</h2>")[1]
    iou = section.split("<h3>iou</h3>")[1].split("</table>")[0]
    assert "<td>a</td><td>demo-telea</td><td>90.0</td><td>70.0</td><td>10.0</td><td>90.0</td><td>40.0</td>" in iou
    assert section.index("<h3>iou</h3>") < section.index("<h3>pixel_auc</h3>")  # the grids in their metrics' order
    assert 'alt="heatmap_a_iou.png"' in section and 'alt="heatmap_b_iou.png"' in section


def test_an_interrupted_cell_is_retrained_and_finished_ones_kept(tmp_path):
    calls = []
    plan = make_plan(methods=["a", "b"], train=["demo-telea"], test=TESTS)
    p = Protocol(tmp_path / "p", plan)
    train = fake_train(calls)

    def dies_on_b(config, overrides, resume=None):
        if "b" in config:
            raise KeyboardInterrupt
        return train(config, overrides, resume)

    with pytest.raises(KeyboardInterrupt):
        p.run(train_fn=dies_on_b)
    assert calls == [("a", "demo-telea")]
    assert p.run(train_fn=train) == 1
    assert calls == [("a", "demo-telea"), ("b", "demo-telea")]


def test_another_plan_in_the_same_folder_is_refused(tmp_path):
    Protocol(tmp_path / "p", make_plan(methods=["a"], train=["demo-telea"], test=TESTS))
    with pytest.raises(ConfigError, match="another protocol"):
        Protocol(tmp_path / "p", make_plan(methods=["b"], train=["demo-telea"], test=TESTS))


def test_sweep_draws_metric_against_value(tmp_path):
    calls = []
    grid = {}

    def train(config, overrides, resume=None):
        layer = overrides["feature_layer"]
        for t in overrides["test_dataset"]:
            grid[(layer, t)] = {"layer2": 80.0, "layer10": 60.0}[layer] - (0 if t == "demo-telea" else 30.0)
        run_dir = os.path.join(overrides["log_dir"], f"{overrides['name']}_2026-01-01-00-00-0{len(calls)}")
        calls.append(layer)
        for t in overrides["test_dataset"]:
            os.makedirs(os.path.join(run_dir, "test", t))
            with open(os.path.join(run_dir, "test", t, "metrics.json"), "w") as f:
                json.dump({"dataset": t, "method": overrides["name"], "metrics": {"iou": grid[(layer, t)]}}, f)
        return run_dir

    key, values = parse_sweep("feature_layer=layer10,layer2")
    p = Protocol(tmp_path / "s", make_plan(methods=["m"], train=["demo-telea"], test=TESTS,
                                                       sweep=(key, values)))
    p.run(train_fn=train)
    paths = write_outputs(p)
    assert any(x.endswith("sweep_feature_layer_iou.png") for x in paths["sweep"])
    lines = (tmp_path / "s" / "sweep_feature_layer.csv").read_text().splitlines()
    assert lines[0] == "method,feature_layer,metric,id_mean,ood_mean"
    assert lines[1:] == ["m,layer2,iou,80,50", "m,layer10,iou,60,30"]  # numeric order of the layers
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_sweep("feature_layer")


def test_unknown_preset_is_refused():
    with pytest.raises(ConfigError, match="demo"):
        make_plan("nope")


# ---- leaderboard: every method keeps its row --------------------------------------------------------

def _declip_run_and_meso4_pickle(tmp_path):
    import pickle

    import numpy as np

    from declip_plugin.engine.evaluator import EvalResult, write_results

    run = tmp_path / "ours" / "declip_2026-01-01-00-00-00"
    write_results(run / "test" / "ff-df", "ff-df", EvalResult({"iou": 61.0, "pixel_auc": 0.9, "f1_best": 0.7,
                                                                "auc": 0.93, "ap": 0.9, "eer": 0.1}, []),
                  {"method": "declip", "in_domain": True})
    dfb = tmp_path / "dfb" / "meso4_2026-02-03-04-05-06" / "test" / "ff-df"
    dfb.mkdir(parents=True)
    with open(dfb / "metric_dict_best.pickle", "wb") as f:  # DeepfakeBench's own, of a maskless detector
        pickle.dump({"acc": 0.7, "auc": 0.81, "eer": 0.25, "ap": 0.8, "pred": np.random.rand(4),
                     "label": np.array([0, 1, 0, 1]), "video_auc": 0.84}, f)
    return run, tmp_path / "dfb"


def test_leaderboard_default_table_gives_every_method_its_detection_columns(tmp_path):
    from declip_plugin.leaderboard import collect, render

    run, dfb = _declip_run_and_meso4_pickle(tmp_path)
    md = render(collect([str(run), str(dfb)]))
    lines = md.splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.strip("|").split("|")] for l in lines[2:4]}
    assert set(rows) == {"declip", "meso4"}
    auc = header.index("auc ff-df")
    assert rows["declip"][auc] == "**0.930**" and rows["meso4"][auc] == "0.810"
    assert rows["meso4"][header.index("iou ff-df")] == ""  # maskless: no localization, but the row is there
    assert rows["meso4"][header.index("video_auc mean")] == "0.840"


def test_leaderboard_unknown_metric_is_refused_with_the_known_ones(tmp_path):
    from declip_plugin.cli import main as cli_main
    from declip_plugin.errors import DeclipError
    from declip_plugin.leaderboard import collect, render

    run, dfb = _declip_run_and_meso4_pickle(tmp_path)
    with pytest.raises(DeclipError, match=r"unknown metric 'aucc'; known: .*\bauc\b.*\biou\b"):
        render(collect([str(run), str(dfb)]), metrics=["iou", "aucc"])
    assert cli_main(["leaderboard", str(run), str(dfb), "--metrics", "aucc"]) == 2
    html_text = render(collect([str(run), str(dfb)]), fmt="html")
    assert "<td>meso4</td>" in html_text and "<b>0.930</b>" in html_text
    png = tmp_path / "lb.png"
    assert cli_main(["leaderboard", str(run), str(dfb), "--format", "png", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
