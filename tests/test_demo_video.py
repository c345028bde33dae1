"""The procedural demo video set: deterministic, DeepfakeBench layout, temporal-only signal."""
import hashlib
import os

import numpy as np
import pytest

from declip_plugin.data import build_dataset
from declip_plugin.data.demo_video import REAL, FAKE, make_demo_videos, render_video


def tree_hash(root):
    h = hashlib.sha256()
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            if f.endswith(".png"):
                h.update(open(os.path.join(d, f), "rb").read())
    return h.hexdigest()


def test_deterministic_and_readable_as_clips(tmp_path):
    kw = dict(size=32, n_frames=8, n_train=2, n_val=1, n_test=1)
    a = make_demo_videos(tmp_path / "a", seed=3, **kw)
    make_demo_videos(tmp_path / "b", seed=3, **kw)
    make_demo_videos(tmp_path / "c", seed=4, **kw)
    assert tree_hash(tmp_path / "a" / "rgb") == tree_hash(tmp_path / "b" / "rgb")
    assert tree_hash(tmp_path / "a" / "rgb") != tree_hash(tmp_path / "c" / "rgb")
    spec = {"adapter": "deepfakebench_json", "json": a["json"], "rgb_dir": str(tmp_path / "a"),
            "label_dict": {REAL: 0, FAKE: 1}}
    ds = build_dataset(spec, "train", {"resolution": 32, "mask_size": 32, "include_real": True,
                                       "video_mode": True, "clip_size": 4})
    assert len(ds) == 2 * 2 * 2  # 2 videos per label, 8 frames -> 2 clips each
    fake = next(ds[k] for k in range(len(ds)) if ds[k]["label"] == 1)
    assert fake["mask"].shape == (4, 1, 32, 32) and all(float(fake["mask"][t].sum()) > 0 for t in range(4))
    assert fake["video"].startswith(f"DemoVideo/{FAKE}/")


def test_the_signal_is_temporal():
    """Inside the region the frame-to-frame change is larger for fakes; the region's offset in one
    frame has the same size for both."""
    def region_stats(fake, seed):
        frames, masks = render_video(np.random.default_rng(seed), 64, 16, fake)
        if not fake:
            _, masks = render_video(np.random.default_rng(seed), 64, 16, True)  # same draws, same region
        f = np.stack(frames).astype(np.float32).mean(-1)
        inside = np.stack(masks) > 0
        diffs = np.abs(np.diff(f, axis=0))[inside[1:]].mean()
        return diffs

    fake = np.mean([region_stats(True, s) for s in range(6)])
    real = np.mean([region_stats(False, s) for s in range(6)])
    assert fake > real + 4.0


def test_three_manipulations_each_its_own_dataset_with_the_same_reals(tmp_path):
    from declip_plugin.errors import DataError

    m = make_demo_videos(tmp_path / "demo_video", size=32, n_frames=6, n_train=1, n_val=1, n_test=2,
                         methods=("flicker", "jitter", "freeze"))
    cfg = {"data_root": str(tmp_path), "resolution": 32, "mask_size": 32, "include_real": True}
    reals = None
    for method in ("flicker", "jitter", "freeze"):
        ds = build_dataset(f"demo-video-{method}", "test", cfg)
        fakes = {os.path.basename(os.path.dirname(os.path.dirname(os.path.dirname(s[0])))) for s in ds.samples
                 if s[1] == 1}
        assert fakes == {f"DemoVideo_{method}"}
        mine = sorted(s[0] for s in ds.samples if s[1] == 0)
        assert len(mine) == 2 * 6 and (reals is None or mine == reals)
        reals = mine
    assert sorted(m["jsons"]) == ["DemoVideo", "DemoVideo-flicker", "DemoVideo-freeze", "DemoVideo-jitter"]
    with pytest.raises(DataError, match="wobble"):
        make_demo_videos(tmp_path / "x", size=32, n_frames=4, n_train=1, n_val=1, n_test=1, methods=("wobble",))


def _region_motion(method, seed):
    """Mean frame-to-frame change inside the region and outside it (camera drift + noise)."""
    frames, masks = render_video(np.random.default_rng(seed), 64, 12, True, method)
    f = np.stack(frames).astype(np.float32).mean(-1)
    inside = np.stack(masks)[1:] > 0
    d = np.abs(np.diff(f, axis=0))
    return d[inside].mean(), d[~inside].mean()


def test_jitter_and_freeze_leave_temporal_traces_of_their_own():
    """jitter: the region moves against its surroundings (more change inside than outside); freeze: its
    pixels do not change at all while the noise outside does."""
    jit = np.array([_region_motion("jitter", s) for s in range(4)])
    frz = np.array([_region_motion("freeze", s) for s in range(4)])
    assert (jit[:, 0] > jit[:, 1] + 1.0).all()
    assert (frz[:, 0] < 0.5 * frz[:, 1]).all()


def test_regenerating_leaves_no_json_pointing_at_removed_frames(tmp_path, monkeypatch):
    """A rerun replaces the whole set (frames, JSONs, manifest): a JSON of an earlier run's method is
    gone with its frames, every frame a JSON lists exists, and a run killed midway leaves the
    previous set readable."""
    import glob
    import json

    from declip_plugin.data import demo_video

    out = tmp_path / "demo_video"
    kw = dict(size=16, n_frames=2, n_train=1, n_val=1, n_test=1)
    make_demo_videos(out, methods=("flicker", "jitter"), **kw)
    make_demo_videos(out, methods=("freeze",), **kw)
    names = sorted(os.path.basename(p) for p in glob.glob(str(out / "dataset_json" / "*.json")))
    assert names == ["DemoVideo-freeze.json", "DemoVideo.json"]
    assert not os.path.exists(out / "rgb" / "DemoVideo" / "DemoVideo_jitter")

    def frames(json_path):
        with open(json_path, encoding="utf-8") as f:
            tree = next(iter(json.load(f).values()))
        return [p for label in tree.values() for split in label.values() for v in split.values() for p in v["frames"]]

    for path in glob.glob(str(out / "dataset_json" / "*.json")):
        assert all(os.path.isfile(out / p) for p in frames(path))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_video, "_write_jsons", killed)
    with pytest.raises(KeyboardInterrupt):
        make_demo_videos(out, methods=("jitter",), **kw)
    names_after = sorted(os.listdir(out))
    assert names_after == ["dataset_json", "demo_video.json", "rgb"]  # no staging folder left
    assert all(os.path.isfile(out / p) for p in frames(out / "dataset_json" / "DemoVideo-freeze.json"))
