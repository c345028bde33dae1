"""Run a real DeepfakeBench checkout (SCLBD/DeepfakeBench) with this package's detectors.

Modules, one part each:

* ``facts``      what we rely on in DeepfakeBench: file names, YAML keys, the wrapped functions'
                 signatures, the commit they were checked against
* ``checkout``   inspecting a checkout before anything of it runs (layout, registry, signatures)
* ``launcher``   the parent side of `declip dfb` (configs with the overrides, the child process)
* ``bootstrap``  the child: CPU stubs, registration into DETECTOR, running the script
* ``patches``    the few run-time wraps (host configs, init_seed check, localization metrics)
* ``results``    result files and printed tables beside DeepfakeBench's own
* ``export``     `declip export-dfb`: our datasets in DeepfakeBench's JSON / frame / LMDB layout

docs/deepfakebench.md is the user's view. ``bootstrap`` is not imported here: it is the child's
``-m`` module and must not be imported before runpy runs it.
"""
from .checkout import CheckoutMismatch, check_wrapped, checkout_commit, dfb_config_problems, find_bench_root, \
    host_detector_names, validate_checkout
from .launcher import LaunchSpec, data_overrides, dfb_weights, launch, read_exports

__all__ = ["CheckoutMismatch", "LaunchSpec", "check_wrapped", "checkout_commit", "data_overrides", "dfb_config_problems",
           "dfb_weights", "export_dfb", "find_bench_root", "host_detector_names", "launch", "read_exports",
           "validate_checkout"]


def export_dfb(dataset_name, out_dir, config=None):
    """See :func:`declip_plugin.integrations.deepfakebench.export.export_dfb` (imported on use: it needs cv2)."""
    from .export import export_dfb as _export

    return _export(dataset_name, out_dir, config)
