"""Image-level (detection) metrics: scores accumulated with torch on the device of the predictions;
AUC, AP, the ROC curve and the EER computed by scikit-learn, accuracies by torch.

One implementation serves every host (the embedded engine and a real DeepfakeBench): scores are
accumulated batch by batch with :meth:`DetectionMetrics.update`, accumulators from several
processes are combined with :meth:`DetectionMetrics.merge` (or through the plain-python
:meth:`DetectionMetrics.state` / :meth:`DetectionMetrics.from_state`, which suit
``torch.distributed.all_gather_object``), and :meth:`DetectionMetrics.compute` returns the
DeepfakeBench keys ``acc``, ``auc``, ``eer``, ``ap`` plus ``acc_best``, ``n``, ``n_real`` and
``n_fake``. Video-level metrics (``video_auc`` ...) are the ``video`` metric plugin's (metrics/video.py).

Definitions (all match DeepfakeBench ``training/metrics/utils.py::get_test_metrics``; AUC, AP, the
ROC curve and the EER are scikit-learn's, computed at :meth:`DetectionMetrics.compute` over the
accumulated scores):

* ``acc``: fraction of samples with ``(prob > 0.5) == label`` (strict ``>``, as DeepfakeBench),
  on a 0-1 scale.
* ``auc``: area under the ROC curve, ties counted as one half (equal to
  ``sklearn.metrics.roc_auc_score``).
* ``ap``: average precision, the step-wise (non-interpolated) area under the precision-recall
  curve (equal to ``sklearn.metrics.average_precision_score``).
* ``eer``: DeepfakeBench's definition, reproduced exactly: on ``sklearn.metrics.roc_curve`` (with
  its default ``drop_intermediate=True`` and the extra ``(0, 0)`` point), take the first point
  minimising ``|fnr - fpr|`` (``fnr = 1 - tpr``) and report ``fpr`` there. It is not the mean
  ``(fpr + fnr) / 2`` nor an interpolated crossing.
* ``acc_best``: the best accuracy over every threshold (``fake if prob >= t`` for every distinct
  score ``t``, plus "everything real"), whatever the order of real and fake samples.
With a single class present, ``auc``, ``eer``, ``ap`` and ``acc_best`` are ``float('nan')`` and the case is logged (info: a localization test set of fakes only is normal).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Tuple

import torch

from .base import Metric, MetricInfo

logger = logging.getLogger(__name__)

__all__ = [
    "DetectionMetrics",
    "batch_metrics",
    "accuracy",
    "roc_curve",
    "roc_auc",
    "average_precision",
    "eer",
    "best_threshold",
    "best_threshold_accuracy",
    "Ranking",
]

_STATE_VERSION = 1


# ----------------------------------------------------------------------------------------------
# tensor helpers
# ----------------------------------------------------------------------------------------------
def _work_device(device: torch.device) -> torch.device:
    """The device to compute on: the data's own, except MPS (no float64) -> CPU."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def _to_tensor(x: Any, device: Optional[torch.device] = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        t = torch.as_tensor(x)
    if device is not None:
        t = t.to(device)
    return t


