"""Pixel-level (localization) metrics, computed per image with torch on the device of the
predictions and kept as python floats (memory O(images), not O(pixels)).

Protocol (official DeCLIP ``utils/utils.py`` and ``validate.py``):

* Predictions are mask *logits* (B, 1, h, w). They go through a sigmoid and are then resized
  (bilinear, ``align_corners=False``, antialiased) to the ground-truth size, in this order as in
  the official ``validate.py``, whose torchvision ``F.resize`` (0.17, its pinned version, and later)
  antialiases tensors by default: that matters when the GT is smaller than the prediction (e.g.
  DeepfakeBench's 224 px masks against the 256 px map); upsampling is the same either way. The GT
  is binarised at 0.5 (1 = manipulated).
* An image is *manipulated* when its GT has a positive pixel and its label (if given) is not 0;
  otherwise it has an *empty GT* for scoring: a real image, a fake whose mask marks no pixel, or
  an image labelled real whatever its mask. Those never enter the manipulated averages: they give
  ``fp_rate`` (fraction of pixels with probability > ``threshold``), averaged as
  ``empty_gt_fp_rate`` over ``n_empty_gt`` images (named for that population: it is not the real
  images alone when fakes with empty masks are present).
* Per manipulated image:

  - ``iou``: 100 * |pred & gt| / |pred | gt| with ``pred = prob > threshold`` (0-100 scale).
  - ``f1``: F1 of ``prob > threshold`` against the GT over all pixels (no band; so per image
    ``f1 = 2 iou / (100 + iou)`` with iou in percent). The official DeCLIP "F1 fixed" ignores the
    TruFor band too; we do not, so that ``f1`` is defined for every manipulated image.
  - ``f1_best``: TruFor protocol. Positives are the GT eroded by a ``erode`` x ``erode`` min
    filter, negatives the complement of the GT dilated by a ``dilate`` x ``dilate`` max filter;
    pixels in the band between them are ignored. (As in the official GPU code, pixels beyond the
    image border do not erode the mask.) The best F1 is taken *exactly* over every threshold:
    one sort per image, every partition ``{prob >= t}`` for ``t`` a distinct probability value,
    plus the empty prediction (which includes every fixed threshold such as 0.5, so no separate
    ``max(best, fixed)`` is needed as in the official code). The *inverted* prediction is not
    considered (the official DeCLIP code does not either). When the erosion leaves no positive
    pixel (a mask thinner than ``erode``), the band is dropped for that image (plain best F1
    over all pixels) and the image is counted in ``n_f1_best_unbanded``.
  - ``pixel_ap``: average precision of the pixel probabilities against the GT (all pixels),
    equal to ``sklearn.metrics.average_precision_score``.
  - ``pixel_auc``: ROC AUC of the pixel probabilities (ties as one half), equal to
    ``sklearn.metrics.roc_auc_score``; undefined when the GT is all ones: ``None`` for the image,
    skipped in the mean and counted in ``n_pixel_auc_undefined``.

``compute()`` keys: ``iou``, ``f1``, ``f1_best``, ``pixel_ap``, ``pixel_auc``, ``n_manipulated``,
``empty_gt_fp_rate``, ``n_empty_gt``, ``n_fake_no_mask``, ``n_pixel_auc_undefined``, ``n_f1_best_unbanded`` (means are NaN
when no image of that kind was seen).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..data.masks import mask_to_nchw
from .base import Metric, MetricInfo
from .detection import Ranking, _to_tensor, _work_device

logger = logging.getLogger(__name__)

__all__ = [
    "LocalizationMetrics",
    "binarize_gt",
    "trufor_band",
    "iou",
    "f1",
    "best_threshold_f1",
    "pixel_average_precision",
    "pixel_roc_auc",
]

_STATE_VERSION = 1
_PER_IMAGE_KEYS = ("name", "iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "fp_rate")
_MEAN_KEYS = ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def binarize_gt(gt: Any, batch: Optional[int] = None, device: Optional[torch.device] = None
                ) -> torch.Tensor:
    """GT masks as a bool (B, H, W) tensor (1 = manipulated), from any layout of
    :func:`declip_plugin.data.masks.mask_to_nchw` (or a single (H, W) mask); binarised at 0.5."""
    return mask_to_nchw(_to_tensor(gt, device), batch)[:, 0] > 0.5


def _spatial(x: Any) -> Tuple[torch.Tensor, bool]:
    """(N, H, W) view of a single (H, W) mask or a batch ((N, H, W) / (N, 1, H, W))."""
    t = _to_tensor(x)
    t = t.to(_work_device(t.device))
    if t.ndim == 2:
        return t[None], True
    if t.ndim == 4 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 3:
        raise ValueError(f"expected (H, W), (N, H, W) or (N, 1, H, W), got {tuple(t.shape)}")
    return t, False


def _out(v: torch.Tensor, single: bool):
    return float(v[0]) if single else v


def _check_kernel(k: int, what: str) -> int:
    k = int(k)
    if k > 1 and k % 2 == 0:
        raise ValueError(f"{what} size must be odd (or <= 1 for none), got {k}")
    return k


def _box_max(m: torch.Tensor, k: int) -> torch.Tensor:
    """k x k max filter of (N, 1, H, W), same size, done as two separable 1-D passes."""
    m = F.max_pool2d(m, (k, 1), stride=1, padding=(k // 2, 0))
    return F.max_pool2d(m, (1, k), stride=1, padding=(0, k // 2))


def trufor_band(gt: Any, erode: int = 15, dilate: int = 11) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` bool masks of the TruFor protocol: the GT eroded by an
    ``erode`` x ``erode`` min filter, and the complement of the GT dilated by a ``dilate`` x
    ``dilate`` max filter. Pixels in neither (the band around the GT boundary) are ignored.
    Shapes as the input ((H, W) or (N, H, W) / (N, 1, H, W) -> (N, H, W))."""
    erode, dilate = _check_kernel(erode, "erode"), _check_kernel(dilate, "dilate")
    g, single = _spatial(gt)
    g = (g > 0.5) if g.dtype != torch.bool else g
    m = g[:, None].float()
    # max_pool2d pads with -inf: the outside of the image never erodes the mask
    pos = -_box_max(-m, erode) if erode > 1 else m
    dil = _box_max(m, dilate) if dilate > 1 else m
    pos, neg = pos[:, 0] > 0.5, dil[:, 0] < 0.5
    return (pos[0], neg[0]) if single else (pos, neg)


