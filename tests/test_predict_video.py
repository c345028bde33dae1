"""`declip predict` on video files and folders of videos (engine/predict_video.py, engine/preprocessing.py).

Whole frames here (the checkpoints were "trained" on sets of whole images: demo-telea, demo-video), so no
dlib and tiny towers keep it fast: the frames a video gives are the frames of the video decoded and sampled
as DeepfakeBench samples them (checked against the same frames given as image files and as a folder of
frames), per-frame rows and the video score (their mean; a clip detector's clips), mask overlays, the
--explain strip, and bad input: each case one line naming the file, exit 2 where nothing could be done
(nothing written), 1 where some inputs failed and the rest were written.

Real faces (the crop `declip prepare` makes, and the scores `declip test` gives on the prepared frames of a
checkpoint `declip train` made): tests/test_prepare.py.
"""
import csv
import json
import os

import cv2
import numpy as np
import pytest

import face_videos as fv
from declip_plugin.cli import main as cli_main
from declip_plugin.detectors import build_detector
from declip_plugin.detectors.base import save_detector_checkpoint
from tests.conftest import tiny_config

DECLIP = tiny_config(backbone="declip-tiny-vit-96", resolution=96, feature_layer="layer0", decoder_type="linear",
                     train_dataset=["demo-telea"])  # layer0 + linear: scores that vary with the pixels
STAN = {"model_name": "clip_stan", "backbone": "declip-tiny-vit-96", "pretrained": "none", "depth": 1,
        "resolution": 96, "clip_size": 4, "video_mode": True, "train_dataset": ["demo-video"]}
N = 12  # frames of each test video


