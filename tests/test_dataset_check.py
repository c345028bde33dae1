"""`declip datasets --check` (data/check.py): the demo sets pass; on a DeepfakeBench-structured set (frames and
LMDB written by DeepfakeBench's own scripts, tests/dfb_prepared.py; splits rewritten per video) every planted
problem is caught, named, exit status 1; bad input is one line, exit status 2."""
import json
import os
import re
import shutil

import pytest
import yaml

from declip_plugin.cli import main
from tests import dfb_prepared
from tests.dfb_prepared import NAME

LABELS = {"UADFV_Real": 0, "UADFV_Fake": 1}
SPLIT_OF = {"v0": "train", "v1": "val", "v2": "test"}  # one video per label and split
ROW = re.compile(r"^(\S+)\s+(\S+)\s+(ok|FAIL|n/a)\s+(\d+)(?:  (.*))?$")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return dfb_prepared.prepare(tmp_path_factory.mktemp("dfbcheck"))


def per_video_json(checkout):
    """DeepfakeBench's JSON structure, each video in one split (its rearrange.py puts every UADFV video in all
    three); frame paths as it wrote them (relative to rgb_dir)."""
    with open(os.path.join(checkout, "preprocessing", "dataset_json", f"{NAME}.json"), encoding="utf-8") as f:
        written = json.load(f)[NAME]
    out = {label: {"train": {}, "val": {}, "test": {}} for label in written}
    for label, by_split in written.items():
        for video, info in by_split["train"].items():
            out[label][SPLIT_OF[video]][video] = info
    return {NAME: out}


def declare(tmp_path, monkeypatch, datasets):
    """Datasets declared in a dataset config of their own ($DECLIP_DATASET_CONFIGS; a new folder each time, as
    the catalog is cached per folder list)."""
    folder = tmp_path / ("dataset_configs_" + "_".join(sorted(datasets)))
    folder.mkdir()
    (folder / "check.yaml").write_text(yaml.safe_dump({"datasets": datasets}))
    monkeypatch.setenv("DECLIP_DATASET_CONFIGS", str(folder))


def json_set(tmp_path, name, info, rgb):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(info))
    return {"adapter": "deepfakebench_json", "json": str(path), "dataset": NAME, "rgb_dir": str(rgb),
            "label_dict": LABELS}


def run_check(capsys, *args):
    rc = main(["datasets", *args])
    out = capsys.readouterr().out
    print(out)
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[(m.group(1), m.group(2))] = (m.group(3), int(m.group(4)), m.group(5) or "")
    return rc, rows, out


def failing(rows):
    return sorted(check for (_, check), (status, _, _) in rows.items() if status == "FAIL")


def test_the_demo_sets_pass(tmp_path, capsys):
    from declip_plugin.data.demo import make_demo_data
    from declip_plugin.data.demo_video import make_demo_videos

    make_demo_data(str(tmp_path / "demo"), n_train=2, n_val=1, n_test=2, size=32)
    make_demo_videos(str(tmp_path / "demo_video"), size=16, n_frames=4, n_train=2, n_val=1, n_test=2)
    rc, rows, out = run_check(capsys, "--check", "demo-video", "--train_dataset", "demo-telea", "--test_dataset",
                              "demo-ns", "--data_root", str(tmp_path))
    assert rc == 0 and re.search(r"^all 17 checks passed$", out, re.M)
    assert rows[("demo-video", "video_split_leak")][:2] == ("ok", 0)  # DeepfakeBench-format: video folders known
    assert rows[("demo-telea", "video_split_leak")][0] == "n/a"  # dolos: no source identity
    assert rows[("demo-ns", "frame_split_leak")][0] == "n/a"  # a test dataset: its test split alone
    assert rows[("demo-ns", "frame_train_test_leak")][:2] == ("ok", 0)
    assert rows[("demo-video", "masks")][:2] == rows[("demo-telea", "masks")][:2] == ("ok", 0)
    assert "demo-ns (dolos): frames per split: test 4\n" in out  # 2 manipulated + 2 real


