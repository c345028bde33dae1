"""Video-level metrics: per-video means keyed by the full identity, AUC / AP / EER, the CSV."""
import csv
import itertools
import math

import numpy as np
import pytest
import torch

from declip_plugin.metrics.video import VideoMetrics


def colliding_batches(seed=0):
    """FF++-like data: ids 000..005 under a real folder and two manipulation folders (the same ids
    in both fake folders), 3 frames per video, scores drawn at random."""
    rng = np.random.default_rng(seed)
    samples = []
    for folder, label in (("FF-real", 0), ("Deepfakes", 1), ("Face2Face", 1)):
        for vid in range(6):
            base = rng.uniform(0.2, 0.8) + (0.15 if label else 0)
            for _ in range(3):
                samples.append((f"FF/{folder}/{vid:03d}", label, float(np.clip(base + rng.normal(0, 0.1), 0, 1))))
    rng.shuffle(samples)
    return samples


def brute_force_auc(videos):
    """AUC by counting every (fake, real) pair of per-video means: wins + ties / 2."""
    fakes = [s for s, y in videos if y == 1]
    reals = [s for s, y in videos if y == 0]
    wins = sum(1.0 if f > r else 0.5 if f == r else 0.0 for f, r in itertools.product(fakes, reals))
    return wins / (len(fakes) * len(reals))


def test_video_auc_equals_brute_force_with_colliding_ids(tmp_path):
    samples = colliding_batches()
    m = VideoMetrics({})
    for i in range(0, len(samples), 5):  # batches of 5, as data dicts
        chunk = samples[i:i + 5]
        m.update_batch({"video": [c[0] for c in chunk], "label": torch.tensor([c[1] for c in chunk])},
                       {"prob": torch.tensor([c[2] for c in chunk])})
    # expected: group by the full identity by hand
    groups = {}
    for v, y, s in samples:
        groups.setdefault(v, []).append((y, s))
    videos = [(sum(s for _, s in g) / len(g), g[0][0]) for g in groups.values()]
    out = m.compute()
    assert out["n_videos"] == 18  # 6 real + 6 + 6 fake, the colliding ids kept apart
    assert out["video_auc"] == pytest.approx(brute_force_auc(videos), abs=1e-12)
    # keyed on the id alone (DeepfakeBench), Deepfakes/00k and Face2Face/00k would merge: 12 videos
    assert len({v.rsplit("/", 1)[1] + str(y) for v, y, _ in samples}) == 12
    path = m.write_files(str(tmp_path))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18
    by_video = {r["video"]: r for r in rows}
    g = groups["FF/Face2Face/003"]
    assert float(by_video["FF/Face2Face/003"]["score"]) == pytest.approx(sum(s for _, s in g) / 3, abs=1e-6)
    assert by_video["FF/Face2Face/003"]["n_samples"] == "3" and by_video["FF/FF-real/003"]["label"] == "0"


def test_merge_across_processes_equals_one_pass():
    samples = colliding_batches(1)
    whole, a, b = VideoMetrics(), VideoMetrics(), VideoMetrics()
    whole.update(*zip(*[(s, y, v) for v, y, s in samples]))
    half = len(samples) // 2  # videos split across the two shards
    a.update(*zip(*[(s, y, v) for v, y, s in samples[:half]]))
    b.update(*zip(*[(s, y, v) for v, y, s in samples[half:]]))
    merged = VideoMetrics.from_state(a.state()).merge(VideoMetrics.from_state(b.state()))
    assert merged.compute() == pytest.approx(whole.compute())


def test_eer_ap_and_degenerate_cases():
    m = VideoMetrics()
    m.update([0.1, 0.4, 0.35, 0.8] * 2, [0, 0, 1, 1] * 2, ["r/a", "r/b", "f/c", "f/d"] * 2)  # two frames each
    out = m.compute()
    assert out["video_auc"] == pytest.approx(0.75)
    assert out["video_ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["video_eer"] == pytest.approx(0.5)
    only_fake = VideoMetrics()
    only_fake.update([0.5, 0.6], [1, 1], ["f/a", "f/a"])
    assert math.isnan(only_fake.compute()["video_auc"])
    images = VideoMetrics()  # one sample per "video": an image set has no video level
    images.update([0.1, 0.9], [0, 1], ["r/a", "f/b"])
    assert images.compute()["video_auc"] is None and images.write_files("unused") is None
    none = VideoMetrics()
    none.update_batch({"video": [None, None], "label": torch.tensor([0, 1])}, {"prob": torch.tensor([0.1, 0.9])})
    assert none.compute() == {"video_auc": None, "video_ap": None, "video_eer": None, "n_videos": 0}
