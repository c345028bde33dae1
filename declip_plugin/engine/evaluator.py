"""Evaluation: detection and localization metrics of one test set, per-image rows, result files."""
import dataclasses
import logging
import os
import time

import numpy as np
import torch

from ..atomicio import write_png
from ..config import RunConfig
from ..progress import progress as progress_bar
from ..run_folder import ResultFolder, mask_file_name
from . import runtime, signals
from .loaders import Batches

logger = logging.getLogger(__name__)

BASE_FIELDS = ["path", "label", "score"]


@dataclasses.dataclass
class EvalResult:
    metrics: dict
    rows: list
    accumulators: dict = dataclasses.field(default_factory=dict)  # name -> merged metric object

    @property
    def fields(self):
        """per_image.csv columns: path, label, score, then every metric's per-sample columns."""
        out = list(BASE_FIELDS)
        for row in self.rows:
            out.extend(k for k in row if k not in out)
        return out

    @property
    def keys(self):
        """The metric names of the accumulators, in registry order."""
        return [k for acc in self.accumulators.values() for k in getattr(acc, "keys", ())]


def to_device(batch, device):
    signals.check()  # every training and evaluation batch: a SIGTERM received ends the run here at the latest
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def save_mask_png(path, prob):
    write_png(path, (prob.clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8))


def inference_step(detector, batch, device, precision="fp32", batch_hook=None):
    """One inference batch as the engine runs it (call under ``torch.inference_mode``, the detector in
    eval mode): the batch on ``device``, then ``batch_hook`` (the feature cache), then the forward
    under ``precision``'s autocast. Returns ``(batch, pred)``."""
    batch = to_device(batch, device)
    if batch_hook is not None:
        batch = batch_hook(batch)
    with runtime.autocast(device, precision):
        pred = detector(batch, inference=True)
    return batch, pred


@torch.inference_mode()
def evaluate(detector, loader, device, config, precision="fp32", mask_dir=None, desc="test", progress=True,
             batch_hook=None, summary_line=True):
    """Run ``detector`` over ``loader`` with every metric of the registry that applies to it;
    metrics gathered over all ranks (each sample counted once)."""
    from ..metrics.base import create_metrics

    detector.eval()
    accs = create_metrics(detector, RunConfig.of(config).to_dict())  # the metric contract: the merged dict
    rows, seen, t0 = [], 0, time.perf_counter()
    bar = progress_bar(Batches(loader), desc, enabled=progress and runtime.is_main(), summary=summary_line)
    for batch in bar:
        batch, pred = inference_step(detector, batch, device, precision, batch_hook)
        for acc in accs.values():
            acc.update_batch(batch, pred)
        prob, labels = pred["prob"].float(), batch["label"]
        names = [str(n) for n in batch.get("name") or [""] * len(labels)]
        rows.extend({"path": name, "label": int(labels[i]), "score": float(prob[i])} for i, name in enumerate(names))
        if mask_dir is not None and pred.get("mask") is not None:
            probs = torch.sigmoid(pred["mask"].float())[:, 0]
            for i, name in enumerate(names):
                save_mask_png(os.path.join(mask_dir, mask_file_name(name, seen + i)), probs[i])
        seen += len(labels)
        bar.update_images(len(labels))
        bar.set_postfix(img_s=f"{seen / max(time.perf_counter() - t0, 1e-9):.1f}")
    for acc in accs.values():
        for i, cols in acc.per_sample() if hasattr(acc, "per_sample") else []:
            rows[i].update(cols)
    # gather over ranks: every sample exactly once (ShardSampler), merged in rank order
    states = runtime.gather_objects(({name: acc.state() for name, acc in accs.items()}, rows))
    merged = {}
    for name, acc in accs.items():
        merged[name] = type(acc).from_state(states[0][0][name])
        for s in states[1:]:
            merged[name].merge(type(acc).from_state(s[0][name]))
    rows = [r for s in states for r in s[1]]
    metrics = {}
    for acc in merged.values():
        metrics.update({k: v for k, v in acc.compute().items() if k not in metrics})
    metrics["n_images"] = len(rows)
    return EvalResult(metrics=metrics, rows=rows, accumulators=merged)


def write_results(folder, dataset_name, result, extra=None):
    """The results of one test set in its folder ``folder`` (a path or a
    :class:`~declip_plugin.run_folder.ResultFolder`): metrics.json, per_image.csv, DeepfakeBench's
    metric_dict_best.pickle and every metric's own files."""
    folder = ResultFolder(folder)
    meta = {"dataset": dataset_name, **(extra or {})}
    folder.write_metrics({**meta, "metrics": _clean(result.metrics)})
    folder.write_per_image(result.rows, result.fields)
    dfb = dict(_clean(result.metrics))
    dfb["pred"] = np.array([r["score"] for r in result.rows], dtype=np.float32)
    dfb["label"] = np.array([r["label"] for r in result.rows], dtype=np.int64)
    folder.write_dfb_metrics(dfb)
    for acc in result.accumulators.values():
        if hasattr(acc, "write_files"):
            acc.write_files(folder.path)


def _clean(metrics):
    out = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor):
            v = v.item()
        if isinstance(v, float) and np.isnan(v):
            v = None
        out[k] = v
    return out


def format_metrics(metrics, keys=None):
    """One log line of ``keys`` (default: every numeric metric), each as its metric describes it
    (metrics/base.py ``MetricInfo``); metrics that need both classes only when both are present (a
    localization test set of fakes alone has no meaningful accuracy)."""
    from ..metrics.base import info_of, is_count, metric_infos

    infos = metric_infos()
    both = metrics.get("n_real", 0) and metrics.get("n_fake", 0)
    keys = keys or [k for k in metrics if not is_count(k)]
    parts = []
    for k in keys:
        v, info = metrics.get(k), info_of(k, infos)
        if (info.needs_both_classes and not both) or not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            continue
        parts.append(f"{k}={info.format(v, precise=True)}")
    return " ".join(parts)
