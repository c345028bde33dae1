"""`declip protocol --executor local`: a 2-method x 2-train x 2-test grid as real subprocess jobs
(submitit's LocalExecutor), killed in the middle (the command and its jobs, as a lost machine) and
resumed; finished cells are not retrained, and the grid equals the in-process one (--executor debug)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from declip_plugin.cli import main as cli_main
from declip_plugin.data.demo import make_demo_data
from tests.conftest import tiny_rn112_config

TRAIN = ["demo-telea", "demo-noise"]
TEST = ["demo-telea", "demo-noise"]
CELLS = ["tiny_a__demo-telea", "tiny_a__demo-noise", "tiny_b__demo-telea", "tiny_b__demo-noise"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid")
    make_demo_data(root / "data" / "demo", seed=3, size=64, n_train=4, n_val=2, n_test=2, methods=("telea", "noise"))
    for name, epochs, lr in (("tiny_a", 1, 2.0), ("tiny_b", 2, 0.5)):  # SGD: the cells' numbers differ
        cfg = tiny_rn112_config(train_batchSize=4, test_batchSize=4, workers=0, nEpochs=epochs,
                                early_stopping={"enabled": False}, tensorboard_masks=0,
                                optimizer={"type": "sgd", "sgd": {"lr": lr}})
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _args(world, out, executor):
    return ["protocol", "--method", str(world / "tiny_a.yaml"), str(world / "tiny_b.yaml"), "--train", *TRAIN,
            "--test", *TEST, "--out", str(out), "--data_root", str(world / "data"), "--device", "cpu",
            "--executor", executor]


def _markers(out):
    cells = out / "cells"
    return {p.stem: p.read_text() for p in cells.glob("*.json")} if cells.is_dir() else {}


def _run_dirs(out, cell):
    runs = out / "runs"
    return sorted(d.name for d in runs.iterdir() if d.name.startswith(cell + "_")) if runs.is_dir() else []


def _kill_when_a_cell_is_half_done(proc, out):
    """SIGKILL the command and its jobs (one process group, as a lost machine) once tiny_b__demo-telea
    (2 epochs) has finished its first epoch, or, if that moment was missed, once the next cell started;
    returns the unfinished cell that had started."""
    deadline = time.time() + 300
    while time.time() < deadline:
        assert proc.poll() is None, "the protocol ended before it could be killed"
        done = _markers(out)
        half = "tiny_b__demo-telea"
        if half in done:
            half = "tiny_b__demo-noise"
            ready = bool(_run_dirs(out, half))
        else:
            ready = any((out / "runs" / d / "ckpt_last.pth").is_file() for d in _run_dirs(out, half))
        if ready:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return half
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the grid did not reach its third cell within 300 s")


def test_local_grid_killed_resumed_and_equal_to_in_process(world, tmp_path, capsys):
    out = tmp_path / "local"
    cmd = [sys.executable, "-m", "declip_plugin", *_args(world, out, "local")]
    with open(tmp_path / "first.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            half = _kill_when_a_cell_is_half_done(proc, out)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    before = _markers(out)
    assert before and half not in before and len(before) < len(CELLS)
    runs_before = {c: _run_dirs(out, c) for c in CELLS}
    resumable = [d for d in runs_before[half] if (out / "runs" / d / "ckpt_last.pth").is_file()]
    capsys.readouterr()
    assert cli_main(["protocol", "--status", str(out)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"| {half} |"))
    assert "| failed |" in row and "_log.err" in row  # the killed job: gone, no result, its log named

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert f"{len(before)} kept, {len(CELLS) - len(before)} trained now, 0 failed" in again.stdout
    after = _markers(out)
    assert sorted(after) == sorted(CELLS)
    for cell, text in before.items():  # finished cells: neither retrained nor rewritten
        assert after[cell] == text and _run_dirs(out, cell) == runs_before[cell]
    if resumable:  # the half-done cell continued in its own run folder, from its last epoch
        assert _run_dirs(out, half) == runs_before[half]
        assert json.loads(after[half])["run_dir"].endswith(resumable[-1])

    inproc = tmp_path / "inproc"
    assert cli_main(_args(world, inproc, "debug")) == 0
    local_results = {c: json.loads(t)["results"] for c, t in after.items()}
    inproc_results = {c: json.loads(t)["results"] for c, t in _markers(inproc).items()}
    assert local_results == inproc_results  # every metric of every cell, exactly
    assert len({json.dumps(r, sort_keys=True) for r in local_results.values()}) == len(CELLS)  # cells differ
    grid = json.loads((out / "grid.json").read_text())
    assert grid["missing"] == [] and grid["metrics"] == json.loads((inproc / "grid.json").read_text())["metrics"]


def _processes_naming(text):
    """Pids of the processes whose command line contains ``text`` (a job's command names its folder)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_stopping_the_command_stops_its_local_jobs_without_a_traceback(world, tmp_path, how):
    """SIGTERM to the command, or Ctrl-C at its terminal (SIGINT to the whole process group, submitit's job
    controller included): the command ends with its one line, the job's run stops cleanly (keeping its
    last epoch), no process is left, and no KeyboardInterrupt traceback of the controller reaches the
    terminal."""
    cfg = yaml.safe_load((world / "tiny_a.yaml").read_text())
    (tmp_path / "long.yaml").write_text(yaml.safe_dump({**cfg, "nEpochs": 5000}))
    out = tmp_path / "proto"
    cmd = [sys.executable, "-m", "declip_plugin", "protocol", "--method", str(tmp_path / "long.yaml"), "--train",
           "demo-telea", "--test", "demo-telea", "--out", str(out), "--data_root", str(world / "data"), "--device",
           "cpu", "--executor", "local"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not list(out.glob("runs/*/ckpt_last.pth")):  # the job is training (an epoch done)
            assert proc.poll() is None and time.time() < deadline, "the job did not start training"
            time.sleep(0.05)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == (143 if how == "sigterm" else 130), err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == ("terminated by SIGTERM" if how == "sigterm" else "interrupted")
    assert _processes_naming(str(out)) == []
    (log,) = out.glob("jobs/submitit/*/*_0_log.out")
    assert "the run stopped;" in log.read_text() and "keeps its last finished epoch" in log.read_text()
