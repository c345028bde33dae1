"""What CI relies on: one rule for "this is CI" (CI=1 and CI=true alike, in the scripts and the tests), .ci/run
declaring it itself, and no parametrized test list that can come out empty and skip silently."""
import os
import re
import subprocess
import sys

import pytest

from tests.dfb_support import in_ci

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALUES = {"1": True, "true": True, "TRUE": True, "True": True, "yes": True, "": False, "0": False, "false": False,
          "no": False, None: False}


@pytest.mark.parametrize("value", list(VALUES), ids=[repr(v) for v in VALUES])
def test_the_shell_and_the_python_rule_agree(value, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if value is not None:
        env["CI"] = value
    shell = subprocess.run(["bash", "-c", "source scripts/ci_env.sh && in_ci"], cwd=REPO, env=env).returncode == 0
    monkeypatch.delenv("CI", raising=False)
    if value is not None:
        monkeypatch.setenv("CI", value)
    assert shell is in_ci() is VALUES[value]


def test_nothing_else_reads_ci_on_its_own():
    """Every script and test asks scripts/ci_env.sh or tests/dfb_support.in_ci, so no check can read CI=1 as
    "not CI" and skip."""
    own = re.compile(r"\$\{?CI\b|environ(\.get)?\(\s*[\"']CI[\"']|environ\[\s*[\"']CI[\"']|getenv\(\s*[\"']CI[\"']")
    helpers = {os.path.join("scripts", "ci_env.sh"), os.path.join("tests", "dfb_support.py")}
    hits = []
    for folder in ("scripts", "tests", ".ci"):
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, REPO)
                if rel in helpers or not (name.endswith((".sh", ".py")) or folder == ".ci"):
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    hits += [f"{rel}:{n}" for n, line in enumerate(f, 1) if own.search(line)]
    assert hits == []


def test_ci_run_declares_ci_itself():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if not line.lstrip().startswith("#")]
    assert "export CI=true" in lines
    assert lines.index("export CI=true") < next(i for i, line in enumerate(lines) if "run_tests.sh" in line)


def test_an_empty_parameter_list_fails_at_collection(tmp_path):
    test = tmp_path / "test_empty.py"
    test.write_text("import pytest\n\n@pytest.mark.parametrize('name', [])\ndef test_x(name):\n    pass\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                          os.path.join(REPO, "setup.cfg"), "--rootdir", str(tmp_path), str(test)],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert out.returncode != 0 and "Empty parameter set" in out.stdout + out.stderr, out.stdout[-800:]