def _plant(kind, info, rgb):
    """One problem planted in the JSON ``info`` or the frames under ``rgb``; returns what its example names."""
    fake, real = info[NAME]["UADFV_Fake"], info[NAME]["UADFV_Real"]
    if kind == "video":  # a training video listed in the test split too
        fake["test"]["v0"] = fake["train"]["v0"]
        return "UADFV/fake/frames/v0 in train, test"
    if kind == "frame":  # a training frame's bytes copied over a test frame of another video
        shutil.copyfile(rgb / NAME / "real" / "frames" / "v0" / "000.png", rgb / NAME / "real" / "frames" / "v2" / "005.png")
        return "train " + str(rgb / NAME / "real" / "frames" / "v0" / "000.png") + " = test " + str(
            rgb / NAME / "real" / "frames" / "v2" / "005.png")
    if kind == "label":
        real["test"]["v2"] = {**real["test"]["v2"], "label": "UADFV_real"}
        return "test: video 'v2': label 'UADFV_real'"
    if kind == "decode":  # a test frame cut short
        path = rgb / NAME / "fake" / "frames" / "v2" / "007.png"
        path.write_bytes(path.read_bytes()[:60])
        return "fake/frames/v2/007.png is truncated or corrupt"
    os.remove(rgb / NAME / "fake" / "masks" / "v1" / "004.png")  # a manipulated frame without its mask
    return "val: " + str(rgb / NAME / "fake" / "frames" / "v1" / "004.png")


@pytest.mark.parametrize("kind, checks", [
    ("video", ["frame_split_leak", "video_split_leak"]),  # all its frames are in both splits, too
    ("frame", ["frame_split_leak"]),
    ("label", ["label_dict"]),
    ("decode", ["decode"]),
    ("mask", ["masks"]),
])
def test_each_planted_problem_is_caught_and_named(checkout, tmp_path, monkeypatch, capsys, kind, checks):
    rgb = tmp_path / "rgb"
    shutil.copytree(os.path.join(checkout, "datasets", "rgb"), rgb)
    info = per_video_json(checkout)
    declare(tmp_path, monkeypatch, {"clean": json_set(tmp_path, "clean", info, rgb)})
    rc, rows, _ = run_check(capsys, "--check", "clean")
    assert rc == 0 and failing(rows) == [] and rows[("clean", "video_split_leak")][:2] == ("ok", 0)
    named = _plant(kind, info, rgb)
    declare(tmp_path, monkeypatch, {"planted": json_set(tmp_path, "planted", info, rgb)})
    rc, rows, _ = run_check(capsys, "--check", "planted")
    assert rc == 1 and failing(rows) == checks
    status, count, examples = rows[("planted", checks[-1])]
    assert count == 1 and named in examples


def test_lmdb_read_through_dfb_config(checkout, tmp_path, capsys):
    """DeepfakeBench's LMDB (keys as its dataset2lmdb_test.py wrote them), named by a train_config.yaml; a source
    video there is its key's folder. DeepfakeBench's own rearrange.py output lists every UADFV video in all three
    splits: a leak for a set that is trained on, not for one only tested on."""
    json_dir = tmp_path / "dataset_json"
    json_dir.mkdir()
    info = per_video_json(checkout)
    config = tmp_path / "train_config.yaml"
    config.write_text(yaml.safe_dump({"dataset_json_folder": str(json_dir), "lmdb": True, "label_dict": LABELS,
                                      "lmdb_dir": os.path.join(checkout, "datasets", "lmdb")}))
    (json_dir / f"{NAME}.json").write_text(json.dumps(info))
    rc, rows, out = run_check(capsys, "--check", NAME, "--dfb_config", str(config))
    assert rc == 0 and failing(rows) == [] and "UADFV (deepfakebench_json): frames per split: train 20, val 20, test 20" in out
    _plant("video", info, None)
    (json_dir / f"{NAME}.json").write_text(json.dumps(info))
    rc, rows, _ = run_check(capsys, "--check", NAME, "--dfb_config", str(config))
    lmdb = os.path.join(checkout, "datasets", "lmdb", f"{NAME}_lmdb")
    assert rc == 1 and rows[(NAME, "video_split_leak")][:2] == ("FAIL", 1)
    assert rows[(NAME, "video_split_leak")][2] == f"{lmdb}[UADFV/fake/frames/v0] in train, test"
    rc, rows, _ = run_check(capsys, "--check", NAME, "--dfb_config", checkout)  # as its rearrange.py wrote it
    assert rc == 1 and rows[(NAME, "video_split_leak")][:2] == ("FAIL", 6)
    rc, rows, _ = run_check(capsys, "--test_dataset", NAME, "--dfb_config", checkout)
    assert rc == 0 and rows[(NAME, "video_split_leak")][0] == "n/a"


