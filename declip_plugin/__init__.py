"""DeCLIP as a DeepfakeBench plugin.

Public API::

    from declip_plugin import build_detector, get_plugin_manager
    detector = build_detector("configs/detector/declip.yaml", weights_path="ckpt.pth")
"""
__version__ = "0.1.0"

from .errors import DeclipError  # noqa: E402
from .plugins import get_plugin_manager, get_registry  # noqa: E402


def build_detector(config, weights_path=None, device=None):
    """Build a registered detector from a config dict or YAML path (or bundled config name).

    ``weights_path`` optionally loads a checkpoint (ours or the official DeCLIP format).
    """
    from .detectors import build_detector as _build

    return _build(config, weights_path=weights_path, device=device)


__all__ = ["build_detector", "get_plugin_manager", "get_registry", "DeclipError", "__version__"]