def _scores_labels_1d(scores: Any, labels: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    s = _to_tensor(scores)
    s = s.to(_work_device(s.device)).reshape(-1)
    if not torch.is_floating_point(s):
        s = s.double()
    y = _to_tensor(labels, s.device).reshape(-1)
    if y.numel() != s.numel():
        raise ValueError(f"scores ({s.numel()}) and labels ({y.numel()}) differ in length")
    return s, ((y >= 0.5) if torch.is_floating_point(y) else (y > 0))


# ----------------------------------------------------------------------------------------------
# ranking core (rows of scores; shared with the localization metrics)
# ----------------------------------------------------------------------------------------------
class Ranking:
    """Each row of ``scores`` (R, P) sorted in decreasing order, with its tie groups.

    Every ranking metric here is a function of the partitions ``{score >= t}`` for ``t`` a
    distinct score of the row; tie groups are handled exactly (elements with equal scores are
    never separated). ``end[r, k]`` / ``start[r, k]`` are the positions (in sorted order) of the
    last / first element of the tie group of sorted element ``k``; ``last`` flags the last
    element of each group. One sort serves every metric of the row.
    """

    def __init__(self, scores: torch.Tensor):
        if scores.ndim != 2:
            raise ValueError(f"Ranking expects (R, P) scores, got shape {tuple(scores.shape)}")
        self.sorted_scores, self.order = torch.sort(scores, dim=1, descending=True)
        s = self.sorted_scores
        R, P = s.shape
        self.n = P
        last = torch.ones_like(s, dtype=torch.bool)
        last[:, :-1] = s[:, :-1] != s[:, 1:]
        self.last = last
        self._idx = torch.arange(P, device=s.device).expand(R, P)
        # last element of my group: the smallest "last" position at or after me
        cand = torch.where(last, self._idx, P)
        self.end = torch.flip(torch.cummin(torch.flip(cand, [1]), dim=1).values, [1])
        self._start: Optional[torch.Tensor] = None

    @property
    def start(self) -> torch.Tensor:
        if self._start is None:  # first element of my group: largest "first" position <= me
            first = torch.ones_like(self.last)
            first[:, 1:] = self.last[:, :-1]
            self._start = torch.cummax(torch.where(first, self._idx, 0), dim=1).values
        return self._start

    def _sorted_counts(self, flags: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Boolean ``flags`` in sorted order and their running count (int64)."""
        w = flags.bool().gather(1, self.order)
        return w, torch.cumsum(w, dim=1, dtype=torch.int64)

    def ap_auc(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-row (average precision, ROC AUC) of boolean ``labels``: AP as sklearn's
        ``average_precision_score`` (NaN without positives), AUC with ties counted one half as
        ``roc_auc_score`` (NaN for a one-class row)."""
        pos_s, tp = self._sorted_counts(labels)
        n_pos = tp[:, -1].double()
        n_neg = self.n - n_pos
        tp_end = tp.gather(1, self.end)
        # AP = sum over positives of the precision at their group's threshold / #positives
        prec = tp_end.double() / (self.end + 1).double()
        ap = torch.where(pos_s, prec, 0.0).sum(1) / n_pos.clamp_min(1)
        ap = torch.where(n_pos > 0, ap, math.nan)
        # AUC: per positive, #negatives scored lower + 0.5 * #negatives tied with it
        start = self.start
        fp_end = (self.end + 1 - tp_end).double()
        tp_before = tp.gather(1, start) - pos_s.gather(1, start).to(torch.int64)
        fp_before = (start - tp_before).double()
        wins = n_neg[:, None] - 0.5 * (fp_end + fp_before)
        auc = torch.where(pos_s, wins, 0.0).sum(1) / (n_pos * n_neg).clamp_min(1)
        auc = torch.where((n_pos > 0) & (n_neg > 0), auc, math.nan)
        return ap, auc

    def average_precision(self, labels: torch.Tensor) -> torch.Tensor:
        return self.ap_auc(labels)[0]

    def roc_auc(self, labels: torch.Tensor) -> torch.Tensor:
        return self.ap_auc(labels)[1]

    def best_f1(self, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """Per-row best F1 over all thresholds, counting only pixels flagged ``pos`` or ``neg``
        (pixels in neither are ignored). Includes the empty prediction (F1 0) and the full one.
        NaN for a row with no ``pos`` pixel."""
        pos = pos.bool()
        _, tp = self._sorted_counts(pos)
        _, fp = self._sorted_counts(neg.bool() & ~pos)
        n_pos = tp[:, -1:].double()
        tpd = tp.double()
        f1 = 2.0 * tpd / (tpd + fp.double() + n_pos).clamp_min(1e-300)
        best = torch.where(self.last, f1, 0.0).max(dim=1).values
        return torch.where(n_pos[:, 0] > 0, best, math.nan)

    def best_accuracy(self, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-row (best accuracy, threshold) for the rule ``positive if score >= threshold``;
        threshold ``inf`` when predicting everything negative is best."""
        _, tp = self._sorted_counts(labels)
        fp = self._idx + 1 - tp
        n_neg = fp[:, -1:]
        correct = torch.where(self.last, tp + (n_neg - fp), -1)
        best, arg = correct.max(dim=1)
        thr = self.sorted_scores.gather(1, arg[:, None])[:, 0].double()
        all_neg = n_neg[:, 0] > best  # predicting nothing positive is strictly better
        best = torch.where(all_neg, n_neg[:, 0], best)
        thr = torch.where(all_neg, math.inf, thr)
        return best.double() / max(self.n, 1), thr


# ----------------------------------------------------------------------------------------------
# pure functions on 1-D scores / labels
# ----------------------------------------------------------------------------------------------
def accuracy(scores: Any, labels: Any, threshold: float = 0.5) -> float:
    """Fraction of ``(score > threshold) == label`` (strict ``>`` as DeepfakeBench)."""
    s, y = _scores_labels_1d(scores, labels)
    if s.numel() == 0:
        return math.nan
    return float(((s > threshold) == y).double().mean())


def _numpy_1d(scores: Any, labels: Any):
    s, y = _scores_labels_1d(scores, labels)
    return s.double().cpu().numpy(), y.cpu().numpy().astype("int64")


def _two_classes(y) -> bool:
    n_pos = int(y.sum())
    return 0 < n_pos < len(y)


def roc_curve(scores: Any, labels: Any, drop_intermediate: bool = True):
    """``(fpr, tpr, thresholds)`` of ``sklearn.metrics.roc_curve`` (numpy arrays)."""
    from sklearn.metrics import roc_curve as _roc_curve

    s, y = _numpy_1d(scores, labels)
    if len(s) == 0:
        raise ValueError("roc_curve needs at least one sample")
    return _roc_curve(y, s, drop_intermediate=drop_intermediate)


def roc_auc(scores: Any, labels: Any) -> float:
    """``sklearn.metrics.roc_auc_score``; NaN if one class is missing."""
    from sklearn.metrics import roc_auc_score

    s, y = _numpy_1d(scores, labels)
    return float(roc_auc_score(y, s)) if _two_classes(y) else math.nan


def average_precision(scores: Any, labels: Any) -> float:
    """``sklearn.metrics.average_precision_score``; NaN without positives."""
    from sklearn.metrics import average_precision_score

    s, y = _numpy_1d(scores, labels)
    return float(average_precision_score(y, s)) if len(s) and y.sum() > 0 else math.nan


def eer(scores: Any, labels: Any) -> float:
    """Equal error rate as DeepfakeBench: ``fpr`` at the first point of sklearn's ``roc_curve``
    (``drop_intermediate=True``) minimising ``|fnr - fpr|``; NaN if one class is missing."""
    import numpy as np

    s, y = _numpy_1d(scores, labels)
    if not _two_classes(y):
        return math.nan
    fpr, tpr, _ = roc_curve(s, y)
    return float(fpr[int(np.nanargmin(np.abs((1 - tpr) - fpr)))])


def best_threshold(scores: Any, labels: Any) -> Tuple[float, float]:
    """``(threshold, accuracy)`` maximising accuracy of ``fake if score >= threshold`` over every
    distinct score (and ``inf``: everything real). Order of the samples is irrelevant."""
    s, y = _scores_labels_1d(scores, labels)
    if s.numel() == 0:
        return math.nan, math.nan
    acc, thr = Ranking(s[None]).best_accuracy(y[None])
    return float(thr[0]), float(acc[0])


def best_threshold_accuracy(scores: Any, labels: Any) -> float:
    """The accuracy at the best threshold (see :func:`best_threshold`)."""
    return best_threshold(scores, labels)[1]


# ----------------------------------------------------------------------------------------------
# accumulator
# ----------------------------------------------------------------------------------------------
class DetectionMetrics(Metric):
    """Accumulates image-level fake probabilities and labels; see the module docstring."""

    keys = ("acc", "auc", "eer", "ap", "acc_best")
    describe = (
        MetricInfo("auc", "AUC", family="detection", needs_both_classes=True, headline=True, tables=("video",),
                   grid=True, curve=True),
        MetricInfo("ap", "AP", family="detection", needs_both_classes=True, tables=("default", "detection"), grid=True,
                   curve=True),
        MetricInfo("eer", "EER", higher_is_better=False, family="detection", needs_both_classes=True,
                   tables=("default", "detection"), grid=True),
        MetricInfo("acc", "accuracy", family="detection", needs_both_classes=True, tables=("default",)),
        MetricInfo("acc_best", "best-threshold accuracy", family="detection", needs_both_classes=True),
    )

    @classmethod
    def from_config(cls, config):
        return cls()

    def update_batch(self, data_dict: Dict[str, Any], pred_dict: Dict[str, Any]) -> None:
        """The metric contract (metrics/base.py): ``pred_dict['prob']`` against ``data_dict['label']``."""
        self.update(pred_dict["prob"].float(), data_dict["label"])

    def __init__(self, threshold: float = 0.5):
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self._probs: List[torch.Tensor] = []
        self._labels: List[torch.Tensor] = []
        self._n = 0
        self._warned_range = False

    def __len__(self) -> int:
        return self._n

    # -- accumulation --------------------------------------------------------------------------
    def update(self, prob: Any, label: Any) -> None:
        """Add a batch: ``prob`` (B,) fake probabilities in [0, 1], ``label`` (B,) 0/1 (any
        positive integer counts as fake, as DeepfakeBench; float labels at 0.5)."""
        p = _to_tensor(prob)
        p = p.reshape(-1).float()
        y = _to_tensor(label, p.device).reshape(-1)
        if y.numel() != p.numel():
            raise ValueError(f"prob has {p.numel()} values but label has {y.numel()}")
        y = ((y >= 0.5) if torch.is_floating_point(y) else (y > 0)).to(torch.int64)
        if not self._warned_range and p.numel() and bool(((p < 0) | (p > 1)).any()):
            logger.warning("DetectionMetrics.update: probabilities outside [0, 1] "
                           "(were logits passed?)")
            self._warned_range = True
        self._append(p, y)

    def _append(self, p: torch.Tensor, y: torch.Tensor) -> None:
        self._probs.append(p)
        self._labels.append(y)
        self._n += p.numel()

    def merge(self, other: "DetectionMetrics") -> "DetectionMetrics":
        """Append ``other``'s samples (after this accumulator's); returns ``self``."""
        if other.threshold != self.threshold:
            raise ValueError("cannot merge DetectionMetrics with different thresholds")
        for p, y in zip(other._probs, other._labels):
            self._probs.append(p)
            self._labels.append(y)
        self._n += other._n
        return self

    def state(self) -> Dict[str, Any]:
        """Plain python (CPU) objects, e.g. for ``torch.distributed.all_gather_object``."""
        p, y = self._gathered(torch.device("cpu"))
        return {
            "version": _STATE_VERSION,
            "threshold": self.threshold,
            "probs": p.tolist(),
            "labels": y.tolist(),
        }

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "DetectionMetrics":
        m = cls(threshold=state.get("threshold", 0.5))
        probs = torch.tensor(state["probs"], dtype=torch.float32)
        labels = torch.tensor(state["labels"], dtype=torch.int64)
        if probs.numel():
            m._append(probs, labels)
        return m

    # -- results ---------------------------------------------------------------------------------
    def _gathered(self, device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        if not self._probs:
            dev = device or torch.device("cpu")
            return torch.zeros(0, device=dev), torch.zeros(0, dtype=torch.int64, device=dev)
        dev = _work_device(device or self._probs[0].device)
        p = torch.cat([t.to(dev) for t in self._probs])
        y = torch.cat([t.to(dev) for t in self._labels])
        return p, y

    def compute(self) -> Dict[str, Any]:
        p, y = self._gathered()
        n = int(p.numel())
        n_fake = int(y.sum()) if n else 0
        n_real = n - n_fake
        nan = math.nan
        out: Dict[str, Any] = {
            "acc": float(((p > self.threshold).to(torch.int64) == y).double().mean()) if n else nan,
            "auc": nan, "eer": nan, "ap": nan, "acc_best": nan,
            "n": n, "n_real": n_real, "n_fake": n_fake,
        }
        two_classes = n_real > 0 and n_fake > 0
        if not two_classes:
            logger.info("DetectionMetrics: %d real and %d fake samples; auc, eer, ap and "
                           "acc_best are undefined (NaN)", n_real, n_fake)
        else:
            out["auc"], out["ap"], out["eer"] = roc_auc(p, y), average_precision(p, y), eer(p, y)
            out["acc_best"] = float(Ranking(p[None].double()).best_accuracy(y[None].bool())[0][0])
        return out


def batch_metrics(prob: Any, label: Any) -> Dict[str, Any]:
    """``acc``, ``auc``, ``eer`` and ``ap`` of one batch (a detector's ``get_train_metrics``)."""
    m = DetectionMetrics()
    m.update(_to_tensor(prob).float(), label)
    return {k: v for k, v in m.compute().items() if k in ("acc", "auc", "eer", "ap")}