def test_a_train_video_in_a_test_dataset(checkout, tmp_path, monkeypatch, capsys):
    """Two datasets, each clean on its own: the train/test rows (on the test dataset) name what crosses."""
    rgb = os.path.join(checkout, "datasets", "rgb")
    train = per_video_json(checkout)
    other = json.loads(json.dumps(train))
    for by_split in other[NAME].values():  # the test dataset tests on v0, the train dataset's training video
        by_split["train"], by_split["test"] = by_split["test"], by_split["train"]
    declare(tmp_path, monkeypatch, {"mine": json_set(tmp_path, "mine", train, rgb),
                                    "theirs": json_set(tmp_path, "theirs", other, rgb)})
    rc, rows, _ = run_check(capsys, "--check", "mine", "theirs")  # no roles: each on its own
    assert rc == 0 and ("theirs", "video_train_test_leak") not in rows
    rc, rows, _ = run_check(capsys, "--train_dataset", "mine", "--test_dataset", "theirs")
    assert rc == 1 and failing(rows) == ["frame_train_test_leak", "video_train_test_leak"]
    status, count, examples = rows[("theirs", "video_train_test_leak")]
    assert count == 2 and f"{rgb}/UADFV/fake/frames/v0 in mine/train, theirs/test" in examples
    status, count, examples = rows[("theirs", "frame_train_test_leak")]
    assert count == 20 and f"{rgb}/UADFV/fake/frames/v0/000.png in mine/train, theirs/test" in examples  # 10 per v0


def test_masks_for_a_localization_detector(checkout, tmp_path, monkeypatch, capsys):
    """A folder dataset of videos without masks: detection data, unless the detector named needs masks."""
    root = os.path.join(checkout, "datasets", "rgb", NAME)
    declare(tmp_path, monkeypatch, {"nomasks": {"adapter": "folder", "root": root, "images": "fake/frames",
                                                "real": "real/frames", "video_dirs": True, "split": "hash"}})
    rc, rows, _ = run_check(capsys, "--check", "nomasks")
    assert rc == 0 and rows[("nomasks", "masks")][0] == "n/a" and rows[("nomasks", "video_split_leak")][0] == "ok"
    rc, rows, _ = run_check(capsys, "--check", "nomasks", "--detector_path", "clip_enhanced_demo")  # no masks
    assert rc == 0 and rows[("nomasks", "masks")][0] == "n/a"
    rc, rows, _ = run_check(capsys, "--check", "nomasks", "--detector_path", "declip_demo")
    status, count, examples = rows[("nomasks", "masks")]
    assert rc == 1 and failing(rows) == ["masks"] and count == 30
    assert examples.startswith("the dataset has no masks, and detector declip trains and is tested on masks")


@pytest.mark.parametrize("args, says", [
    (["--check", "UADVF"], "unknown dataset 'UADVF'.*did you mean 'UADFV'"),
    (["--check"], "--check needs the names of the datasets to check"),
    (["UADFV", "--detector_path", "declip_demo"], "--detector_path 'declip_demo' applies to --check only"),
])
def test_bad_input_is_one_line(capsys, args, says):
    assert main(["datasets", *args]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert re.search(says, err) and "\n" not in err and err.startswith("error: ") and captured.out == ""