def _pair(pred: Any, gt: Any) -> Tuple[torch.Tensor, torch.Tensor, bool]:
    p, single = _spatial(pred)
    g = binarize_gt(gt, None if single else p.shape[0], p.device)
    if p.dtype != torch.bool:
        p = p > 0.5
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and GT {tuple(g.shape)} differ in shape")
    return p.flatten(1), g.flatten(1), single


def iou(pred_bin: Any, gt_bin: Any) -> Any:
    """IoU on a 0-100 scale per image (float for one (H, W) mask, (N,) tensor for a batch);
    NaN where prediction and GT are both empty. Non-bool predictions are binarised at 0.5."""
    p, g, single = _pair(pred_bin, gt_bin)
    inter = (p & g).sum(1).double()
    union = (p | g).sum(1).double()
    v = 100.0 * inter / union.clamp_min(1)
    v = torch.where(union > 0, v, torch.full_like(v, math.nan))
    return _out(v, single)


def f1(pred_bin: Any, gt_bin: Any, valid: Any = None) -> Any:
    """F1 per image (pixels where ``valid`` is False are ignored); NaN where prediction and GT
    are both empty. Non-bool predictions are binarised at 0.5."""
    p, g, single = _pair(pred_bin, gt_bin)
    if valid is not None:
        v, _ = _spatial(valid)
        v = v.to(p.device).bool().flatten(1)
        p, g = p & v, g & v
    tp = (p & g).sum(1).double()
    den = 2 * tp + (p & ~g).sum(1).double() + (~p & g).sum(1).double()
    r = 2 * tp / den.clamp_min(1)
    r = torch.where(den > 0, r, torch.full_like(r, math.nan))
    return _out(r, single)


