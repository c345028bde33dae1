"""Integrations with other frameworks.

* ``deepfakebench``: a real DeepfakeBench checkout (SCLBD/DeepfakeBench): `declip dfb` runs its
  unchanged ``training/train.py`` / ``test.py`` with our detectors registered and our localization
  metrics added; `declip export-dfb` writes our datasets in its layout.
"""
from .deepfakebench import LaunchSpec, dfb_config_problems, export_dfb, launch, validate_checkout

__all__ = ["LaunchSpec", "launch", "validate_checkout", "export_dfb", "dfb_config_problems"]
