"""Video data: frames per video, clip sampling (count, contiguity, fixed at test, random at train); bad video
data named in one line before any run folder, videos shorter than the clip left out and listed."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from declip_plugin.data import build_dataset, collate_fn
from declip_plugin.data.video import clip_segments, select_evenly
from declip_plugin.errors import ConfigError
from tests.conftest import assert_nothing_under, assert_one_line, data_args, run_cli

SMALL = {"resolution": 16, "mask_size": 8, "fully_supervised": False, "mean": [0, 0, 0], "std": [1, 1, 1]}
LENGTHS = {"a": 10, "b": 16, "c": 3}  # frames per video


def frame_image(index):
    """A frame whose pixel value encodes its index (read back as round(mean * 255) / 10)."""
    return np.full((16, 16, 3), 10 * index, np.uint8)


def frame_index(image_t):
    return int(round(float(image_t.mean()) * 255 / 10))


def make_videos(root, with_masks=True):
    """DeepfakeBench JSON: the same video ids under a real and a fake folder."""
    info = {"D": {}}
    for label in ("D-real", "D-fake"):
        videos = {}
        for vid, n in LENGTHS.items():
            paths = []
            for i in range(n):
                rel = f"{label}/frames/{vid}/{i}.png"
                os.makedirs(root / label / "frames" / vid, exist_ok=True)
                cv2.imwrite(str(root / rel), frame_image(i))
                if with_masks and label == "D-fake":
                    os.makedirs(root / label / "masks" / vid, exist_ok=True)
                    cv2.imwrite(str(root / label / "masks" / vid / f"{i}.png"), np.full((16, 16), 255, np.uint8))
                paths.append(rel)
            videos[vid] = {"label": label, "frames": paths}
        info["D"][label] = {s: videos for s in ("train", "val", "test")}
    path = root / "D.json"
    path.write_text(json.dumps(info))
    return {"adapter": "deepfakebench_json", "json": str(path), "rgb_dir": str(root),
            "label_dict": {"D-real": 0, "D-fake": 1}}


def test_clip_segments_follow_deepfakebench():
    assert clip_segments(32, 8) == [(0, 8), (8, 16), (16, 24), (24, 25)]
    assert clip_segments(16, 8) == [(0, 8), (8, 9)]
    assert clip_segments(10, 4) == [(0, 6), (6, 7)]
    assert clip_segments(8, 8) == [(0, 1)] and clip_segments(7, 8) == []


def test_select_evenly_spreads_over_the_video():
    assert select_evenly(range(10), 5) == [0, 2, 4, 6, 8]
    assert select_evenly(range(7), 3) == [0, 2, 4]
    assert select_evenly(range(3), 5) == [0, 1, 2]


def test_clip_count_contiguity_and_identity(tmp_path):
    spec = make_videos(tmp_path)
    ds = build_dataset(spec, "test", {**SMALL, "video_mode": True, "clip_size": 4})
    # per folder: a (10 frames) -> 2 clips, b (16) -> 4, c (3) -> 0
    assert len(ds) == 2 * (10 // 4 + 16 // 4)
    seen = {}
    for k in range(len(ds)):
        item = ds[k]
        assert item["image"].shape == (4, 3, 16, 16)
        idx = [frame_index(item["image"][t]) for t in range(4)]
        assert idx == list(range(idx[0], idx[0] + 4))  # consecutive frames
        assert [int(os.path.splitext(os.path.basename(f))[0]) for f in item["frames"]] == idx
        seen.setdefault(item["video"], []).append(idx[0])
        if item["label"] == 1:
            assert item["mask"].shape == (4, 1, 16, 16) and float(item["mask"].min()) == 1.0  # at resolution
        else:
            assert float(item["mask"].max()) == 0.0
    assert set(seen) == {"D/D-real/a", "D/D-real/b", "D/D-fake/a", "D/D-fake/b"}
    assert seen["D/D-fake/a"] == [0, 6] and seen["D/D-fake/b"] == [0, 4, 8, 12]  # fixed starts k * step
    again = [frame_index(ds[k]["image"][0]) for k in range(len(ds))]
    assert again == [s for v in seen.values() for s in v]  # the same clips on every load

    batch = collate_fn([ds[0], ds[1], ds[len(ds) - 1]])
    assert batch["image"].shape == (3, 4, 3, 16, 16) and batch["mask"].shape == (3, 4, 1, 16, 16)
    assert len(batch["frames"]) == 3 and len(batch["frames"][0]) == 4


def test_train_clip_starts_are_random_within_their_segment(tmp_path):
    spec = make_videos(tmp_path, with_masks=False)
    ds = build_dataset(spec, "train", {**SMALL, "video_mode": True, "clip_size": 4, "include_real": True})
    torch.manual_seed(0)
    starts = {}
    for _ in range(40):
        for k in range(len(ds)):
            item = ds[k]
            idx = [frame_index(item["image"][t]) for t in range(4)]
            assert idx == list(range(idx[0], idx[0] + 4))
            starts.setdefault(k, set()).add(idx[0])
    # video b (16 frames, step 4): clip k starts in [4k, 4k + 4) except the last (start 12)
    b_clips = [k for k in range(len(ds)) if ds.clip_index.clips[k][0] == "D/D-fake/b"]
    assert [sorted(starts[k]) for k in b_clips] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]


def test_frame_num_in_video_mode_and_frame_level_unchanged(tmp_path):
    spec = make_videos(tmp_path, with_masks=False)
    cfg = {**SMALL, "include_real": True, "frame_num": {"train": 2, "test": 8}}
    frames = build_dataset(spec, "test", cfg)  # frame level: config frame_num is not applied
    assert len(frames) == 2 * sum(LENGTHS.values())
    clips = build_dataset(spec, "test", {**cfg, "video_mode": True, "clip_size": 4})
    # 8 of 16 frames of b (every other one) -> 2 clips; a keeps 8 of 10 -> 2; c none
    b = [clips[k] for k in range(len(clips)) if clips[k]["video"] == "D/D-real/b"]
    assert [[frame_index(it["image"][t]) for t in range(4)] for it in b] == [[0, 2, 4, 6], [8, 10, 12, 14]]
    spec_n = build_dataset({**spec, "frame_num": 5}, "test", cfg)
    assert len(spec_n) == 2 * (5 + 5 + 3)


def test_video_mode_needs_clip_size_and_video_ids(tmp_path):
    spec = make_videos(tmp_path, with_masks=False)
    with pytest.raises(ConfigError, match="clip_size"):
        build_dataset(spec, "test", {**SMALL, "video_mode": True})
    root = tmp_path / "plain"
    os.makedirs(root / "fake")
    cv2.imwrite(str(root / "fake" / "0.png"), frame_image(1))
    with pytest.raises(ConfigError, match="video identity"):
        build_dataset({"adapter": "folder", "root": str(root), "images": "fake"}, "test",
                      {**SMALL, "video_mode": True, "clip_size": 1})


def test_folder_video_dirs(tmp_path):
    for folder in ("fake", "real"):
        for vid in ("x", "y"):
            os.makedirs(tmp_path / folder / vid)
            for i in (0, 1, 2, 10, 11, 12, 13, 14):
                cv2.imwrite(str(tmp_path / folder / vid / f"{i}.png"), frame_image(i))
    spec = {"adapter": "folder", "name": "F", "root": str(tmp_path), "images": "fake", "real": "real",
            "video_dirs": True}
    ds = build_dataset(spec, "test", {**SMALL, "include_real": True, "video_mode": True, "clip_size": 4})
    assert len(ds) == 8  # 8 frames per video: 2 clips each
    assert sorted({ds[k]["video"] for k in range(8)}) == ["F/fake/x", "F/fake/y", "F/real/x", "F/real/y"]
    assert [frame_index(ds[0]["image"][t]) for t in range(4)] == [0, 1, 2, 10]  # integer frame order


# --- bad video data: every case names the value or file at fault before (or instead of) any run folder ----
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from declip_plugin.data.demo_video import make_demo_videos

    root = tmp_path_factory.mktemp("videos")
    make_demo_videos(root / "demo_video", seed=1, size=32, n_frames=16, n_train=1, n_val=1, n_test=1)
    return root


def _video_json(root):
    return root / "demo_video" / "dataset_json" / "DemoVideo.json"


def _edit_videos(videos, tmp_path, edit, split="train"):
    """A copy of the demo videos with ``edit(root, the first fake video's entry of split)`` applied."""
    root = tmp_path / "vdata"
    shutil.copytree(videos, root)
    info = json.loads(_video_json(root).read_text())
    by_video = info["DemoVideo"]["DemoVideo_flicker"][split]
    edit(root, by_video[sorted(by_video)[0]])
    _video_json(root).write_text(json.dumps(info))
    return root


def _missing_frame(root, entry):
    os.remove(root / "demo_video" / entry["frames"][3])


def _other_size(root, entry):
    cv2.imwrite(str(root / "demo_video" / entry["frames"][3]), np.zeros((48, 40, 3), np.uint8))


VIDEO_CASES = [
    ("a frame missing", _missing_frame, [], ["003.png", "does not exist"]),
    ("a frame of another size than its mask", _other_size, [], ["003.png", "does not match"]),
    ("an entry without frames", lambda r, e: e.pop("frames"), [], ["has no 'frames' list", "DemoVideo.json"]),
    ("an entry with an empty frame list", lambda r, e: e.update(frames=[]), [], ["empty 'frames' list"]),
    ("every video shorter than the clip", None, ["--opt", "clip_size=20", "--opt", "frame_num=32"],
     ["clip_size=20", "has 16"]),
    ("frame_num below clip_size", None, ["--opt", "frame_num={train: 16, test: 4}"],
     ["frame_num.test is 4", "clip_size=8"]),
]


@pytest.mark.parametrize("case,edit,extra,words", VIDEO_CASES, ids=[c[0] for c in VIDEO_CASES])
def test_bad_video_data(videos, tmp_path, capsys, case, edit, extra, words):
    root = _edit_videos(videos, tmp_path, edit) if edit else videos
    code, _, err = run_cli(["train", "--detector_path", "clip_stan_demo", "--data_root", root, "--device", "cpu",
                            "--log_dir", tmp_path / "logs", "--opt", "nEpochs=1", "--opt", "train_batchSize=2", *extra],
                           capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert_nothing_under(tmp_path / "logs")


def test_a_clip_detector_on_image_data(world, tmp_path, capsys):
    code, _, err = run_cli(["train", "--detector_path", "clip_stan_demo", "--train_dataset", "demo-telea",
                            "--test_dataset", "demo-telea", "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "demo-telea", "images, not frames of videos", "video_mode")
    assert_nothing_under(tmp_path / "logs")


def test_videos_shorter_than_the_clip_are_left_out_and_listed(videos, tmp_path, capsys):
    """As DeepfakeBench, a video shorter than clip_size gives no clip; the results say which were left out."""
    root = _edit_videos(videos, tmp_path, lambda r, e: e.update(frames=e["frames"][:4]), split="test")
    code, _, err = run_cli(["train", "--detector_path", "clip_stan_demo", "--data_root", root, "--device", "cpu",
                            "--log_dir", tmp_path / "logs", "--opt", "nEpochs=1", "--opt", "train_batchSize=2",
                            "--test_dataset", "demo-video"], capsys)
    assert code == 0, err
    (metrics,) = (tmp_path / "logs").glob("*/test/demo-video/metrics.json")
    skipped = json.loads(metrics.read_text())["skipped"]
    assert [s["path"] for s in skipped] == ["DemoVideo/DemoVideo_flicker/fte000"]
    assert "4 frame(s), fewer than clip_size=8" in skipped[0]["reason"]
