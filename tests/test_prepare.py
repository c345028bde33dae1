"""`declip prepare` on videos of a real face (tests/face_videos.py: scikit-image's astronaut photograph
moving, zooming and rotating, with a stretch without a face, in mp4 and avi, mask videos in mkv).

* the layout, JSON, splits, masks and landmarks it writes, and the dataset config it registers;
* crop parity: every sampled frame against DeepfakeBench's own ``extract_aligned_face_dlib``, imported
  from the snapshot's preprocessing/preprocess.py and run in DeepfakeBench's environment on the same
  videos with the same detector and landmark model (tests/dfb_harness/dfb_face_crops.py);
* our readers (rgb tree and LMDB), `declip train` on it, and DeepfakeBench's own dataset class through
  its test.py (`declip dfb test --cpu --data OUT`);
* a run stopped by SIGTERM, then continued: the same dataset as one uninterrupted run.

Bad input: tests/test_prepare_bad_input.py. In CI (CI=1 or CI=true) a missing DeepfakeBench snapshot or
environment fails the tests that need one (tests/dfb_support.py).
"""
import glob
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

import face_videos as fv
from dfb_support import HARNESS, checkout_python, checkout_root, missing


@pytest.fixture(scope="module", autouse=True)
def faces_extra():
    """dlib and the landmark model (the [faces] extra, which scripts/setup_env.sh installs): a failure in CI."""
    try:
        import dlib  # noqa: F401

        from declip_plugin.media.faces import landmark_model_path

        landmark_model_path()
    except Exception as e:  # ImportError, or the DeclipError naming the extra
        missing(f"the [faces] extra is not installed: {e}")


NAME = "Astro"
NUM = 8
#: the sampled frames of a 12-frame video: np.linspace(0, 11, 8, dtype=int); 6 and 7 show no face
SAMPLED = [0, 1, 3, 4, 6, 7, 9, 11]


@pytest.fixture(scope="module")
def user_config(tmp_path_factory):
    """The user's dataset folder ($XDG_CONFIG_HOME/declip/datasets) in a temporary folder."""
    from declip_plugin.data.catalog import reload_catalog

    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    reload_catalog()
    yield
    mp.undo()
    reload_catalog()


def _declip(*args):
    from declip_plugin import cli

    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("faces") / "src")
    fv.make_set(root)
    return root


@pytest.fixture(scope="module")
def prepared(src, user_config, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("prepared") / "out")
    rc = _declip("prepare", src, out, "--name", NAME, "--num_frames", NUM, "--masks", os.path.join(src, "masks"),
                 "--workers", 2, "--lmdb", "--bench_root", "")
    assert rc == 0
    with open(os.path.join(out, f"export_{NAME}.json"), encoding="utf-8") as f:
        return out, json.load(f)


def _videos(out):
    with open(os.path.join(out, "dataset_json", f"{NAME}.json"), encoding="utf-8") as f:
        tree = json.load(f)[NAME]
    return {(label, split, video): info["frames"] for label, splits in tree.items() for split, videos in splits.items()
            for video, info in videos.items()}


def test_layout_json_splits_masks_landmarks(prepared, capsys):
    out, summary = prepared
    videos = _videos(out)
    # names from the file stems; a stem under both labels gets the label in front (DeepfakeBench's video AUC
    # groups frames by the folder name alone); splits per source video, the same for both labels of a stem
    assert sorted(videos) == sorted([
        (f"{NAME}_real", "train", "real_clip0"), (f"{NAME}_real", "test", "real_clip4"),
        (f"{NAME}_fake", "train", "fake_clip0"), (f"{NAME}_fake", "val", "clip9"), (f"{NAME}_fake", "test", "fake_clip4")])
    assert summary["label_dict"] == {f"{NAME}_real": 0, f"{NAME}_fake": 1}
    for (label, split, video), frames in videos.items():
        indices = [int(os.path.basename(f)[:-4]) for f in frames]
        assert set(indices) <= set(SAMPLED) and not {6, 7} & set(indices)  # the frames without a face are left out
        assert len(indices) >= 4
        for frame in frames:
            assert frame.startswith(f"./rgb/{NAME}/{label}/frames/{video}/")
            path = os.path.join(out, frame)
            image = cv2.imread(path)
            assert image.shape == (256, 256, 3)
            landmarks = np.load(path.replace("frames", "landmarks").replace(".png", ".npy"))
            assert landmarks.shape == (68, 2) and landmarks.dtype == np.int64
            mask_path = path.replace("frames", "masks")
            if label.endswith("_fake"):
                mask = cv2.imread(mask_path, cv2.IMREAD_UNCHANGED)
                assert mask.shape == (256, 256) and set(np.unique(mask)) == {0, 255}
                # the mask is the face's ellipse: most of the crop's centre, none of its corners
                assert mask[118:138, 118:138].mean() == 255 and mask[:8, :8].max() == 0
            else:
                assert not os.path.exists(mask_path)
    assert summary["counts"]["train"]["masks"] == summary["counts"]["train"]["frames"] - len(
        videos[(f"{NAME}_real", "train", "real_clip0")])
    assert os.path.basename(summary["landmark_model"]) == "shape_predictor_68_face_landmarks.dat"


