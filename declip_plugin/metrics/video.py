"""Video-level metrics: frame or clip probabilities averaged per video (a metric plugin).

Every sample of a batch carries ``video``, its video's full identity
(``<dataset>/<label or method folder>/<video id>``, set by the dataset adapters). A video's score is
the mean of its samples' probabilities (frames, or clips in video mode), its label the majority of
its samples' labels (a video whose samples disagree is counted and logged). On those per-video
scores: ``video_auc`` (ROC AUC), ``video_ap`` (average precision) and ``video_eer``
(DeepfakeBench's EER: ``fpr`` at the first point of ``sklearn.metrics.roc_curve`` minimising
``|fnr - fpr|``), all with scikit-learn, plus ``n_videos``. With one class only, the three are NaN.

DeepfakeBench keys a video by its id folder alone, so FaceForensics++ videos with the same id under
different manipulation folders (``Deepfakes/000_003``, ``Face2Face/000_003``) merge into one; the
full identity keeps them apart. :meth:`VideoMetrics.write_files` writes ``per_video.csv``
(video, label, score, n_samples) beside the per-image rows.
"""
import csv
import io
import logging
import math
import os

import numpy as np

from ..atomicio import atomic_write_bytes
from .base import MetricInfo

logger = logging.getLogger(__name__)

CSV_NAME = "per_video.csv"
CSV_FIELDS = ("video", "label", "score", "n_samples")


def video_eer(labels, scores):
    """DeepfakeBench's EER (metrics/detection.py ``eer``) on per-video scores."""
    from .detection import eer

    return eer(scores, labels)


class VideoMetrics:
    """Per-video mean scores and the video AUC / AP / EER (metric plugin ``video``)."""

    keys = ("video_auc", "video_ap", "video_eer", "n_videos")
    describe = (
        MetricInfo("video_auc", "video AUC", family="video", needs_both_classes=True, headline=True, grid=True),
        MetricInfo("video_ap", "video AP", family="video", needs_both_classes=True),
        MetricInfo("video_eer", "video EER", higher_is_better=False, family="video", needs_both_classes=True,
                   tables=("video",)),
    )

    @classmethod
    def applies(cls, detector, config):
        """Always: a batch without video identities (``video`` all None) adds nothing, and then
        :meth:`compute` reports ``n_videos: 0`` and None for the rest."""
        return True

    def __init__(self, config=None):
        self.config = dict(config or {})
        self._sum, self._count, self._fakes = {}, {}, {}

    # --- accumulation -------------------------------------------------------------------------
    def update_batch(self, data_dict, pred_dict):
        videos = data_dict.get("video")
        if videos is None:
            return
        prob = pred_dict["prob"].detach().float().reshape(-1).cpu().tolist()
        labels = data_dict["label"].detach().reshape(-1).cpu().tolist()
        if not (len(prob) == len(labels) == len(videos)):
            raise ValueError(f"video metrics: {len(prob)} probabilities, {len(labels)} labels and {len(videos)} "
                             f"video ids in one batch")
        self.update(prob, labels, videos)

    def update(self, probs, labels, videos):
        """Add samples (plain lists); samples with video None are ignored."""
        for p, y, v in zip(probs, labels, videos):
            if v is None:
                continue
            v = str(v)
            self._sum[v] = self._sum.get(v, 0.0) + float(p)
            self._count[v] = self._count.get(v, 0) + 1
            self._fakes[v] = self._fakes.get(v, 0) + (1 if int(y) > 0 else 0)

    def __len__(self):
        return len(self._count)

    # --- combination --------------------------------------------------------------------------
    def state(self):
        return {"version": 1, "sum": dict(self._sum), "count": dict(self._count), "fakes": dict(self._fakes)}

    @classmethod
    def from_state(cls, state, config=None):
        m = cls(config)
        m._sum, m._count, m._fakes = dict(state["sum"]), dict(state["count"]), dict(state["fakes"])
        return m

    def merge(self, other):
        """Add ``other``'s samples (a video split across processes is merged, not duplicated)."""
        for v, n in other._count.items():
            self._sum[v] = self._sum.get(v, 0.0) + other._sum[v]
            self._count[v] = self._count.get(v, 0) + n
            self._fakes[v] = self._fakes.get(v, 0) + other._fakes[v]
        return self

    # --- results ------------------------------------------------------------------------------
    def per_video(self):
        """``[(video, label, mean score, n_samples), ...]`` sorted by video."""
        rows, mixed = [], []
        for v in sorted(self._count):
            n, fakes = self._count[v], self._fakes[v]
            if 0 < fakes < n:
                mixed.append(v)
            rows.append((v, 1 if 2 * fakes >= n else 0, self._sum[v] / n, n))
        if mixed:
            logger.warning("video metrics: %d video(s) mix real and fake samples (e.g. %s); each takes the "
                           "majority label", len(mixed), mixed[0])
        return rows

    def is_video_data(self):
        """Whether any video has more than one sample: frame-level image sets (one image per
        ``video``) have no video level, and report none."""
        return any(n > 1 for n in self._count.values())

    def compute(self):
        if not self.is_video_data():
            return {"video_auc": None, "video_ap": None, "video_eer": None, "n_videos": 0}
        rows = self.per_video()
        labels = np.array([r[1] for r in rows])
        scores = np.array([r[2] for r in rows], dtype=np.float64)
        out = {"n_videos": len(rows)}
        if labels.min() == labels.max():
            logger.info("video metrics: only %s videos; video_auc / video_ap / video_eer are NaN",
                        "fake" if labels[0] else "real")
            out.update(video_auc=math.nan, video_ap=math.nan, video_eer=math.nan)
            return out
        from sklearn.metrics import average_precision_score, roc_auc_score

        out["video_auc"] = float(roc_auc_score(labels, scores))
        out["video_ap"] = float(average_precision_score(labels, scores))
        out["video_eer"] = video_eer(labels, scores)
        return out

    def write_files(self, folder):
        """``<folder>/per_video.csv`` (video data only); returns its path, or None."""
        if not self.is_video_data():
            return None
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_FIELDS)
        for v, y, s, n in self.per_video():
            writer.writerow([v, y, f"{s:.6f}", n])
        return atomic_write_bytes(os.path.join(folder, CSV_NAME), buf.getvalue().encode("utf-8"))


__all__ = ["VideoMetrics", "video_eer", "CSV_NAME"]
