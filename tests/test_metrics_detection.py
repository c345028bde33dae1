"""Detection metrics against brute-force computations written here from their definitions (pairs for
the AUC, precision at every positive for the AP, the ROC points walked threshold by threshold for
DeepfakeBench's EER), never against scikit-learn, which is what the code under test uses."""
import logging
import math
import pickle

import numpy as np
import pytest
import torch

from declip_plugin.metrics import DetectionMetrics
from declip_plugin.metrics import detection as det


def _brute_auc(y, s):
    """P(score of a fake > score of a real) + 0.5 P(equal), over every (fake, real) pair."""
    pos, neg = s[y == 1], s[y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _brute_ap(y, s):
    """Mean over the fakes of the precision of ``score >= that fake's score`` (ties share a threshold)."""
    precisions = [np.sum(y[s >= t] == 1) / np.sum(s >= t) for t in s[y == 1]]
    return float(np.mean(precisions))


def _brute_eer(y, s):
    """DeepfakeBench's EER (training/metrics/utils.py): on the ROC curve as scikit-learn's ``roc_curve``
    lays it out (a point per distinct threshold, high to low; a point dropped where the step into it equals
    the step out of it; (0, 0) prepended), the fpr of the first point minimising |fnr - fpr|."""
    n_pos, n_neg = np.sum(y == 1), np.sum(y == 0)
    points = [(np.sum((s >= t) & (y == 0)), np.sum((s >= t) & (y == 1))) for t in sorted(set(s), reverse=True)]
    kept = [p for i, p in enumerate(points) if i in (0, len(points) - 1)
            or (p[0] - points[i - 1][0], p[1] - points[i - 1][1]) != (points[i + 1][0] - p[0], points[i + 1][1] - p[1])]
    curve = [(0.0, 0.0)] + [(fp / n_neg, tp / n_pos) for fp, tp in kept]
    gaps = [abs((1 - tpr) - fpr) for fpr, tpr in curve]
    return curve[gaps.index(min(gaps))][0]


def _brute_best_acc(y, s):
    best = np.mean(y == 0)  # everything real
    for t in np.unique(s):
        best = max(best, np.mean((s >= t).astype(int) == y))
        best = max(best, np.mean((s > t).astype(int) == y))
    return best


def _random_case(seed, n=300, decimals=None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(rng.normal(0.35 + 0.3 * y, 0.25), 0, 1)
    if decimals is not None:
        s = np.round(s, decimals)  # many ties
    return y, s


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_compute_matches_brute_force(seed, decimals):
    y, s = _random_case(seed, n=120, decimals=decimals)
    m = DetectionMetrics()
    m.update(torch.tensor(s, dtype=torch.float64), torch.tensor(y))
    r = m.compute()
    s32 = torch.tensor(s, dtype=torch.float32).double().numpy()  # stored as float32
    assert r["auc"] == pytest.approx(_brute_auc(y, s32), abs=1e-12)
    assert r["ap"] == pytest.approx(_brute_ap(y, s32), abs=1e-12)
    assert r["acc"] == pytest.approx(np.mean((s32 > 0.5).astype(int) == y), abs=1e-12)
    assert r["eer"] == pytest.approx(_brute_eer(y, s32), abs=1e-12)
    assert r["acc_best"] == pytest.approx(_brute_best_acc(y, s32), abs=1e-12)
    assert (r["n"], r["n_real"], r["n_fake"]) == (len(y), int((y == 0).sum()), int(y.sum()))


@pytest.mark.parametrize("seed", range(4))
def test_pure_functions_match_brute_force(seed):
    y, s = _random_case(seed + 10, n=97, decimals=1)
    assert det.roc_auc(s, y) == pytest.approx(_brute_auc(y, s), abs=1e-12)
    assert det.average_precision(s, y) == pytest.approx(_brute_ap(y, s), abs=1e-12)
    assert det.eer(s, y) == pytest.approx(_brute_eer(y, s), abs=1e-12)
    assert det.accuracy(s, y) == pytest.approx(np.mean((s > 0.5) == y))


def test_eer_keeps_deepfakebench_first_minimiser_on_the_thinned_curve():
    """A case where the thinning of the curve decides the answer, worked by hand: the point where
    fnr == fpr lies in the middle of a straight run of the curve and is dropped, as DeepfakeBench's
    ``roc_curve`` drops it, so the EER is the fpr of the first remaining minimiser, not that crossing."""
    s = np.array([0.9, 0.9, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2])
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    # thresholds .9 .6 .4 .2 -> (fp, tp) (0,2) (1,3) (2,4) (4,4): (1,3), where fnr = fpr = 0.25, sits on the
    # straight run (0,2)-(1,3)-(2,4) and is dropped; |fnr - fpr| on what is left: 1, .5, .5, 1 -> fpr 0
    assert _brute_eer(y, s) == 0.0
    assert det.eer(s, y) == 0.0
    # AUC by hand: 8 wins of the two 0.9 fakes, 3 + 0.5 of the 0.6 one, 2 + 0.5 of the 0.4 one, over 16 pairs
    assert det.roc_auc(s, y) == pytest.approx(14 / 16) and _brute_auc(y, s) == pytest.approx(14 / 16)
    # AP by hand: precisions at the fakes' thresholds 2/2, 2/2, 3/4, 4/6
    assert det.average_precision(s, y) == pytest.approx((1 + 1 + 3 / 4 + 4 / 6) / 4)


def test_known_values():
    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert det.roc_auc(s, y) == pytest.approx(0.75)
    assert det.average_precision(s, y) == pytest.approx(0.8333333333333333)
    assert det.best_threshold_accuracy(s, y) == pytest.approx(0.75)
    # strict ">" at 0.5 as DeepfakeBench: 0.5 is predicted real
    assert det.accuracy([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert det.accuracy([0.5], [0]) == 1.0


@pytest.mark.parametrize("layout", ["reals_second", "interleaved", "reals_first", "shuffled"])
def test_acc_best_any_order(layout):
    rng = np.random.default_rng(3)
    real = rng.uniform(0.0, 0.6, 40)
    fake = rng.uniform(0.4, 1.0, 60)
    if layout == "reals_second":
        s, y = np.r_[fake, real], np.r_[np.ones(60), np.zeros(40)]
    elif layout == "reals_first":
        s, y = np.r_[real, fake], np.r_[np.zeros(40), np.ones(60)]
    elif layout == "interleaved":
        s = np.empty(100)
        y = np.empty(100)
        s[0:80:2], y[0:80:2] = real, 0
        s[1:80:2], y[1:80:2] = fake[:40], 1
        s[80:], y[80:] = fake[40:], 1
    else:
        perm = rng.permutation(100)
        s, y = np.r_[real, fake][perm], np.r_[np.zeros(40), np.ones(60)][perm]
    y = y.astype(int)
    expected = _brute_best_acc(y, s)
    assert det.best_threshold_accuracy(s, y) == pytest.approx(expected)
    thr, acc = det.best_threshold(s, y)
    assert np.mean((s >= thr).astype(int) == y) == pytest.approx(acc)
    m = DetectionMetrics()
    m.update(torch.tensor(s), torch.tensor(y))
    assert m.compute()["acc_best"] == pytest.approx(
        _brute_best_acc(y, torch.tensor(s).float().double().numpy()))


def test_acc_best_separable_reversed_and_all_real_best():
    # fakes first, perfectly separable: the official "first half is real" shortcut fails here
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.05])
    y = np.array([1, 1, 1, 0, 0, 0])
    assert det.best_threshold_accuracy(s, y) == 1.0
    # inverted scores: best is to call everything real (4 of 5)
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    y = np.array([0, 0, 0, 0, 1])
    thr, acc = det.best_threshold(s, y)
    assert acc == pytest.approx(0.8)


def test_single_class(caplog):
    m = DetectionMetrics()
    with caplog.at_level(logging.INFO, logger="declip_plugin.metrics.detection"):
        m.update(torch.tensor([0.2, 0.7, 0.9]), torch.tensor([1, 1, 1]))
        r = m.compute()
    for k in ("auc", "eer", "ap", "acc_best"):
        assert math.isnan(r[k])
    assert r["acc"] == pytest.approx(2 / 3)
    assert r["n_real"] == 0 and r["n_fake"] == 3
    assert any("undefined" in rec.getMessage() for rec in caplog.records)
    assert math.isnan(det.roc_auc([0.1, 0.2], [0, 0]))
    assert math.isnan(det.eer([0.1, 0.2], [1, 1]))


def test_empty():
    r = DetectionMetrics().compute()
    assert r["n"] == 0 and math.isnan(r["acc"]) and math.isnan(r["auc"])


def _split_updates(y, s, vids, cuts):
    m = DetectionMetrics()
    prev = 0
    for c in list(cuts) + [len(y)]:
        m.update(torch.tensor(s[prev:c]), torch.tensor(y[prev:c]))
        prev = c
    return m


def test_accumulation_merge_and_state():
    y, s = _random_case(5, n=240, decimals=2)
    vids = [f"v{i // 3}" for i in range(len(y))]
    y = np.array([y[(i // 3) * 3] for i in range(len(y))])  # consistent label per video
    one = _split_updates(y, s, vids, []).compute()
    many = _split_updates(y, s, vids, [17, 100, 101, 200]).compute()
    a = _split_updates(y[:90], s[:90], vids[:90], [40])
    b = _split_updates(y[90:], s[90:], vids[90:], [10])
    merged = a.merge(b).compute()
    a2 = _split_updates(y[:90], s[:90], vids[:90], [])
    b2 = _split_updates(y[90:], s[90:], vids[90:], [])
    st = pickle.loads(pickle.dumps([a2.state(), b2.state()]))
    gathered = DetectionMetrics.from_state(st[0]).merge(DetectionMetrics.from_state(st[1]))
    via_state = gathered.compute()
    for r in (many, merged, via_state):
        assert r.keys() == one.keys()
        for k in one:
            assert r[k] == pytest.approx(one[k], abs=1e-12), k
    assert len(gathered) == len(y)


def test_state_is_plain_python():
    m = DetectionMetrics()
    m.update(torch.tensor([0.3, 0.6]), torch.tensor([0, 1]))
    st = m.state()
    assert isinstance(st["probs"], list) and isinstance(st["probs"][0], float)
    assert isinstance(st["labels"][0], int)


def test_keys():
    m = DetectionMetrics()
    m.update(torch.tensor([0.3, 0.6]), torch.tensor([0, 1]))
    assert set(m.compute()) == {"acc", "auc", "eer", "ap", "acc_best", "n", "n_real", "n_fake"}
