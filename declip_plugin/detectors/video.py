"""What the clip-level (video) detectors share: two-logit cross-entropy, train metrics, clip input.

A clip detector (``input_kind = 'clip'``) takes ``data_dict['image']`` (B, T, 3, H, W), the batches
DeepfakeBench's loader gives with ``video_mode: true`` (T = ``clip_size``); a single frame batch
(B, 3, H, W) is read as T = 1. ``pred_dict``: ``cls`` (B, 2) logits, ``prob`` softmax[:, 1],
``feat`` (B, D).
"""
import logging

import torch
from torch import nn

from ..errors import ConfigError
from .base import AbstractDetector

logger = logging.getLogger(__name__)


def as_clip(image, where):
    """``image`` as (B, T, 3, H, W): a (B, 3, H, W) batch is one-frame clips."""
    if image.dim() == 4:
        return image.unsqueeze(1)
    if image.dim() != 5 or image.shape[2] != 3:
        raise ConfigError(f"{where}: expected image (B, T, 3, H, W) clips (video_mode: true, clip_size: T) or "
                          f"(B, 3, H, W) frames, got shape {tuple(image.shape)}")
    return image


class DropPath(nn.Module):
    """Stochastic depth: the residual branch of a sample is dropped with probability ``p`` in training."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        return x * x.new_empty(shape).bernoulli_(keep) / keep


class VideoDetector(AbstractDetector):
    """Base of the video detectors (input_kind "clip": (B, T, 3, H, W) frame clips; CLIP-based or not, e.g.
    clip_stan and the EfficientNet TimeSformer): loss, metrics, forward."""

    input_kind = "clip"

    def build_loss(self, config):
        return nn.CrossEntropyLoss()

    def get_losses(self, data_dict, pred_dict):
        label = data_dict["label"].to(pred_dict["cls"].device).long().clamp(max=1)
        return {"overall": self.loss_func(pred_dict["cls"].float(), label)}

    @torch.no_grad()
    def get_train_metrics(self, data_dict, pred_dict):
        from ..metrics.detection import batch_metrics

        return batch_metrics(pred_dict["prob"], data_dict["label"])

    def forward(self, data_dict, inference=False):
        feat = self.features(data_dict)
        logits = self.classifier(feat)
        return {"cls": logits, "prob": torch.softmax(logits.float(), dim=1)[:, 1], "feat": feat.float()}

    def log_parameters(self):
        s = self.parameter_summary()
        logger.info("%s: %s of %s parameters trainable (%.2f%%)", self.config.get("model_name"),
                    f"{s['trainable']:,}", f"{s['total']:,}", 100.0 * s["fraction"])
        return s


__all__ = ["VideoDetector", "DropPath", "as_clip"]
