"""The run directory's owner (declip_plugin/run_folder.py): names with their time, the folders every reader
finds (ours and DeepfakeBench's), and what the engine writes read back through it."""
import json
import os
import pickle

import numpy as np
import pytest

from declip_plugin import run_folder
from declip_plugin.engine.evaluator import EvalResult, write_results
from declip_plugin.errors import DeclipError
from declip_plugin.integrations.deepfakebench import results as dfb_results
from declip_plugin.run_folder import RunDir, ResultFolder


def test_names_carry_the_time_once_and_lose_it_when_read(tmp_path):
    first = run_folder.new_run_dir(tmp_path, "declip_demo", task_target="ff_c23")
    second = run_folder.new_run_dir(tmp_path, "declip_demo", task_target="ff_c23")  # the same second, most likely
    other = run_folder.new_run_dir(tmp_path, "declip")
    assert os.path.basename(first).startswith("declip_demo_ff_c23_20") and first != second
    assert {run_folder.name_of(p) for p in (first, second)} == {"declip_demo_ff_c23"}
    assert run_folder.name_of(other) == "declip" and run_folder.name_of(tmp_path / "plain") == "plain"
    assert run_folder.runs_named(tmp_path, "declip_demo_ff_c23") == sorted([first, second])
    assert run_folder.runs_named(tmp_path, "declip") == [other]  # not the declip_demo ones
    assert run_folder.runs_named(tmp_path / "absent", "declip") == []
    # DeepfakeBench's log folder of `declip dfb test`: the same pattern
    dfb = dfb_results.run_folder(tmp_path, {"model_name": "meso4", "task_target": "x"}, "2026-02-03-04-05-06")
    assert os.path.basename(dfb) == "meso4_x_2026-02-03-04-05-06" and run_folder.name_of(dfb) == "meso4_x"


def test_readers_find_our_results_and_deepfakebenchs_and_nothing_else(tmp_path):
    ours = RunDir(tmp_path / "logs" / "declip_2026-01-01-00-00-00")
    write_results(ours.test("demo-telea"), "demo-telea",
                  EvalResult({"iou": 61.5, "auc": float("nan")}, [{"path": "a.png", "label": 1, "score": 0.75}]),
                  {"method": "declip", "in_domain": True})
    ours.write_info({"name": "declip", "weights": None})
    dfb = tmp_path / "logs" / "meso4_2026-02-03-04-05-06" / "test" / "ff-df"
    dfb.mkdir(parents=True)
    (dfb / run_folder.DFB_METRICS).write_bytes(pickle.dumps({"auc": np.float64(0.81), "pred": np.zeros(2)}))
    stray = tmp_path / "logs" / "notes" / "val"  # a pickle outside test/ is no result
    stray.mkdir(parents=True)
    (stray / run_folder.DFB_METRICS).write_bytes(pickle.dumps({"auc": 0.5}))

    found = run_folder.result_folders(tmp_path / "logs")
    assert [(f.run.path, f.dataset, f.is_ours()) for f in found] == [(ours.path, "demo-telea", True),
                                                                     (str(dfb.parent.parent), "ff-df", False)]
    assert run_folder.find_runs(tmp_path / "logs") == [ours.path]  # run.json beside test/: ours only
    doc = found[0].read_metrics()
    assert doc["metrics"] == {"iou": 61.5, "auc": None} and doc["method"] == "declip"  # NaN as null
    assert found[0].read_per_image() == [{"path": "a.png", "label": "1", "score": "0.75"}]
    assert found[0].read_dfb_metrics()["pred"].tolist() == [0.75]
    assert found[1].read_dfb_metrics()["auc"] == 0.81
    assert ours.name() == "declip" and ours.checkpoint() is None and not ours.resumable()


def test_a_damaged_result_file_is_named(tmp_path):
    folder = ResultFolder(tmp_path / "run_2026-01-01-00-00-00" / "test" / "a")
    os.makedirs(folder.path)
    with open(folder.metrics, "w", encoding="utf-8") as f:
        f.write('{"metrics": {"iou": 1')  # cut short
    with pytest.raises(DeclipError, match=r"cannot read .*metrics\.json"):
        folder.read_metrics()
    with open(folder.metrics, "w", encoding="utf-8") as f:
        json.dump({"metrics": [1, 2]}, f)
    with pytest.raises(DeclipError, match=r"metrics\.json: expected \{'metrics'"):
        folder.read_metrics()
    with open(folder.dfb_metrics, "wb") as f:
        pickle.dump(os.system, f)
    with pytest.raises(DeclipError, match="not allowed"):
        folder.read_dfb_metrics()
