"""Where the tests find DeepfakeBench: the snapshot in ../shared/reference and the checkout's
environment that scripts/setup_dfb_env.sh builds.

* $DEEPFAKEBENCH_ROOT: an unpacked checkout (scripts/run_tests.sh sets it); without it the snapshot
  ``<repo>/../shared/reference/DeepfakeBench-*.tar.gz`` (or $DECLIP_REFERENCE_DIR) is unpacked into
  a temporary folder for the tests that only read the checkout's sources;
* $DEEPFAKEBENCH_PYTHON: the interpreter with DeepfakeBench's requirements (for the tests that run
  its scripts).

In CI (CI=1 or CI=true, as scripts/ci_env.sh) a missing snapshot or environment fails the test; elsewhere it
is skipped.
"""
import glob
import os
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HARNESS = os.path.join(REPO, "tests", "dfb_harness")


def in_ci():
    """CI=1, true or yes (any case): the same rule as scripts/ci_env.sh."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason):
    """Fail under CI, skip elsewhere."""
    if in_ci():
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def reference_dir():
    return os.environ.get("DECLIP_REFERENCE_DIR") or os.path.join(os.path.dirname(REPO), "shared", "reference")


def snapshot(name):
    found = sorted(glob.glob(os.path.join(reference_dir(), f"{name}-*.tar.gz")))
    return found[-1] if found else None


def checkout_root(tmp_path_factory, name="DeepfakeBench", env="DEEPFAKEBENCH_ROOT"):
    """An unpacked checkout: ``$<env>``, or the snapshot ``<name>-*.tar.gz`` unpacked into a temp folder
    (DeepfakeBench; its fork DeepFakesDetection with name="DeepFakesDetection", env="DEEPFAKESDETECTION_ROOT")."""
    root = os.environ.get(env)
    if root:
        if not os.path.isfile(os.path.join(root, "training", "test.py")):
            missing(f"{env}={root} is not a DeepfakeBench checkout")
        return root
    tar = snapshot(name)
    if tar is None:
        missing(f"no {name} snapshot in {reference_dir()} and {env} is not set")
    out = tmp_path_factory.mktemp(f"{name}_snapshot")
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return str(out / name)


def fork_root(tmp_path_factory):
    """The DeepFakesDetection fork (a DeepfakeBench fork with its own clip_enhanced, clip_stan, timesformer)."""
    return checkout_root(tmp_path_factory, "DeepFakesDetection", "DEEPFAKESDETECTION_ROOT")


def checkout_python():
    """The interpreter with DeepfakeBench's requirements ($DEEPFAKEBENCH_PYTHON)."""
    python = os.environ.get("DEEPFAKEBENCH_PYTHON")
    if not python or not os.path.isfile(python):
        missing("DEEPFAKEBENCH_PYTHON does not name an interpreter with DeepfakeBench's requirements "
                "(bash scripts/setup_dfb_env.sh builds one; scripts/run_tests.sh sets it)")
    return python