def test_dataset_config_is_registered(prepared, capsys):
    from declip_plugin.data.catalog import load_catalog, user_dataset_dir

    out, summary = prepared
    specs, sources = load_catalog()
    assert sources[NAME] == os.path.join(user_dataset_dir(), f"{NAME}.yaml")
    assert specs[NAME]["json"] == os.path.join(out, "dataset_json", f"{NAME}.json")
    assert specs[NAME]["label_dict"] == summary["label_dict"]
    assert _declip("datasets", NAME) == 0
    assert f"{NAME:24s} deepfakebench_json   found" in capsys.readouterr().out


def _dfb_crops(tmp_path, src, root):
    """DeepfakeBench's extract_aligned_face_dlib of every video of the set, in its environment."""
    from declip_plugin.media.faces import landmark_model_path

    out = str(tmp_path / "dfb_crops.npz")
    specs = []
    for label, stem, ext, _ in fv.VIDEOS:
        video = os.path.join(src, label, f"{stem}.{ext}")
        mask = os.path.join(src, "masks", f"{stem}.{fv.MASK_CODEC[0]}") if label == "fake" else ""
        specs.append(f"{video}:{mask}" if mask else video)
    proc = subprocess.run([checkout_python(), os.path.join(HARNESS, "dfb_face_crops.py"),
                           os.path.join(root, "preprocessing"), landmark_model_path(), str(NUM), out, *specs],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def test_crop_parity_with_deepfakebench_extract_aligned_face_dlib(prepared, src, tmp_path, tmp_path_factory):
    out, _ = prepared
    theirs = _dfb_crops(tmp_path, src, checkout_root(tmp_path_factory))
    videos = {v: f for (label, split, v), f in _videos(out).items()}
    names = {("real", fv.TRAIN_STEM): "real_clip0", ("real", fv.TEST_STEM): "real_clip4",
             ("fake", fv.TRAIN_STEM): "fake_clip0", ("fake", fv.VAL_STEM): "clip9", ("fake", fv.TEST_STEM): "fake_clip4"}
    worst, compared = 0, 0
    for k, (label, stem, _, _) in enumerate(fv.VIDEOS):
        ours = {int(os.path.basename(f)[:-4]): os.path.join(out, f) for f in videos[names[(label, stem)]]}
        their_frames = sorted({int(key.split("/")[1]) for key in theirs.files if key.startswith(f"{k}/")})
        assert sorted(ours) == their_frames, f"{label}/{stem}: the frames with a face differ"
        for i, path in ours.items():
            crop = cv2.imread(path).astype(int)
            worst = max(worst, int(np.abs(crop - theirs[f"{k}/{i}/image"].astype(int)).max()))
            landmarks = np.load(path.replace("frames", "landmarks").replace(".png", ".npy"))
            np.testing.assert_array_equal(landmarks, theirs[f"{k}/{i}/landmarks"])
            if label == "fake":
                mask = cv2.imread(path.replace("frames", "masks"), cv2.IMREAD_UNCHANGED)
                np.testing.assert_array_equal(mask, theirs[f"{k}/{i}/mask"][..., 0])
            compared += 1
    print(f"crop parity: {compared} frames, max abs pixel difference {worst}")
    assert compared >= 25 and worst <= 1


def test_our_reader_reads_the_rgb_tree_and_the_lmdb_alike(prepared):
    from declip_plugin.data import build_dataset, dataset_spec

    out, summary = prepared
    spec = dataset_spec(NAME)
    assert summary["lmdb"] == os.path.join(out, "lmdb", f"{NAME}_lmdb")
    for split in ("train", "val", "test"):
        files = build_dataset(spec, split, {"include_real": True})
        stored = build_dataset({**spec, "lmdb": True, "lmdb_dir": os.path.join(out, "lmdb")}, split, {"include_real": True})
        assert len(files) == len(stored) == sum(summary["counts"][split][k] for k in ("frames",))
        for a, b in zip(files, stored):
            assert a["label"] == b["label"] and a["video"] == b["video"]
            assert np.array_equal(a["image"].numpy(), b["image"].numpy())


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """The run directory of `declip train` on the prepared set (declip_demo, one epoch)."""
    logs = str(tmp_path_factory.mktemp("train") / "logs")
    assert _declip("train", "--detector_path", "declip_demo", "--train_dataset", NAME, "--test_dataset", NAME,
                   "--log_dir", logs, "--device", "cpu", "--opt", "nEpochs=1", "--opt", "workers=0",
                   "--opt", "precision=fp32") == 0
    run = glob.glob(os.path.join(logs, "*"))
    assert len(run) == 1
    return run[0]


def test_declip_train_on_the_prepared_set(prepared, trained):
    with open(os.path.join(trained, "test", NAME, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    counts = prepared[1]["counts"]["test"]
    # every frame of the test split (test_include_real: true in declip_demo), real and fake, two videos
    assert metrics["metrics"]["n_images"] == counts["frames"] and metrics["metrics"]["n_videos"] == 2
    assert metrics["metrics"]["n_manipulated"] == counts["masks"] and metrics["metrics"]["iou"] is not None


def test_datasets_check_passes_on_the_prepared_set(prepared, capsys):
    capsys.readouterr()
    assert _declip("datasets", "--check", NAME) == 0
    out = capsys.readouterr().out
    for check in ("video_split_leak", "frame_split_leak", "label_dict", "masks", "decode"):
        assert f"{NAME:8s} {check:22s} ok" in out
    assert "all 5 checks passed" in out


def _test_scores(run):
    """{(video folder, frame index): score} of a `declip test` run's per_image.csv on the prepared set."""
    import csv

    with open(os.path.join(run, "test", NAME, "per_image.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return {(r["path"].split("/")[-2], int(os.path.basename(r["path"])[:-4])): float(r["score"]) for r in rows}


def test_predict_on_the_raw_videos_gives_the_scores_of_declip_test_on_the_prepared_frames(prepared, trained, src,
                                                                                          tmp_path, capsys):
    """The user's journey: prepare -> train -> test -> leaderboard, then predict on the video files. With no
    flag, predict makes the frames as the checkpoint's training set was made (its dataset config's `prepared`
    record: 8 frames, dlib crops of 256 px; DeepfakeBench's INTER_CUBIC resize): the same crop for the same
    frame as `declip prepare` wrote, the same score per frame as `declip test`, the video's score their mean."""
    from declip_plugin.checkpoints import read_detector_checkpoint
    from declip_plugin.engine.predict import config_for_checkpoint
    from declip_plugin.engine.predict_video import decode, face_aligner
    from declip_plugin.engine.preprocessing import resolve

    out, _ = prepared
    ckpt = os.path.join(trained, "ckpt_best.pth")
    logs = str(tmp_path / "test_logs")
    assert _declip("test", "--detector_path", "declip_demo", "--weights_path", ckpt, "--test_dataset", NAME,
                   "--log_dir", logs, "--device", "cpu", "--opt", "workers=0") == 0
    test_run = glob.glob(os.path.join(logs, "*"))[0]
    assert _declip("leaderboard", test_run) == 0
    expected = _test_scores(test_run)
    videos = {"real_clip4": os.path.join(src, "real", f"{fv.TEST_STEM}.avi"),
              "fake_clip4": os.path.join(src, "fake", f"{fv.TEST_STEM}.mp4")}
    preds = tmp_path / "preds"
    capsys.readouterr()
    assert _declip("predict", *videos.values(), "--weights_path", ckpt, "--out", preds, "--device", "cpu") == 0
    summary = json.loads((preds / "predictions.json").read_text())
    assert summary["preprocessing"]["faces"] == "dlib" and summary["preprocessing"]["resize"] == "deepfakebench"
    assert summary["preprocessing"]["sampling"]["num_frames"] == NUM
    policy = resolve(config_for_checkpoint(read_detector_checkpoint(ckpt)))
    aligner = face_aligner(policy)
    for record, (video, path) in zip(summary["predictions"], videos.items()):
        rows = record["per_frame"]
        frames = [r["frame"] for r in rows]
        assert frames == sorted(i for v, i in expected if v == video) and len(frames) >= 4
        for r in rows:  # the same score per frame as `declip test` on the prepared frame
            assert r["prob_fake"] == pytest.approx(expected[(video, r["frame"])], abs=1e-6)
            assert cv2.imread(r["overlay"]).shape == (256, 256, 3)  # the mask over the face crop
        assert record["prob_fake"] == pytest.approx(np.mean([r["prob_fake"] for r in rows]), abs=1e-7)
        assert record["no_face"] == [6, 7]
        label = "fake" if video.startswith("fake") else "real"
        for index, crop, _ in decode(path, policy, aligner).frames:  # the same crop as prepare wrote
            png = os.path.join(out, "rgb", NAME, f"{NAME}_{label}", "frames", video, f"{index:03d}.png")
            assert np.array_equal(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), cv2.imread(png))
    table = (preds / "predictions.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == (["frame"] * 6 + ["video"]) * 2


def test_the_checkpoint_alone_says_how_its_frames_were_made(trained, src, tmp_path, monkeypatch, capsys):
    """On a machine without the training set's dataset config (another $XDG_CONFIG_HOME), predict makes a video's
    frames from the record `declip train` saved in the checkpoint: the same crop, sampling, resize and scores as
    where the config is. A checkpoint without that record (saved before it existed) gets one line asking for
    the flags, exit 2, and nothing is written."""
    import torch

    from declip_plugin.data.catalog import reload_catalog

    ckpt = os.path.join(trained, "ckpt_best.pth")
    video = os.path.join(src, "fake", f"{fv.TEST_STEM}.mp4")
    here, away = tmp_path / "here", tmp_path / "away"
    assert _declip("predict", video, "--weights_path", ckpt, "--out", here, "--device", "cpu") == 0
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "another_machine"))
    reload_catalog()
    try:
        assert _declip("predict", video, "--weights_path", ckpt, "--out", away, "--device", "cpu") == 0
        a, b = (json.loads((d / "predictions.json").read_text()) for d in (here, away))
        assert b["preprocessing"]["from"]["faces"] == f"as in dataset {NAME} (recorded in the checkpoint)"
        assert b["preprocessing"] == a["preprocessing"]  # the record wins where the dataset config is too
        assert [r["prob_fake"] for r in b["predictions"][0]["per_frame"]] == \
            [r["prob_fake"] for r in a["predictions"][0]["per_frame"]]

        obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert obj["frames"][NAME]["faces"] == "dlib"
        del obj["frames"]
        old = str(tmp_path / "old.pth")
        torch.save(obj, old)
        capsys.readouterr()
        assert _declip("predict", video, "--weights_path", old, "--out", tmp_path / "none", "--device", "cpu") == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == (
            f"error: checkpoint {old} was trained on dataset {NAME}, which no dataset config here declares, so how "
            f"its frames were made is unknown: pass --faces dlib|none and --resize declip|deepfakebench (`declip "
            f"datasets` lists the declared datasets)")
        assert not (tmp_path / "none").exists()
    finally:
        monkeypatch.delenv("XDG_CONFIG_HOME")
        monkeypatch.undo()
        reload_catalog()


def test_predict_lists_a_video_without_a_face_and_writes_the_rest(trained, src, tmp_path, capsys):
    """A video without a face in any sampled frame (faces required: the checkpoint's set was cropped): one
    line naming it, exit status 1, the other video written."""
    from skimage import data

    empty = fv.write_video(str(tmp_path / "coffee.mp4"), [cv2.resize(data.coffee(), fv.SIZE)] * 4, "mp4v")
    face = os.path.join(src, "real", f"{fv.TRAIN_STEM}.mp4")
    preds = tmp_path / "preds"
    capsys.readouterr()
    assert _declip("predict", empty, face, "--weights_path", os.path.join(trained, "ckpt_best.pth"), "--out", preds,
                   "--device", "cpu", "--num_frames", 2) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: video {empty}: no face in any of its 2 sampled frames (dlib's frontal face detector); "
                      f"--faces none scores whole frames"]
    summary = json.loads((preds / "predictions.json").read_text())
    assert [p["image"] for p in summary["predictions"]] == [face] and summary["errors"][0]["image"] == empty


def test_deepfakebench_test_py_reads_the_prepared_set(prepared, src, tmp_path, tmp_path_factory, capfd):
    """The checkout's own dataset class through its test.py: the set re-prepared with its frame paths
    relative to the checkout (a rerun with --bench_root: every video done, only the JSON rewritten)."""
    import torch

    from declip_plugin import build_detector
    from declip_plugin.config import load_yaml, resolve_config_path
    from declip_plugin.detectors.base import save_detector_checkpoint

    root, python = checkout_root(tmp_path_factory), checkout_python()
    out = str(tmp_path / "out")
    shutil.copytree(prepared[0], out)
    assert _declip("prepare", src, out, "--name", NAME, "--num_frames", NUM, "--masks", os.path.join(src, "masks"),
                   "--workers", 1, "--bench_root", root) == 0
    assert "this run:" not in capfd.readouterr().out  # nothing left to do
    config = str(resolve_config_path("declip_demo"))
    torch.manual_seed(0)
    ckpt = save_detector_checkpoint(str(tmp_path / "ckpt.pth"), build_detector(load_yaml(config)))
    results = str(tmp_path / "results")
    rc = _declip("dfb", "test", "--bench-root", root, "--python", python, "--cpu", "--data", out, "--results_dir",
                 results, "--opt", "workers=0", "--opt", "test_batchSize=4", "--opt", "frame_num={train: 32, test: 32}",
                 "--", "--detector_path", config, "--test_dataset", NAME, "--weights_path", ckpt)
    text = capfd.readouterr().out
    assert rc == 0, text[-3000:]
    folder = glob.glob(os.path.join(results, "*", "test", NAME))[0]
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        metrics = pickle.load(f)
    test = {k: v for k, v in _videos(out).items() if k[1] == "test"}
    assert len(metrics["pred"]) == sum(len(v) for v in test.values())
    assert sorted(metrics["label"].tolist()) == sorted(
        [1 if k[0].endswith("_fake") else 0 for k, v in test.items() for _ in v])
    with open(os.path.join(folder, "localization_metrics.json"), encoding="utf-8") as f:
        assert json.load(f)["metrics"]["n_manipulated"] == len(test[(f"{NAME}_fake", "test", "fake_clip4")])


def _files(out):
    found = {}
    for path in glob.glob(os.path.join(out, "rgb", "**", "*.*"), recursive=True):
        with open(path, "rb") as f:
            found[os.path.relpath(path, out)] = f.read()
    return found


def test_sigterm_mid_run_then_rerun_gives_the_same_dataset(prepared, src, tmp_path, user_config):
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "declip_plugin", "prepare", src, out, "--name", NAME, "--num_frames", str(NUM),
           "--masks", os.path.join(src, "masks"), "--workers", "2", "--lmdb", "--bench_root", ""]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    markers = os.path.join(out, ".prepare", NAME, "done")
    deadline = time.time() + 120
    while not glob.glob(os.path.join(markers, "*", "*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "the same command continues" in err
    done = glob.glob(os.path.join(markers, "*", "*.json"))
    assert 1 <= len(done) < len(fv.VIDEOS)
    assert not os.path.exists(os.path.join(out, "dataset_json", f"{NAME}.json"))  # no dataset from a stopped run
    expected = _files(prepared[0])
    for marker in done:  # what a marker counts as done is complete
        label, video = marker.split(os.sep)[-2], os.path.basename(marker)[:-5]
        prefix = os.path.join("rgb", NAME, label, "frames", video) + os.sep
        assert {k: v for k, v in _files(out).items() if k.startswith(prefix)} == \
            {k: v for k, v in expected.items() if k.startswith(prefix)}
    assert _declip(*cmd[3:]) == 0  # the same command again (here in-process)
    assert _files(out) == expected
    assert _videos(out) == _videos(prepared[0])
