"""The wheel built from the clone (the README's install path: the package is not on PyPI) holds the
package with its bundled data: every configs/**/*.yaml and model_configs/*.json of the source tree."""
import pathlib
import shutil
import subprocess
import sys
import zipfile

import declip_plugin

SRC = pathlib.Path(declip_plugin.__file__).parent
ROOT = SRC.parent


def test_the_wheel_holds_the_package_configs_and_model_configs(tmp_path):
    tree = tmp_path / "src"  # a copy: building in the clone would leave build/ behind
    tree.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "declip_plugin", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = list((tmp_path / "dist").glob("declip_plugin-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    expected = {p.relative_to(ROOT).as_posix() for pattern in ("configs/**/*.yaml", "model_configs/*.json")
                for p in SRC.glob(pattern)}
    modules = {p.relative_to(ROOT).as_posix() for p in SRC.rglob("*.py")}
    assert len(expected) > 10 and expected <= names, sorted(expected - names)
    assert modules <= names, sorted(modules - names)
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
