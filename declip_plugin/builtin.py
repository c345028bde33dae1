"""The built-in plugin: this package's detectors, dataset adapters, metrics and ``declip`` commands.

Registered through the same hooks as any external plugin (entry point ``declip`` of group
``deepfakebench``).
"""
from .hookspecs import hookimpl


@hookimpl
def deepfakebench_register_detectors(register):
    from .detectors.clip_enhanced import ClipEnhancedDetector
    from .detectors.clip_stan import ClipSTANDetector
    from .detectors.declip import DeCLIPDetector
    from .detectors.timesformer import TimeSformerDetector

    register("declip", DeCLIPDetector)
    register("clip_enhanced", ClipEnhancedDetector)
    register("clip_stan", ClipSTANDetector)
    # DeepFakesDetection's name, for its configs in the embedded engine; DeepfakeBench registers a `timesformer`
    # of its own, so inside a checkout ours runs as `timesformer_effb0` (the bundled YAMLs use that)
    register("timesformer", TimeSformerDetector)
    register("timesformer_effb0", TimeSformerDetector)


@hookimpl
def deepfakebench_register_datasets(register):
    from .data.autosplice import AutoSpliceAdapter
    from .data.deepfakebench_json import DeepfakeBenchJsonAdapter
    from .data.dolos import DolosAdapter
    from .data.folder import FolderAdapter

    register("dolos", DolosAdapter)
    register("autosplice", AutoSpliceAdapter)
    register("folder", FolderAdapter)
    register("deepfakebench_json", DeepfakeBenchJsonAdapter)


@hookimpl
def deepfakebench_register_metrics(register):
    from .metrics.detection import DetectionMetrics
    from .metrics.localization import LocalizationMetrics
    from .metrics.video import VideoMetrics

    register("detection", DetectionMetrics)
    register("localization", LocalizationMetrics)
    register("video", VideoMetrics)


@hookimpl
def deepfakebench_register_commands(register):
    from .commands import register_builtin

    register_builtin(register)
