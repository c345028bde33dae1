"""Published reference blocks (references.py) and protocol presets kept as data (protocol/presets.py): the
block forms a preset file may use, the single block of older protocol folders, the rule for the means of
rows published per test set, and a broken preset file named in one line."""
import json
import os

import pytest

from declip_plugin import references
from declip_plugin.engine.evaluator import EvalResult, write_results
from declip_plugin.errors import ConfigError
from declip_plugin.leaderboard import collect, render
from declip_plugin.protocol.folder import reference_blocks
from declip_plugin.protocol.plan import make_plan
from declip_plugin.protocol.presets import preset_names

PER_SET = {"source": "a table", "label": "T", "metric": "video_auc", "scale": 100, "columns": ["a", "b", "c"],
           "rows": {"M": [90.0, 70.0, None]}}


def test_a_block_of_a_preset_file_is_converted_to_the_metrics_scale_once():
    block = references.from_data(PER_SET, "f.yaml")
    assert block == {"source": "a table", "label": "T", "metric": "video_auc",
                     "rows": {"M": {"id": None, "ood": None, "datasets": {"a": 0.9, "b": 0.7}}}}
    dolos_like = references.from_data({"source": "s", "metric": "iou", "rows": {"P": {"id": 69.3, "ood": 20.4}}}, "f")
    assert dolos_like["rows"]["P"] == {"id": 69.3, "ood": 20.4, "datasets": {}}  # iou: 0-100 as published


@pytest.mark.parametrize("change,words", [
    ({"metric": "video_acu"}, ["f.yaml", "'video_acu' is no metric"]),
    ({"rows": {"M": [90.0, 70.0]}}, ["f.yaml: row 'M'", "one value per column (3"]),
    ({"colums": ["a"]}, ["f.yaml", "'colums'", "did you mean 'columns'"]),
    ({"scale": 0}, ["f.yaml", "scale 0"]),
    ({"rows": {"M": [90.0, "x", 1.0]}}, ["f.yaml: row 'M' b", "'x' is not a number"]),
])
def test_a_bad_block_is_one_error_naming_the_file_and_the_key(change, words):
    with pytest.raises(ConfigError) as exc:
        references.from_data({**PER_SET, **change}, "f.yaml")
    assert all(w in str(exc.value) for w in words), str(exc.value)


def test_means_of_a_row_published_per_set_only_over_sets_it_has():
    row = {"id": None, "ood": None, "datasets": {"a": 0.9, "b": 0.7, "c": 0.5}}
    assert references.row_means(row, {"a"}, {"b", "c"}) == (0.9, 0.6)
    assert references.row_means(row, {"a"}, {"b", "d"}) == (0.9, None)  # d: not published, no mean
    assert references.row_means({"id": 1.0, "ood": 2.0}, {"a"}, {"b"}) == (1.0, 2.0)  # published means as they are


def test_an_older_protocol_folder_with_one_block_is_still_read(tmp_path):
    old = {"source": "DeCLIP paper", "metric": "iou", "rows": {"PSCC-Net": {"id": 81.0, "ood": 21.6}}}
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "protocol.json").write_text(json.dumps({"reference": old, "cells": []}))
    assert reference_blocks([str(folder), str(tmp_path / "not-a-protocol")]) == [old]
    write_results(tmp_path / "r" / "declip_2026-01-01-00-00-00" / "test" / "a", "a", EvalResult({"iou": 50.0}, []),
                  {"method": "declip", "in_domain": True})
    write_results(tmp_path / "r" / "declip_2026-01-01-00-00-00" / "test" / "b", "b", EvalResult({"iou": 10.0}, []),
                  {"method": "declip", "in_domain": False})
    md = render(collect([str(tmp_path / "r")]), reference=old, columns=(("iou",), ()))
    row = next(ln for ln in md.splitlines() if ln.startswith("| PSCC-Net (published)"))
    assert [c.strip() for c in row.strip("|").split("|")] == ["PSCC-Net (published)", "", "", "81.0", "21.6"]
    assert "the paper's own figures (DeCLIP paper), not measured by this run" in md


def test_a_broken_preset_file_fails_its_command_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "mine.yaml").write_text("methods: [clip_stan]\ntrain: [FaceForensics++]\ntest: [DFDC]\nheadlin: auc\n")
    monkeypatch.setattr("declip_plugin.protocol.presets.preset_dir", lambda: str(tmp_path))
    assert "mine" in preset_names()
    with pytest.raises(ConfigError, match=r"mine.yaml: unknown key 'headlin'.*did you mean 'headline'"):
        make_plan("mine")
    (tmp_path / "mine.yaml").write_text("methods: [clip_stan]\ntrain: [FaceForensics++]\n")
    with pytest.raises(ConfigError, match=r"mine.yaml: test is required"):
        make_plan("mine")


def test_every_preset_is_a_file_of_configs_protocol():
    """The paper's presets (and DeCLIP's published figures: test_leaderboard_tasks.py), the demos and ff-cross are
    data: configs/protocol/<name>.yaml, read by protocol/presets.py."""
    from declip_plugin.protocol.presets import preset_definition

    dolos = ["dolos-lama", "dolos-ldm", "dolos-pluralistic", "dolos-repaint-p2-9k"]
    expect = {
        "dolos": (["declip", "clip_linear"], dolos, dolos),
        "autosplice": (["declip", "clip_linear"], dolos, ["autosplice-75", "autosplice-90", "autosplice-100"]),
        "demo": (["declip_demo", "clip_linear_demo", "xception_demo"], ["demo-telea"],
                 ["demo-telea", "demo-ns", "demo-blur", "demo-resample", "demo-noise", "demo-grid"]),
        "demo-video": (["clip_enhanced_demo_video", "clip_stan_demo", "timesformer_demo"], ["demo-video-flicker"],
                       ["demo-video-flicker", "demo-video-jitter", "demo-video-freeze"]),
    }
    assert preset_names() == sorted(list(expect) + ["ff-cross"])
    for name, (methods, train, test) in expect.items():
        plan = make_plan(name)
        assert (plan["methods"], plan["train"], plan["test"]) == (methods, train, test), name
        assert plan["headline"] is None and plan["metrics"] is None, name  # the metrics decide (MetricInfo)
        path = preset_definition(name)["file"]
        assert os.path.basename(path) == f"{name}.yaml" and os.path.basename(os.path.dirname(path)) == "protocol"
