"""The procedural demo video set: deterministic, DeepfakeBench layout, temporal-only signal."""
import hashlib
import os

import numpy as np

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
