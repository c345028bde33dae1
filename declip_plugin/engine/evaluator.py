"""Evaluation: detection and localization metrics of one test set, per-image rows, result files."""
import dataclasses
import logging
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from ..metrics.detection import DetectionMetrics
from ..metrics.localization import LocalizationMetrics
from . import runtime
from .rundir import write_csv, write_json, write_pickle

logger = logging.getLogger(__name__)

CSV_FIELDS = ["path", "label", "score", "iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "fp_rate"]
DETECTION_KEYS = ["acc", "auc", "eer", "ap", "acc_best", "video_auc"]
LOCALIZATION_KEYS = ["iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "real_fp_rate"]


@dataclasses.dataclass
class EvalResult:
    metrics: dict
    rows: list


def to_device(batch, device):
    out = dict(batch)
    for k in ("image", "label", "mask", "features"):
        if isinstance(out.get(k), torch.Tensor):
            out[k] = out[k].to(device, non_blocking=True)
    return out


def save_mask_png(path, prob):
    import cv2

    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = (prob.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    if not cv2.imwrite(path, img):
        raise OSError(f"cannot write {path}")


def mask_file_name(image_path, index):
    stem = os.path.splitext(os.path.basename(str(image_path)))[0]
    return f"{index:06d}_{stem}.png"


@torch.inference_mode()
def evaluate(detector, loader, device, precision="fp32", mask_dir=None, desc="test", progress=True,
             batch_hook=None):
    """Run ``detector`` over ``loader``; metrics gathered over all ranks (each sample counted once)."""
    detector.eval()
    det, loc = DetectionMetrics(), LocalizationMetrics()
    rows, seen, t0 = [], 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not (progress and runtime.is_main()), leave=False)
    for batch in bar:
        batch = to_device(batch, device)
        if batch_hook is not None:
            batch = batch_hook(batch)
        with runtime.autocast(device, precision):
            pred = detector(batch, inference=True)
        prob = pred["prob"].float()
        labels = batch["label"]
        det.update(prob, labels, video=batch.get("video"))
        names = [str(n) for n in batch.get("name", [""] * len(labels))]
        has_mask = batch.get("mask") is not None and pred.get("mask") is not None
        if has_mask:
            loc.update(pred["mask"].float(), batch["mask"], labels, names=names)
        for i, name in enumerate(names):
            rows.append({"path": name, "label": int(labels[i]), "score": float(prob[i])})
        if mask_dir is not None and pred.get("mask") is not None:
            probs = torch.sigmoid(pred["mask"].float())[:, 0]
            for i, name in enumerate(names):
                save_mask_png(os.path.join(mask_dir, mask_file_name(name, seen + i)), probs[i])
        seen += len(labels)
        bar.set_postfix(img_s=f"{seen / max(time.perf_counter() - t0, 1e-9):.1f}")
    if len(loc) and len(loc.per_image) == len(rows):  # per-image localization scores, in the same order
        for row, per in zip(rows, loc.per_image):
            row.update({k: per.get(k) for k in CSV_FIELDS[3:]})
    # gather over ranks: every sample exactly once (ShardSampler), merged in rank order
    states = runtime.gather_objects((det.state(), loc.state() if len(loc) else None, rows))
    det = DetectionMetrics.from_state(states[0][0])
    loc_states = [s[1] for s in states if s[1] is not None]
    loc = LocalizationMetrics.from_state(loc_states[0]) if loc_states else None
    for s in states[1:]:
        det.merge(DetectionMetrics.from_state(s[0]))
    for s in loc_states[1:]:
        loc.merge(LocalizationMetrics.from_state(s))
    rows = [r for s in states for r in s[2]]
    metrics = dict(det.compute())
    if loc is not None:
        metrics.update(loc.compute())
    metrics["n_images"] = len(rows)
    return EvalResult(metrics=metrics, rows=rows)


def write_results(folder, dataset_name, result, extra=None):
    """metrics.json, per_image.csv and DeepfakeBench's metric_dict_best.pickle under ``folder``."""
    meta = {"dataset": dataset_name, **(extra or {})}
    write_json(os.path.join(folder, "metrics.json"), {**meta, "metrics": _clean(result.metrics)})
    write_csv(os.path.join(folder, "per_image.csv"), result.rows, CSV_FIELDS)
    dfb = {k: v for k, v in _clean(result.metrics).items()}
    dfb["pred"] = np.array([r["score"] for r in result.rows], dtype=np.float32)
    dfb["label"] = np.array([r["label"] for r in result.rows], dtype=np.int64)
    write_pickle(os.path.join(folder, "metric_dict_best.pickle"), dfb)


def _clean(metrics):
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, float) and np.isnan(v):
            v = None
        out[k] = v
    return out


def format_metrics(metrics):
    """One log line; detection metrics only when both classes are present (a localization test set
    of fakes alone has no meaningful accuracy)."""
    parts = []
    both = metrics.get("n_real", 0) and metrics.get("n_fake", 0)
    for k in (DETECTION_KEYS if both else []) + LOCALIZATION_KEYS:
        v = metrics.get(k)
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        parts.append(f"{k}={v:.2f}" if k == "iou" else f"{k}={v:.4f}")
    return " ".join(parts)
