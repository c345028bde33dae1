"""`declip leaderboard` (declip_plugin/leaderboard.py, commands/results.py) with bad input: malformed result
files (our metrics.json, DeepfakeBench's pickles: never unpickled as code), a missing folder, an unknown
metric, --out a folder: exit status 2 and one `error:` line naming it. Tasks and reference rows:
tests/test_leaderboard_tasks.py."""
import json
import os
import pickle

import pytest

from tests.conftest import assert_one_line, run_cli


def test_leaderboard_out_that_is_a_folder(tmp_path, capsys):
    (tmp_path / "board").mkdir()
    code, _, err = run_cli(["leaderboard", tmp_path / "runs", "--out", tmp_path / "board"], capsys)
    assert code == 2
    assert_one_line(err, "--out", "is a folder")


def _dfb_result(tmp_path, payload):
    folder = tmp_path / "runs" / "xception_2025-01-01-00-00-00" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metric_dict_best.pickle").write_bytes(payload)
    return tmp_path / "runs"


PICKLES = [
    ("unknown protocol", b"\x80\x09garbage", "metric_dict_best.pickle"),
    ("truncated", pickle.dumps({"auc": 0.9})[:-5], "metric_dict_best.pickle"),
    ("code", pickle.dumps(os.system), "not allowed"),
    ("huge length", b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f", "metric_dict_best.pickle"),
    ("bad unicode", b"\x80\x04X\x02\x00\x00\x00\xff\xfe.", "metric_dict_best.pickle"),
]


@pytest.mark.parametrize("case,payload,word", PICKLES, ids=[c[0] for c in PICKLES])
def test_malformed_deepfakebench_pickles(tmp_path, capsys, case, payload, word):
    code, _, err = run_cli(["leaderboard", _dfb_result(tmp_path, payload)], capsys)
    assert code == 2
    assert_one_line(err, word)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"metrics": 3}'])
def test_malformed_metrics_json(tmp_path, capsys, text):
    folder = tmp_path / "runs" / "r" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(text)
    code, _, err = run_cli(["leaderboard", tmp_path / "runs"], capsys)
    assert code == 2
    assert_one_line(err, "metrics.json")


def test_leaderboard_of_nothing(tmp_path, capsys):
    code, _, err = run_cli(["leaderboard", tmp_path / "nowhere"], capsys)
    assert code == 2
    assert_one_line(err, "nowhere", "does not exist")


def test_leaderboard_unknown_metric_is_refused(tmp_path, capsys):
    folder = tmp_path / "runs" / "r" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"method": "m", "metrics": {"iou": 50.0, "auc": 0.9}}))
    code, _, err = run_cli(["leaderboard", tmp_path / "runs", "--metrics", "iuo"], capsys)
    assert code == 2
    assert_one_line(err, "iuo", "iou")
