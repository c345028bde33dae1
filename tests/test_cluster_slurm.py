"""`declip protocol --executor slurm`.

Against a real one-node SLURM (Debian's slurm-wlm with slurmdbd, started by scripts/setup_slurm.sh; CI
starts it, elsewhere the test is skipped when no cluster answers): a grid on the CPU partition, a running
job requeued with `scontrol requeue`, `--status`, the grid equal to the in-process one, and options the
scheduler refuses named before anything is written.

Against a fake SLURM (sbatch/srun/sacct/squeue/scancel/scontrol on PATH, tests/fake_slurm.py), for what a
one-node cluster cannot produce: one job per training cell with the requested resources (GPUs, qos,
account), a lost node (NODE_FAIL) reported in --status with its log, a preempted job (USR2) requeued and
continued from its last epoch, the failed cell resubmitted by the same command. The command's bad input
(a damaged job record, a submission sbatch refuses): tests/test_protocol_bad_input.py."""
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from declip_plugin.cli import main as cli_main
from tests import fake_slurm
from tests.conftest import make_world, tiny_rn112_config

CELLS = ["tiny__demo-telea", "tiny__demo-noise"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = tiny_rn112_config(train_batchSize=4, test_batchSize=4, workers=0, nEpochs=3, early_stopping={"enabled": False},
                            tensorboard_masks=0)
    root = make_world(tmp_path_factory.mktemp("slurm"), cfg, seed=3, size=64, n_train=4, n_val=2, n_test=2,
                      methods=("telea", "noise"))
    fake_slurm.install(str(root / "bin"))
    return root


def _env(world, state, **extra):
    env = dict(os.environ, PATH=f"{world / 'bin'}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_STATE=str(state))
    env.update(extra)
    return env


def _protocol(world, out, env):
    cmd = [sys.executable, "-m", "declip_plugin", "protocol", "--method", str(world / "tiny.yaml"), "--train",
           "demo-telea", "demo-noise", "--test", "demo-telea", "--out", str(out), "--data_root", str(world / "data"),
           "--device", "cpu", "--executor", "slurm", "--gpus-per-job", "1", "--partition", "gpu", "--time", "2:00:00",
           "--mem", "16G", "--slurm-opt", "qos=high", "--slurm-opt", "account=proj", "--max-parallel", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def _sbatch_lines(state, job):
    return [ln for ln in (state / f"{job}.sbatch").read_text().splitlines() if ln.startswith("#SBATCH")]


def test_fake_slurm_jobs_resources_failure_status_requeue_and_resubmission(world, tmp_path, capsys, monkeypatch):
    out, state = tmp_path / "proto", tmp_path / "state"
    first_run = out / "runs" / "tiny__demo-telea_*" / "ckpt_last.pth"  # after epoch 1 of the first cell
    env = _env(world, state, FAKE_SLURM_FAIL="1", FAKE_SLURM_PREEMPT=f"0:{first_run}")
    done = _protocol(world, out, env)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    # one submission: a job array with one task per training cell, with the resources asked for
    assert sorted(p.name for p in state.glob("*.sbatch")) == ["1.sbatch"]
    lines = _sbatch_lines(state, 1)
    for want in ("--array=0-1%1", "--gpus-per-node=1", "--ntasks-per-node=1", "--nodes=1", "--partition=gpu",
                 "--time=120", "--mem=16GB", "--qos=high", "--account=proj"):
        assert f"#SBATCH {want}" in lines, (want, lines)
    # the preempted task was requeued (same job id) and continued from its last finished epoch
    assert (state / "requeued").read_text().split() == ["1_0"]
    runs = sorted((out / "runs").glob("tiny__demo-telea_*"))
    assert len(runs) == 1 and "resuming" in (out / "jobs" / "submitit" / "1_0" /
                                             "1_0_0_log.out").read_text()
    marker = json.loads((out / "cells" / "tiny__demo-telea.json").read_text())
    assert marker["run_dir"] == str(runs[0]) and set(marker["results"]) == {"demo-telea"}
    # the lost node: one error line naming the cell, its job and its log; the other cell's results kept
    err = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    log = out / "jobs" / "submitit" / "1_1" / "1_1_0_log.err"
    assert len(err) == 1 and "tiny__demo-noise" in err[0] and "job 1_1" in err[0] and str(log) in err[0]
    board = (out / "leaderboard.md").read_text()
    assert "tiny__demo-telea" in board and "| tiny__demo-noise" not in board and "not finished" in board
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("FAKE_SLURM_STATE", str(state))
    capsys.readouterr()
    assert cli_main(["protocol", "--status", str(out)]) == 0
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
            for ln in capsys.readouterr().out.splitlines() if ln.startswith("| tiny__")}
    assert rows["tiny__demo-telea"][3:5] == ["done", "1_0"]
    assert rows["tiny__demo-noise"][3:6] == ["failed", "1_1", str(log)] and "NODE FAILURE" in rows["tiny__demo-noise"][6]
    assert "NODE FAILURE" in log.read_text()

    # the same command again: only the failed cell is submitted (a single job), the grid completes
    again = _protocol(world, out, _env(world, state))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "1 kept, 1 trained now, 0 failed" in again.stdout
    assert sorted(p.name for p in state.glob("*.sbatch")) == ["1.sbatch", "2.sbatch"]
    assert not any(ln.startswith("#SBATCH --array") for ln in _sbatch_lines(state, 2))
    assert json.loads((out / "cells" / "tiny__demo-telea.json").read_text()) == marker  # kept as it was
    grid = json.loads((out / "grid.json").read_text())
    assert grid["missing"] == [] and [r["train"] for r in grid["metrics"]["iou"]] == ["demo-telea", "demo-noise"]
    assert all(isinstance(r["values"]["demo-telea"], float) for r in grid["metrics"]["iou"])


def test_a_job_sacct_does_not_know_is_neither_resubmitted_nor_waited_for(world, tmp_path, monkeypatch, capsys):
    from declip_plugin.commands.protocol import job_options
    from declip_plugin.protocol import cluster
    from declip_plugin.protocol.cells import Protocol
    from declip_plugin.protocol.plan import make_plan

    out, state = tmp_path / "proto", tmp_path / "state"
    env = _env(world, state)
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("FAKE_SLURM_STATE", str(state))
    p = Protocol(out, make_plan(methods=[str(world / "tiny.yaml")], train=["demo-telea"],
                                            test=["demo-telea"]))
    cid = p.plan["cells"][0]["id"]
    log = out / "jobs" / "submitit" / "77" / "77_0_log"
    os.makedirs(out / "jobs")
    (out / "jobs" / f"{cid}.json").write_text(json.dumps({  # submitted by a command that then died
        "cell": cid, "executor": "slurm", "job_id": "77", "state": "submitted", "error": None,
        "stdout": f"{log}.out", "stderr": f"{log}.err"}))
    run = cluster.run_grid(p, job_options("slurm", time="60"))
    assert run.unknown == [cid] and run.finished == [] and not list(state.glob("*.sbatch"))
    capsys.readouterr()
    assert cli_main(["protocol", "--status", str(out)]) == 0
    row = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith(f"| {cid} |"))
    assert "| unknown | 77 |" in row


@pytest.mark.parametrize("text,minutes", [("90", 90), ("30:30", 31), ("2:00:00", 120), ("1-00:00:00", 1440),
                                          ("1-12", 2160), ("1-1:30", 1530)])
def test_time_in_slurms_forms(text, minutes):
    from declip_plugin.commands.protocol import parse_time

    assert parse_time(text) == minutes


@pytest.mark.parametrize("text,gb", [("64G", 64.0), ("64GB", 64.0), ("512M", 0.5), ("2T", 2048.0), ("32", 32.0)])
def test_memory_forms(text, gb):
    from declip_plugin.commands.protocol import parse_mem

    assert parse_mem(text) == gb


@pytest.mark.parametrize("report", [True, False])
def test_no_report_reaches_the_slurm_job_that_writes_the_outputs(report, tmp_path, monkeypatch):
    """--no-report: the last SLURM job of the array (the submitting command may be gone) writes no
    report.html either; the flag travels in the submitted job."""
    import contextlib

    from declip_plugin.protocol import cluster

    submitted = []

    class Executor:
        def batch(self):
            return contextlib.nullcontext()

        def submit(self, job):
            submitted.append(job)
            return type("Job", (), {"job_id": f"9_{len(submitted) - 1}",
                                    "paths": type("Paths", (), {"stderr": tmp_path / "log.err"})()})()

    monkeypatch.setattr(cluster, "write_record", lambda *a, **k: None)
    p = type("P", (), {"out": str(tmp_path)})()
    cluster._submit_slurm(p, Executor(), ["a", "b"], report=report)
    assert [(j.cell_id, j.finish, j.report) for j in submitted] == [("a", True, report), ("b", True, report)]


# ---- a real one-node SLURM (scripts/setup_slurm.sh) -----------------------------------------------------

def _real_slurm():
    """Skip (fail in CI) unless a SLURM cluster answers sinfo and sacct on this machine."""
    from tests.dfb_support import missing

    ok = all(shutil.which(c) for c in ("sbatch", "srun", "sacct", "scontrol", "sinfo"))
    for cmd in (["sinfo", "-h", "-p", "cpu", "-o", "%T"], ["sacct", "-n", "-X", "-j", "1"]):
        if ok:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            ok = done.returncode == 0
    if not ok:
        missing("no SLURM cluster with a partition 'cpu' answers sinfo and sacct here; as root, bash "
                "scripts/setup_slurm.sh starts a one-node one (CI does)")


def _job_of(out, cell):
    path = out / "jobs" / f"{cell}.json"
    return json.loads(path.read_text())["job_id"] if path.is_file() else None


def _sacct(job):
    """Every record of ``job`` (-D: the requeued runs too): [(state, partition, requested memory)]."""
    done = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "State,Partition,ReqMem", "-j", job],
                          capture_output=True, text=True, timeout=60)
    return [tuple(ln.split("|")) for ln in done.stdout.split()]