def _band_with_fallback(g: torch.Tensor, erode: int, dilate: int
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TruFor (pos, neg) for bool GT (N, H, W), dropping the band where erosion empties it."""
    pos, neg = trufor_band(g, erode, dilate)
    unbanded = ~pos.flatten(1).any(1) & g.flatten(1).any(1)
    if bool(unbanded.any()):
        pos = torch.where(unbanded[:, None, None], g, pos)
        neg = torch.where(unbanded[:, None, None], ~g, neg)
    return pos, neg, unbanded


def best_threshold_f1(scores: Any, gt: Any, erode: int = 15, dilate: int = 11) -> Any:
    """Best F1 over every threshold with the TruFor band ignored (see the module docstring);
    NaN for an empty GT."""
    s, single = _spatial(scores)
    g = binarize_gt(gt, None if single else s.shape[0], s.device)
    pos, neg, _ = _band_with_fallback(g, erode, dilate)
    v = Ranking(s.flatten(1).float()).best_f1(pos.flatten(1), neg.flatten(1))
    return _out(v, single)


def pixel_average_precision(scores: Any, gt: Any) -> Any:
    """Per-image AP of pixel scores (sklearn ``average_precision_score``); NaN for empty GT."""
    s, single = _spatial(scores)
    g = binarize_gt(gt, None if single else s.shape[0], s.device)
    return _out(Ranking(s.flatten(1).float()).average_precision(g.flatten(1)), single)


def pixel_roc_auc(scores: Any, gt: Any) -> Any:
    """Per-image ROC AUC of pixel scores (sklearn ``roc_auc_score``); NaN for a one-class GT."""
    s, single = _spatial(scores)
    g = binarize_gt(gt, None if single else s.shape[0], s.device)
    return _out(Ranking(s.flatten(1).float()).roc_auc(g.flatten(1)), single)


def _nan_to_none(values: List[float]) -> List[Optional[float]]:
    return [None if (v is None or math.isnan(v)) else float(v) for v in values]


def _mean(values: Sequence[Optional[float]]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return math.fsum(vals) / len(vals) if vals else math.nan


# ----------------------------------------------------------------------------------------------
# accumulator
# ----------------------------------------------------------------------------------------------
class LocalizationMetrics(Metric):
    """Accumulates per-image localization metrics; see the module docstring.

    ``max_elements`` bounds the number of pixels sorted at once (rows of a batch are processed
    in chunks), which bounds the temporary memory of the exact ranking metrics.

    A manipulated image whose mask is missing (``valid`` False, ``mask_valid`` of a batch that mixes
    datasets with and without masks) is left out of every localization metric and counted in
    ``n_fake_no_mask``; it is never scored as a real image.
    """

    keys = ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "empty_gt_fp_rate")
    describe = (
        MetricInfo("iou", "IoU", scale=100.0, family="localization", headline=True, grid=True, curve=True),
        MetricInfo("f1", "F1", family="localization"),
        MetricInfo("f1_best", "best-threshold F1", family="localization", tables=("default", "localization"),
                   grid=True, curve=True),
        MetricInfo("pixel_ap", "pixel AP", family="localization"),
        MetricInfo("pixel_auc", "pixel AUC", family="localization", tables=("default", "localization"),
                   grid=True, curve=True),
        MetricInfo("empty_gt_fp_rate", "empty-GT false-positive rate", higher_is_better=False, family="localization",
                   tables=("localization",), grid=True),
    )

    @classmethod
    def applies(cls, detector, config):
        from ..detectors.base import capability

        return bool(capability(detector, "produces_mask"))

    @classmethod
    def from_config(cls, config):
        return cls()

    def update_batch(self, data_dict: Dict[str, Any], pred_dict: Dict[str, Any]) -> None:
        """The metric contract (metrics/base.py): ``pred_dict['mask']`` against ``data_dict['mask']``;
        batches without a ground-truth mask (or a model without one) add nothing."""
        n = int(data_dict["label"].shape[0])
        first = self._seen
        self._seen += n
        if data_dict.get("mask") is None or pred_dict.get("mask") is None:
            return
        start = len(self._records)
        self.update(pred_dict["mask"].float(), data_dict["mask"], data_dict["label"],
                    names=[str(x) for x in data_dict.get("name") or [""] * n], valid=data_dict.get("mask_valid"))
        self._index.extend(range(first, first + len(self._records) - start))

    def per_sample(self):
        cols = ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "fp_rate")
        return [(i, {k: r.get(k) for k in cols}) for i, r in zip(self._index, self._records)]

    def __init__(self, threshold: float = 0.5, erode: int = 15, dilate: int = 11,
                 max_elements: int = 1 << 21):
        self.threshold = float(threshold)
        self.erode = _check_kernel(erode, "erode")
        self.dilate = _check_kernel(dilate, "dilate")
        self.max_elements = int(max_elements)
        self.reset()

    def reset(self) -> None:
        self._records: List[Dict[str, Any]] = []
        self._warned_label = False
        self._seen = 0  # samples offered to update_batch (per_sample's index)
        self._index: List[int] = []

    def __len__(self) -> int:
        return len(self._records)

    # -- accumulation --------------------------------------------------------------------------
    def update(self, mask_logits: Any, gt_mask: Any, label: Any = None,
               names: Optional[Sequence[Optional[str]]] = None, valid: Any = None) -> None:
        """Add a batch: ``mask_logits`` (B, 1, h, w) or (B, h, w) logits; ``gt_mask`` in any layout of
        ``declip_plugin.data.masks`` in [0, 1] (``None``: all-empty masks); ``label`` optional (B,)
        image labels (0 = real); ``names`` optional per-image names; ``valid`` optional (B,) bool,
        False where the image has no ground-truth mask (a fake there is left out and counted)."""
        logits = _to_tensor(mask_logits)
        dev = _work_device(logits.device)
        logits = logits.to(dev).float()
        if logits.ndim == 3:
            logits = logits[:, None]
        if logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(f"mask_logits of shape {tuple(logits.shape)}: expected (B, 1, h, w)")
        B = logits.shape[0]
        if gt_mask is None:
            gt = torch.zeros((B,) + tuple(logits.shape[-2:]), dtype=torch.bool, device=dev)
        else:
            gt = binarize_gt(gt_mask, B, dev)
        if names is not None:
            names = list(names)
            if len(names) != B:
                raise ValueError(f"{len(names)} names for a batch of {B}")
        H, W = gt.shape[-2:]

        probs = torch.sigmoid(logits)
        if tuple(probs.shape[-2:]) != (H, W):
            # antialias as the official code's torchvision resize (no effect when upsampling)
            probs = F.interpolate(probs, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        probs = probs[:, 0]
        pred = probs > self.threshold

        manip = gt.flatten(1).any(1)
        if label is not None:
            lab = _to_tensor(label, dev).reshape(-1)
            if lab.numel() != B:
                raise ValueError(f"{lab.numel()} labels for a batch of {B}")
            is_fake = lab > 0.5 if torch.is_floating_point(lab) else lab > 0
            if not self._warned_label and bool((manip & ~is_fake).any()):
                logger.warning("LocalizationMetrics: images labelled real have a non-empty GT "
                               "mask; they are scored as real images")
                self._warned_label = True
            manip = manip & is_fake
        no_mask = torch.zeros_like(manip)
        if valid is not None:
            ok = _to_tensor(valid, dev).reshape(-1).bool()
            if ok.numel() != B:
                raise ValueError(f"{ok.numel()} mask_valid flags for a batch of {B}")
            fake = (_to_tensor(label, dev).reshape(-1) > 0) if label is not None else torch.ones_like(ok)
            no_mask = ~ok & fake
            manip = manip & ok

        records: List[Dict[str, Any]] = [
            {"name": None if names is None else names[i], "manipulated": False,
             "iou": None, "f1": None, "f1_best": None, "pixel_ap": None, "pixel_auc": None,
             "fp_rate": None, "unbanded": False, "no_mask": bool(no_mask[i])}
            for i in range(B)
        ]

        real_idx = torch.nonzero(~manip & ~no_mask).reshape(-1)
        if real_idx.numel():
            fp_rate = pred[real_idx].flatten(1).double().mean(1).tolist()
            for i, v in zip(real_idx.tolist(), fp_rate):
                records[i]["fp_rate"] = v

        man_idx = torch.nonzero(manip).reshape(-1)
        if man_idx.numel():
            values = self._manipulated(probs[man_idx], pred[man_idx], gt[man_idx])
            for j, i in enumerate(man_idx.tolist()):
                rec = records[i]
                rec["manipulated"] = True
                for k, v in values.items():
                    rec[k] = v[j]
        self._records.extend(records)

    def _manipulated(self, probs: torch.Tensor, pred: torch.Tensor, gt: torch.Tensor
                     ) -> Dict[str, List[Any]]:
        p, g = pred.flatten(1), gt.flatten(1)
        tp = (p & g).sum(1).double()
        fp = (p & ~g).sum(1).double()
        fn = (~p & g).sum(1).double()
        iou_v = 100.0 * tp / (tp + fp + fn)  # GT non-empty: union > 0
        f1_v = 2 * tp / (2 * tp + fp + fn)

        pos, neg, unbanded = _band_with_fallback(gt, self.erode, self.dilate)
        pos, neg, s = pos.flatten(1), neg.flatten(1), probs.flatten(1)
        n, P = s.shape
        rows = max(1, self.max_elements // max(P, 1))
        ap, auc, fbest = [], [], []
        for a in range(0, n, rows):
            rank = Ranking(s[a:a + rows])
            ap_c, auc_c = rank.ap_auc(g[a:a + rows])
            ap.append(ap_c)
            auc.append(auc_c)
            fbest.append(rank.best_f1(pos[a:a + rows], neg[a:a + rows]))
            del rank
        return {
            "iou": iou_v.tolist(),
            "f1": f1_v.tolist(),
            "f1_best": _nan_to_none(torch.cat(fbest).tolist()),
            "pixel_ap": _nan_to_none(torch.cat(ap).tolist()),
            "pixel_auc": _nan_to_none(torch.cat(auc).tolist()),
            "unbanded": unbanded.tolist(),
        }

    def merge(self, other: "LocalizationMetrics") -> "LocalizationMetrics":
        """Append ``other``'s images (after this accumulator's); returns ``self``."""
        mine = (self.threshold, self.erode, self.dilate)
        if (other.threshold, other.erode, other.dilate) != mine:
            raise ValueError("cannot merge LocalizationMetrics with different settings")
        self._records.extend(dict(r) for r in other._records)
        return self

    def state(self) -> Dict[str, Any]:
        """Plain python objects, e.g. for ``torch.distributed.all_gather_object``."""
        return {
            "version": _STATE_VERSION,
            "threshold": self.threshold,
            "erode": self.erode,
            "dilate": self.dilate,
            "records": [dict(r) for r in self._records],
        }

    @classmethod
    def from_state(cls, state: Dict[str, Any]) -> "LocalizationMetrics":
        m = cls(threshold=state.get("threshold", 0.5), erode=state.get("erode", 15),
                dilate=state.get("dilate", 11))
        m._records = [dict(r) for r in state.get("records", [])]
        return m

    # -- results ---------------------------------------------------------------------------------
    @property
    def per_image(self) -> List[Dict[str, Any]]:
        """One dict per image in update order: name, iou, f1, f1_best, pixel_ap, pixel_auc
        (manipulated images) and fp_rate (real images); ``None`` where not applicable."""
        return [{k: r.get(k) for k in _PER_IMAGE_KEYS} for r in self._records]

    def compute(self) -> Dict[str, Any]:
        man = [r for r in self._records if r["manipulated"]]
        real = [r for r in self._records if not r["manipulated"] and not r.get("no_mask")]
        out: Dict[str, Any] = {k: _mean([r[k] for r in man]) for k in _MEAN_KEYS}
        out["n_manipulated"] = len(man)
        out["empty_gt_fp_rate"] = _mean([r["fp_rate"] for r in real])
        out["n_empty_gt"] = len(real)
        out["n_fake_no_mask"] = sum(1 for r in self._records if r.get("no_mask"))
        out["n_pixel_auc_undefined"] = sum(1 for r in man if r["pixel_auc"] is None)
        out["n_f1_best_unbanded"] = sum(1 for r in man if r.get("unbanded"))
        return out
