"""Detection and localization metrics shared by every host (embedded engine, DeepfakeBench)."""
from .detection import DetectionMetrics, video_ids_from_paths
from .localization import LocalizationMetrics

__all__ = ["DetectionMetrics", "LocalizationMetrics", "video_ids_from_paths"]