def _sacct_until_ended(job, timeout=240):
    """The records of ``job`` once its last one has ended (the requeued run included)."""
    deadline = time.time() + timeout
    while True:
        records = _sacct(job)
        if records and records[-1][0] not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING") or time.time() > deadline:
            return records
        time.sleep(0.5)


def _requeue_once_running(proc, out, cell):
    """``scontrol requeue`` the job of ``cell`` once SLURM runs it (SLURM kills it some seconds later: while
    it starts, or trains), then let the requeued job start at once (SLURM holds a requeued job back for two
    minutes). Returns the job id."""
    deadline, job, state = time.time() + 240, None, ""
    while state != "RUNNING":
        assert proc.poll() is None and time.time() < deadline, f"the job of {cell} did not start ({job}: {state})"
        time.sleep(0.1)
        job = _job_of(out, cell)
        state = job and subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                                       timeout=60).stdout.strip()
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True, timeout=60)
    while time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True,
                           capture_output=True, timeout=60)
            return job
        time.sleep(0.2)
    pytest.fail(f"the requeued job {job} did not come back to PENDING")


def test_a_grid_on_a_real_slurm_survives_a_requeue_and_equals_the_in_process_grid(world, tmp_path, capsys):
    _real_slurm()
    base = yaml.safe_load((world / "tiny.yaml").read_text())
    # a long cell (requeued while it runs) and a short one; their numbers differ
    for name, epochs in (("long", 150), ("short", 2)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**base, "nEpochs": epochs}))
    out = tmp_path / "slurm"

    def argv(out, *executor):
        return ["protocol", "--method", str(tmp_path / "long.yaml"), str(tmp_path / "short.yaml"), "--train",
                "demo-telea", "--test", "demo-telea", "demo-noise", "--out", str(out), "--data_root",
                str(world / "data"), "--device", "cpu", *executor]

    slurm = ["--executor", "slurm", "--partition", "cpu", "--gpus_per_job", "0", "--time", "10", "--mem", "1G"]
    # options the scheduler refuses: one line from sbatch --test-only, nothing written, nothing submitted
    for flag, value, options, answer in (
            ("--partition", "gpu", "--partition gpu, --time 10 min, --mem 1G", "Invalid partition name specified"),
            ("--mem", "4000G", "--partition cpu, --time 10 min, --mem 4000G", "Requested node configuration is not "
                                                                              "available")):
        bad = list(slurm)
        bad[bad.index(flag) + 1] = value
        capsys.readouterr()
        assert cli_main(argv(out, *bad)) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line == (f"error: --executor slurm: the scheduler refuses the jobs' options ({options}, --gpus_per_job "
                        f"0): allocation failure: {answer} (sbatch --test-only; nothing was submitted)"), line
        assert not out.exists()

    proc = subprocess.Popen([sys.executable, "-m", "declip_plugin", *argv(out, *slurm)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        job = _requeue_once_running(proc, out, "long__demo-telea")
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "0 kept, 2 trained now, 0 failed" in stdout
    records = _sacct_until_ended(job)
    assert records[0][0] == "REQUEUED" and records[-1][0] == "COMPLETED", records
    assert all(r[1:] == ("cpu", "1G") for r in records), records  # the partition and --mem reached SLURM
    logs = out / "jobs" / "submitit" / job
    assert "DUE TO JOB REQUEUE" in (logs / f"{job}_0_log.err").read_text()
    # the requeued job started the cell again (killed before its first epoch: the dead run folder removed),
    # continued its run from the last finished epoch, or found it complete: one run folder, the marker names it
    (run,) = out.glob("runs/long_*")
    assert json.loads((out / "cells" / "long__demo-telea.json").read_text())["run_dir"] == str(run)

    capsys.readouterr()
    assert cli_main(["protocol", "--status", str(out)]) == 0
    rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
            for ln in capsys.readouterr().out.splitlines() if ln.startswith(("| long__", "| short__"))}
    assert rows["long__demo-telea"][3:5] == ["done", job] and rows["short__demo-telea"][3] == "done", rows

    inproc = tmp_path / "inproc"
    assert cli_main(argv(inproc, "--executor", "debug")) == 0
    cells = {p.stem: json.loads(p.read_text())["results"] for p in (out / "cells").glob("*.json")}
    assert cells == {p.stem: json.loads(p.read_text())["results"] for p in (inproc / "cells").glob("*.json")}
    assert cells["long__demo-telea"] != cells["short__demo-telea"]
    grid = json.loads((out / "grid.json").read_text())
    assert grid["missing"] == [] and grid["metrics"] == json.loads((inproc / "grid.json").read_text())["metrics"]
