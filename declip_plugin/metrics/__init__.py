"""Detection and localization metrics shared by every host (embedded engine, DeepfakeBench)."""
from .detection import DetectionMetrics
from .localization import LocalizationMetrics

__all__ = ["DetectionMetrics", "LocalizationMetrics"]
