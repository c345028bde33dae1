"""scripts/gpu_check.sh: its dry run (the GPU run's code paths on the CPU at tiny shapes) runs every
step and reports what each measured; the goals are judged from the figures."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch
from tests.dfb_support import in_ci

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "scripts", "gpu_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable)
    proc = subprocess.run(["bash", SCRIPT, "--dry-run", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=env)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-6000:])
    found = list(out.glob("*-dry-run.json"))
    assert len(found) == 1, found
    md = found[0].with_suffix(".md").read_text()
    return json.loads(found[0].read_text()), md, proc.stdout


def test_every_output_names_the_device_and_versions(dry_run):
    result, md, stdout = dry_run
    env = result["environment"]
    assert env["dry_run"] is True and env["torch"] == torch.__version__ and env["device"].startswith("CPU")
    line = f"device: {env['device']} (0 GPU(s)) | driver None | CUDA {env['cuda']} | torch {torch.__version__}"
    assert line in md and line in stdout and "DRY RUN" in md


def test_bench_step_measures_reference_and_optimized_with_compile_and_fusion(dry_run):
    cases = dry_run[0]["steps"]["bench"]["result"]
    assert [("--compile" in c["command"], "tiny-rn" in c["command"]) for c in cases] == [
        (False, False), (True, False), (False, True)]
    for c in cases:
        got = {(r["mode"], r["configuration"]) for r in c["rows"]}
        assert {("inference", "reference"), ("inference", "optimized"), ("train", "reference"),
                ("train", "optimized, cached")} <= got, c["case"]
        assert all(r["img_s"] > 0 and r["peak_mem_mb"] > 0 for r in c["rows"])
    assert [c["reference_check_max_abs_diff"] for c in cases] == [0.0] * 3  # the reference taps what we tap


def test_torchrun_gives_the_single_process_metrics(dry_run):
    ddp = dry_run[0]["steps"]["ddp"]["result"]
    assert (ddp["processes"], ddp["backend"], ddp["ok"]) == (2, "gloo", True)
    assert "train --ddp" in ddp["command"] and ddp["precision"]["used"] == "fp32"
    assert ddp["max_abs_diff"] <= 1e-6 and ddp["torchrun"]["iou"] == pytest.approx(ddp["single_process"]["iou"])


def test_precision_step_runs_bf16_for_real(dry_run):
    p = dry_run[0]["steps"]["precision"]["result"]
    assert p["precision"] == "bf16" and p["images"] > 0
    assert 0 < p["max_abs_mask_logit_diff"] < 1.0  # bf16 autocast ran (fp32 would give exactly 0)
    assert 0 <= p["iou_fp32"] <= 100 and 0 <= p["iou_bf16"] <= 100


def test_deepfakebench_step_finds_our_localization_line(dry_run):
    step = dry_run[0]["steps"]["dfb"]
    if not os.environ.get("DEEPFAKEBENCH_ROOT"):
        assert "DEEPFAKEBENCH_ROOT" in step["skipped"]
        if in_ci():
            pytest.fail("CI runs the DeepfakeBench step: DEEPFAKEBENCH_ROOT is unset")
        pytest.skip("no DeepfakeBench checkout (bash scripts/setup_dfb_env.sh)")
    line = step["result"]["localization_line"]
    assert "localization (declip_plugin): " in line and "iou: " in line and step["result"]["cuda_stubbed"]


def test_without_cuda_the_gpu_run_is_refused_in_one_line():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run(["bash", SCRIPT, "--steps", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: no CUDA device: run scripts/gpu_check.sh on a GPU machine, or --dry-run on this one"]


@pytest.mark.parametrize("inference,warm,points,expected", [
    (1600.0, 5.5, 0.4, ["met", "met", "met"]),
    (1400.0, 4.9, 1.2, ["missed", "missed", "missed"]),
])
def test_goals_are_judged_from_the_figures(inference, warm, points, expected):
    mod = _module()
    result = {"environment": {"dry_run": False}, "steps": {
        "bench": {"result": [{"rows": [{"mode": "inference", "configuration": "optimized", "img_s": inference}],
                              "ratios": {"train_cached": warm}}]},
        "precision": {"result": {"iou_points_diff": points}}}}
    assert [status for _, _, status in mod.goals(result)] == expected
