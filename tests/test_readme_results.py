"""README's demo figures are the file a demo.sh run writes (logs/demo/results.md -> docs/demo_results.md)."""
import importlib.util
import os
import re

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _script():
    spec = importlib.util.spec_from_file_location("readme_results", os.path.join(ROOT, "scripts", "readme_results.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def test_readme_quotes_the_demo_runs_results_file_verbatim():
    mod = _script()
    readme = _read("README.md")
    block = readme.split(mod.BEGIN)[1].split(mod.END)[0].strip()
    assert block == _read("docs", "demo_results.md").strip()


def test_the_quoted_results_are_a_whole_demo_run():
    """Wall time, the three task leaderboards, every demo method in its own, numbers in every row."""
    text = _read("docs", "demo_results.md")
    assert re.search(r"^Wall time of `bash scripts/demo.sh`: \d+ s, of which setup \d+ s", text, re.M)
    sections = dict(re.findall(r"^### (.+?)\n\n(.*?)(?=^### |\Z)", text, re.M | re.S))
    expect = {"image localization": ("declip_demo", "clip_linear_demo", "xception_demo"),
              "image detection": ("declip_demo", "clip_linear_demo", "xception_demo"),
              "video detection": ("clip_enhanced_demo_video", "clip_stan_demo", "timesformer_demo")}
    assert sorted(sections) == sorted(expect)
    headline = {"image localization": "iou", "image detection": "auc", "video detection": "video_auc"}
    for task, methods in expect.items():
        rows = [r for r in sections[task].splitlines() if r.startswith("| ")]
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        assert f"{headline[task]} ID mean" in header and f"{headline[task]} OOD mean" in header
        assert sorted(r.split("|")[1].strip() for r in rows[1:]) == sorted(methods)
        for r in rows[1:]:
            assert all(re.fullmatch(r"(\*\*)?\d+\.\d+(\*\*)?", c.strip()) for c in r.strip("|").split("|")[1:]), r


def test_replace_block_swaps_only_the_quoted_part():
    mod = _script()
    text = f"intro\n{mod.BEGIN}\nold\n{mod.END}\noutro\n"
    assert mod.replace_block(text, "new\n") == f"intro\n{mod.BEGIN}\nnew\n{mod.END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        mod.replace_block("no markers", "x")