def _decoded(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_video")
    for k, (name, fourcc) in enumerate((("videos/a.avi", "MJPG"), ("videos/sub/b.mp4", "mp4v"))):
        fv.write_video(str(root / name), fv.frames(N, seed=k)[0], fourcc)
    ckpt = {}
    for key, cfg in (("declip", DECLIP), ("stan", STAN)):
        ckpt[key] = save_detector_checkpoint(str(root / f"{key}.pth"), build_detector(cfg))
    return root, ckpt


def _predict(*args):
    return cli_main(["predict", *map(str, args), "--device", "cpu"])


def _errors(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def _rows(out):
    with open(os.path.join(out, "predictions.csv"), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_frame_scores_are_those_of_the_same_frames_as_images(world, tmp_path):
    """--num_frames 5 of 12 decoded frames: np.linspace(0, 11, 5, dtype=int) = 0, 2, 5, 8, 11; each scored
    as the same frame given as an image file (whole frames, the training set's INTER_LINEAR resize), with the
    same mask; the video's score is the mean of its frames'."""
    root, ckpt = world
    video = root / "videos" / "a.avi"
    frames = _decoded(video)
    assert len(frames) == N
    images = []
    for i in (0, 2, 5, 8, 11):
        images.append(str(tmp_path / f"frame{i}.png"))
        cv2.imwrite(images[-1], frames[i])
    out = tmp_path / "out"
    assert _predict(video, *images, "--weights_path", ckpt["declip"], "--out", out, "--num_frames", 5) == 0
    summary = json.loads((out / "predictions.json").read_text())
    video_rec, *image_recs = summary["predictions"]
    rows = video_rec["per_frame"]
    assert [r["frame"] for r in rows] == [0, 2, 5, 8, 11] and video_rec["frames"] == 5
    assert video_rec["sampled"] == 5 and video_rec["decoded"] == N and video_rec["no_face"] == []
    for row, image in zip(rows, image_recs):
        assert row["prob_fake"] == pytest.approx(image["prob_fake"], abs=1e-5)
        mask = cv2.imread(row["mask"], cv2.IMREAD_UNCHANGED)
        assert mask.shape == (240, 320)  # the whole frame
        assert np.abs(mask.astype(int) - cv2.imread(image["mask"], cv2.IMREAD_UNCHANGED)).max() <= 1
        assert cv2.imread(row["overlay"]).shape == (240, 320, 3)
    assert video_rec["prob_fake"] == pytest.approx(np.mean([r["prob_fake"] for r in rows]), abs=1e-7)
    assert summary["preprocessing"]["faces"] == "none" and summary["preprocessing"]["resize"] == "declip"
    assert summary["preprocessing"]["from"]["faces"] == "as in dataset demo-telea"
    table = _rows(out)
    assert [r["kind"] for r in table] == ["frame"] * 5 + ["video"] + ["image"] * 5
    assert [r["frame"] for r in table[:5]] == ["0", "2", "5", "8", "11"] and table[5]["frames"] == "5"
    assert float(table[5]["prob_fake"]) == pytest.approx(video_rec["prob_fake"])
    assert {r["input"] for r in table[:6]} == {str(video)} and table[6]["input"] == images[0]


def test_clip_detector_scores_consecutive_clips(world, tmp_path):
    """clip_size 4 over the 12 sampled frames: clips 0-3, 4-7, 8-11 (as `declip test` cuts a test video);
    each frame carries its clip's score, the same as the clip's frames given as a folder of frames; the
    video's score is the mean of the clips'; --explain draws the clip with the highest score."""
    root, ckpt = world
    video = root / "videos" / "a.avi"
    folder = tmp_path / "clip1"
    folder.mkdir()
    for i, bgr in enumerate(_decoded(video)[4:8]):
        cv2.imwrite(str(folder / f"{i}.png"), bgr)
    out = tmp_path / "out"
    assert _predict(video, folder, "--weights_path", ckpt["stan"], "--out", out, "--num_frames", N,
                    "--resize", "declip", "--explain") == 0
    video_rec, folder_rec = json.loads((out / "predictions.json").read_text())["predictions"]
    rows = video_rec["per_frame"]
    assert [r["frame"] for r in rows] == list(range(N)) and [r["clip"] for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    clips = [rows[0]["prob_fake"], rows[4]["prob_fake"], rows[8]["prob_fake"]]
    assert all(r["prob_fake"] == clips[r["clip"]] for r in rows) and len(set(clips)) == 3
    assert clips[1] == pytest.approx(folder_rec["prob_fake"], abs=1e-5)
    assert video_rec["prob_fake"] == pytest.approx(np.mean(clips), abs=1e-7)
    best = int(np.argmax(clips))
    assert video_rec["strip_frames"] == list(range(4 * best, 4 * best + 4))
    strip = cv2.imread(video_rec["strip"])
    assert strip.shape[1] == 4 * 112 + 3 * 3 and strip.shape[0] == 3 * 112 + 2 * 3  # frames, Grad-CAM, rollout


@pytest.mark.parametrize("case", ["truncated", "not_a_video", "zero_frames", "empty_folder", "text_file"])
def test_a_video_that_cannot_be_read_alone_exits_2_and_writes_nothing(world, tmp_path, capsys, case):
    root, ckpt = world
    good = (root / "videos" / "sub" / "b.mp4").read_bytes()
    target = tmp_path / {"truncated": "cut.mp4", "not_a_video": "notes.mp4", "zero_frames": "none.avi",
                         "empty_folder": "nothing", "text_file": "notes.txt"}[case]
    if case == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif case in ("not_a_video", "text_file"):
        target.write_text("not a video\n")
    elif case == "zero_frames":
        cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64)).release()
    else:
        target.mkdir()
    out = tmp_path / "out"
    assert _predict(target, "--weights_path", ckpt["declip"], "--out", out) == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and str(target) in errors[0]
    assert {"truncated": "is not a video", "not_a_video": "is not a video", "zero_frames": "no frame decodes",
            "empty_folder": "no videos", "text_file": "cannot be decoded"}[case] in errors[0]
    assert not out.exists()


def test_a_folder_of_videos_with_a_broken_one_exits_1_and_writes_the_rest(world, tmp_path, capsys):
    root, ckpt = world
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.avi", "sub/b.mp4"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes((root / "videos" / name).read_bytes())
    (folder / "sub" / "c.mp4").write_bytes((root / "videos" / "sub" / "b.mp4").read_bytes()[:3000])
    out = tmp_path / "out"
    assert _predict(folder, "--weights_path", ckpt["declip"], "--out", out, "--num_frames", 3) == 1
    errors = _errors(capsys)
    assert len(errors) == 1 and str(folder / "sub" / "c.mp4") in errors[0]
    summary = json.loads((out / "predictions.json").read_text())
    assert [p["image"] for p in summary["predictions"]] == [str(folder / "a.avi"), str(folder / "sub" / "b.mp4")]
    assert [e["image"] for e in summary["errors"]] == [str(folder / "sub" / "c.mp4")]
    assert [r["kind"] for r in _rows(out)] == ["frame"] * 3 + ["video"] + ["frame"] * 3 + ["video"]
    assert sorted(os.listdir(out)) == ["a", "b", "predictions.csv", "predictions.json"]  # nothing of c.mp4


def test_out_that_is_a_file(world, tmp_path, capsys):
    root, ckpt = world
    (tmp_path / "out").write_text("keep")
    assert _predict(root / "videos" / "a.avi", "--weights_path", ckpt["declip"], "--out", tmp_path / "out") == 2
    errors = _errors(capsys)
    assert len(errors) == 1 and "--out" in errors[0] and "is a file" in errors[0]
    assert (tmp_path / "out").read_text() == "keep"


def test_unknown_training_data_is_refused_until_the_flags_say(world, tmp_path, capsys):
    """A checkpoint trained on a dataset no config here declares: how to make its frames is not guessed."""
    root, _ = world
    ckpt = save_detector_checkpoint(str(tmp_path / "mine.pth"),
                                    build_detector({**DECLIP, "train_dataset": ["MyFaces"]}))
    video, out = root / "videos" / "a.avi", tmp_path / "out"
    assert _predict(video, "--weights_path", ckpt, "--out", out) == 2
    errors = _errors(capsys)
    assert errors == [f"error: checkpoint {ckpt} was trained on dataset MyFaces, which no dataset config here "
                      f"declares, so how its frames were made is unknown: pass --faces dlib|none and --resize "
                      f"declip|deepfakebench (`declip datasets` lists the declared datasets)"]
    assert not out.exists()
    assert _predict(video, "--weights_path", ckpt, "--out", out, "--faces", "none", "--resize", "deepfakebench",
                    "--mode", "fixed_stride", "--stride", 5) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert [r["frame"] for r in summary["predictions"][0]["per_frame"]] == [0, 5, 10]
    assert summary["preprocessing"]["from"] == {"faces": "--faces", "resize": "--resize",
                                                "sampling": "--mode and --stride"}


def test_a_damaged_frames_record_in_the_checkpoint_is_named(world, tmp_path, capsys):
    """The checkpoint's record of how its training frames were made (declip train saves it) is checked, not
    trusted: a value no frame maker knows gets one line naming the checkpoint and the dataset; the flags then
    decide without it."""
    root, _ = world
    ckpt = save_detector_checkpoint(str(tmp_path / "mine.pth"),
                                    build_detector({**DECLIP, "train_dataset": ["MyFaces"]}),
                                    frames={"MyFaces": {"faces": "maybe", "resize": "declip"}})
    assert _predict(root / "videos" / "a.avi", "--weights_path", ckpt, "--out", tmp_path / "out") == 2
    assert _errors(capsys) == [f"error: checkpoint {ckpt}: its record of how the training frames were made "
                               f"('frames') is damaged at MyFaces; pass --faces and --resize (and the sampling "
                               f"flags) to decide without it"]
    assert not (tmp_path / "out").exists()
    assert _predict(root / "videos" / "a.avi", "--weights_path", ckpt, "--out", tmp_path / "out", "--faces", "none",
                    "--resize", "declip", "--num_frames", 3) == 0
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["preprocessing"]["from"] == {"faces": "--faces", "resize": "--resize", "sampling": "--num_frames"}


def test_bad_sampling_flag(world, tmp_path, capsys):
    root, ckpt = world
    assert _predict(root / "videos" / "a.avi", "--weights_path", ckpt["declip"], "--out", tmp_path / "out",
                    "--num_frames", 0) == 2
    assert _errors(capsys) == ["error: --num_frames 0: must be at least 1"]
    assert not (tmp_path / "out").exists()
