"""The DeepfakeBench detector contract (its ``AbstractDetector``), for detectors of any plugin.

A detector is built as ``cls(config)`` from the merged YAML dict and works on DeepfakeBench's
``data_dict`` (image, label, mask, landmark, ...) and ``pred_dict`` (cls, prob, feat, [mask]).
"""
import abc

from torch import nn


class AbstractDetector(nn.Module, abc.ABC):
    def __init__(self, config=None):
        super().__init__()
        self.config = dict(config or {})

    @abc.abstractmethod
    def build_backbone(self, config):
        """Build and return the backbone."""

    @abc.abstractmethod
    def build_loss(self, config):
        """Build and return the loss function."""

    @abc.abstractmethod
    def features(self, data_dict):
        """Backbone features of ``data_dict['image']``."""

    @abc.abstractmethod
    def classifier(self, features):
        """Map features to the detector's raw outputs."""

    @abc.abstractmethod
    def get_losses(self, data_dict, pred_dict):
        """``{'overall': loss, ...}``."""

    @abc.abstractmethod
    def get_train_metrics(self, data_dict, pred_dict):
        """Batch metrics for the training log: ``{'acc', 'auc', 'eer', 'ap', ...}``."""

    @abc.abstractmethod
    def forward(self, data_dict, inference=False):
        """``pred_dict`` with at least ``cls`` (B, 2), ``prob`` (B,) and ``feat`` (B, D)."""
