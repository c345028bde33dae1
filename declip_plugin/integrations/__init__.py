"""Integrations with a real DeepfakeBench checkout (SCLBD/DeepfakeBench).

* :func:`launch` (``declip dfb``): run the checkout's unchanged ``training/train.py`` /
  ``training/test.py`` with our detectors registered in its ``DETECTOR`` registry and our
  localization metrics added to its evaluation (declip_plugin.integrations.deepfakebench).
* :func:`export_dfb` (``declip export-dfb``): write one of our datasets as a DeepfakeBench dataset
  JSON + frame/mask tree (+ LMDB) and a detector YAML for the checkout
  (declip_plugin.integrations.export).

The functions are imported lazily: the ``deepfakebench`` module is also the child process's
entry point (``python -m declip_plugin.integrations.deepfakebench``), which must not already be
imported when it starts.
"""


def launch(bench_root=None, mode="test", argv=(), **kwargs):
    """See :func:`declip_plugin.integrations.deepfakebench.launch`."""
    from .deepfakebench import launch as _launch

    return _launch(bench_root, mode, argv, **kwargs)


def validate_checkout(bench_root=None):
    """See :func:`declip_plugin.integrations.deepfakebench.validate_checkout`."""
    from .deepfakebench import validate_checkout as _validate

    return _validate(bench_root)


def export_dfb(dataset_name, out_dir, config=None):
    """See :func:`declip_plugin.integrations.export.export_dfb`."""
    from .export import export_dfb as _export

    return _export(dataset_name, out_dir, config)


def dfb_config_problems(config, mode="test"):
    """See :func:`declip_plugin.integrations.deepfakebench.dfb_config_problems`."""
    from .deepfakebench import dfb_config_problems as _problems

    return _problems(config, mode)


__all__ = ["launch", "validate_checkout", "export_dfb", "dfb_config_problems"]
