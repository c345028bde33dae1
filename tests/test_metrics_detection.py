import logging
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

from declip_plugin.metrics import DetectionMetrics
from declip_plugin.metrics import detection as det


def _dfb_eer(y, s):
    """DeepfakeBench's EER (training/metrics/utils.py), written out with sklearn."""
    fpr, tpr, _ = roc_curve(y, s, pos_label=1)
    fnr = 1 - tpr
    return fpr[np.nanargmin(np.absolute(fnr - fpr))]


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


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_compute_matches_sklearn(seed, decimals):
    y, s = _random_case(seed, decimals=decimals)
    m = DetectionMetrics()
    m.update(torch.tensor(s, dtype=torch.float64), torch.tensor(y))
    r = m.compute()
    s32 = torch.tensor(s, dtype=torch.float32).double().numpy()  # stored as float32
    assert r["auc"] == pytest.approx(roc_auc_score(y, s32), abs=1e-12)
    assert r["ap"] == pytest.approx(average_precision_score(y, s32), abs=1e-12)
    assert r["acc"] == pytest.approx(accuracy_score(y, (s32 > 0.5).astype(int)), abs=1e-12)
    assert r["eer"] == pytest.approx(_dfb_eer(y, s32), abs=1e-12)
    assert r["acc_best"] == pytest.approx(_brute_best_acc(y, s32), abs=1e-12)
    assert (r["n"], r["n_real"], r["n_fake"]) == (len(y), int((y == 0).sum()), int(y.sum()))


@pytest.mark.parametrize("seed", range(4))
def test_pure_functions_match_sklearn(seed):
    y, s = _random_case(seed + 10, n=157, decimals=1)
    assert det.roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert det.average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert det.eer(s, y) == pytest.approx(_dfb_eer(y, s), abs=1e-12)
    assert det.accuracy(s, y) == pytest.approx(accuracy_score(y, s > 0.5))


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
