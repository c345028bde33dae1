"""Every way a run can end, with DataLoader workers: success, bad input, an exception raised in a
worker, Ctrl-C, SIGTERM, an error in the test phase. Each `declip train` runs in its own process
session with a time limit; the process must end within it, with its exit status and one line, and
leave no process of its session behind (a worker that ignores SIGTERM once kept a failed run alive
forever: shared/DESIGN.md section 14).

In this process (through the CLI's own error handling): a corrupt file met by a worker is one line naming
it, SIGTERM at a chosen batch leaves no run folder or a resumable one, a failed loop stops its workers;
and an error on one DDP rank (torchrun) ends every rank.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import (assert_nothing_under, assert_one_line, copy_data, data_args, files_under, make_world,
                            run_cli, tiny_config)

LIMIT_S = 90  # a run here takes seconds; a hang is the failure this file exists for

# a worker raises an error that is no bad input (a bug, a failing disk): the child patches the dataset
# class before running the CLI, so the workers (forked) inherit the patch; the main process's checks
# of the files pass
WORKER_BUG = """
import sys
import torch.utils.data
from declip_plugin.data import base
from declip_plugin.cli import main

original = base.ManipulationDataset.read_image

def read_image(self, path):
    if torch.utils.data.get_worker_info() is not None and str(path).endswith(sys.argv[1]):
        raise RuntimeError("worker bug reading " + str(path))
    return original(self, path)

base.ManipulationDataset.read_image = read_image
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def busy_world(tmp_path_factory):
    """8 train images in batches of 2: an epoch is several batches, so a signal lands while workers run."""
    cfg = tiny_config(feature_layer="layer0", decoder_type="linear", fix_backbone=False, train_batchSize=2,
                      test_batchSize=2, nEpochs=1, train_dataset=["demo-telea"], test_dataset=["demo-telea"],
                      tensorboard_masks=0, early_stopping={"enabled": False})
    return make_world(tmp_path_factory.mktemp("endings"), cfg, seed=3, size=64, n_train=8, n_val=2, n_test=4)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _start(argv, script=None):
    """`declip <argv>` (or ``script`` with ``argv``) in a new session, stdout discarded, stderr kept."""
    cmd = [sys.executable, "-c", script] if script else [sys.executable, "-m", "declip_plugin"]
    return subprocess.Popen(cmd + [str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)


def _finish(proc, started):
    """Wait for ``proc`` within the limit; then no process of its session may be left."""
    try:
        _, err = proc.communicate(timeout=max(1.0, LIMIT_S - (time.time() - started)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the run did not end within {LIMIT_S} s: {err[-1500:]}")
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("worker processes outlived the run")
    return proc.returncode, err


def _train_args(world, data, logs, workers, *extra):
    return ["train", "--detector_path", world / "tiny.yaml", "--data_root", data, "--device", "cpu",
            "--log_dir", logs, "--opt", f"workers={workers}", *extra]


def _last_line(err):
    return err.strip().splitlines()[-1] if err.strip() else ""


@pytest.mark.parametrize("workers", [2, 4])
def test_success(busy_world, tmp_path, workers):
    logs = tmp_path / "logs"
    code, err = _finish(_start(_train_args(busy_world, busy_world / "data", logs, workers)), time.time())
    assert code == 0, err[-2000:]
    (run_dir,) = logs.iterdir()
    assert (run_dir / "test" / "demo-telea" / "metrics.json").is_file()


@pytest.mark.parametrize("workers", [2, 4])
def test_bad_input_in_a_worker(busy_world, tmp_path, workers):
    data = copy_data(busy_world, tmp_path)
    bad = data / "demo" / "celebahq" / "fake" / "telea" / "images" / "train" / "0003.png"
    _truncate(bad)
    logs = tmp_path / "logs"
    code, err = _finish(_start(_train_args(busy_world, data, logs, workers)), time.time())
    assert code == 2, err[-2000:]
    assert _last_line(err).startswith("error: ") and str(bad) in _last_line(err), err[-2000:]
    assert "Traceback" not in err
    assert not logs.exists() or not any(logs.iterdir())  # a run without a finished epoch leaves nothing


@pytest.mark.parametrize("workers", [2])
def test_an_exception_in_a_worker(busy_world, tmp_path, workers):
    logs = tmp_path / "logs"
    argv = ["0005.png", *_train_args(busy_world, busy_world / "data", logs, workers)]
    code, err = _finish(_start(argv, script=WORKER_BUG), time.time())
    assert code == 1, err[-2000:]  # not bad input: the traceback is the report
    assert "RuntimeError: worker bug reading" in err
    assert not logs.exists() or not any(logs.iterdir())


@pytest.mark.parametrize("workers", [2])
def test_an_error_in_the_test_phase(busy_world, tmp_path, workers):
    data = copy_data(busy_world, tmp_path)
    bad = data / "demo" / "celebahq" / "fake" / "telea" / "images" / "test" / "0001.png"
    logs = tmp_path / "logs"
    # the file breaks after the checks before work, while training runs: the test phase meets it
    proc = _start(_train_args(busy_world, data, logs, workers, "--opt", "nEpochs=2"))
    started = time.time()
    while not list(logs.glob("*/training.log")) and proc.poll() is None and time.time() - started < LIMIT_S:
        time.sleep(0.02)
    _truncate(bad)
    code, err = _finish(proc, started)
    assert code == 2, err[-2000:]
    assert str(bad) in _last_line(err) and "Traceback" not in err, err[-2000:]


def _interrupt_in_a_later_epoch(world, tmp_path, workers, signum):
    logs = tmp_path / "logs"
    proc = _start(_train_args(world, world / "data", logs, workers, "--opt", "nEpochs=1000"))
    started = time.time()
    while not list(logs.glob("*/ckpt_last.pth")) and proc.poll() is None and time.time() - started < LIMIT_S:
        time.sleep(0.05)
    time.sleep(0.3)  # inside a later epoch, with workers running
    os.killpg(proc.pid, signum)  # as a terminal (Ctrl-C) or SLURM (SIGTERM) does: every process of the job
    code, err = _finish(proc, started)
    (run_dir,) = logs.iterdir()
    assert (run_dir / "ckpt_last.pth").is_file()  # resumable
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    return code, err


@pytest.mark.parametrize("workers", [2, 4])
def test_ctrl_c(busy_world, tmp_path, workers):
    code, err = _interrupt_in_a_later_epoch(busy_world, tmp_path, workers, signal.SIGINT)
    assert code == 130, err[-2000:]
    assert _last_line(err) == "interrupted"


@pytest.mark.parametrize("workers", [4])
def test_sigterm(busy_world, tmp_path, workers):
    code, err = _interrupt_in_a_later_epoch(busy_world, tmp_path, workers, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert _last_line(err) == "terminated by SIGTERM"


def test_a_failed_loop_stops_its_workers_in_the_process(busy_world, tmp_path):
    """In-process runs (the protocol's debug executor, notebooks) go on after a failed run: its loader's
    workers are gone when the error arrives, not at the process's exit."""
    import multiprocessing

    from declip_plugin.cli import main

    data = copy_data(busy_world, tmp_path)
    _truncate(data / "demo" / "celebahq" / "fake" / "telea" / "images" / "train" / "0002.png")
    before = {p.pid for p in multiprocessing.active_children()}
    code = main([str(a) for a in _train_args(busy_world, data, tmp_path / "logs", 2)])
    assert code == 2
    left = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert not left, left


# --- in this process, on the `world` of tests/conftest.py (4 train images: one batch per epoch) -------------
# a corrupt file read by a DataLoader worker, in `declip train` and `declip test`
@pytest.mark.parametrize("what", ["image", "mask"])
@pytest.mark.parametrize("command", ["train", "test"])
def test_corrupt_file_in_a_worker_is_one_line_naming_it(world, tmp_path, capsys, what, command):
    data = copy_data(world, tmp_path)
    split = "train" if command == "train" else "test"
    folder = data / "demo" / "celebahq" / "fake" / "telea" / ("images" if what == "image" else "masks") / split
    bad = sorted(folder.iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    logs = tmp_path / "logs"
    argv = [command, "--detector_path", world / "tiny.yaml", "--opt", "workers=2", "--data_root", data,
            "--device", "cpu", "--log_dir", logs]
    if command == "test":
        argv += ["--weights_path", world / "tiny.pth"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    assert "DataLoader worker" not in err
    assert files_under(logs) == []  # the failed run left no folder behind


# SIGTERM (kill, SLURM preemption) ends a run like Ctrl-C
def _sigterm_at_train_batch(monkeypatch, k):
    """SIGTERM to this process at the k-th training batch (one batch per epoch here: k = the epoch)."""
    from declip_plugin.engine import trainer

    seen = []
    original = trainer.to_device

    def to_device(batch, device):
        seen.append(1)
        if len(seen) == k:
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # the signal would end pytest itself
                pytest.fail("no SIGTERM handler during training: a SIGTERM ends the process at once")
            os.kill(os.getpid(), signal.SIGTERM)
        return original(batch, device)

    monkeypatch.setattr(trainer, "to_device", to_device)


def test_sigterm_in_the_first_epoch_leaves_no_run_folder(world, tmp_path, capsys, monkeypatch):
    _sigterm_at_train_batch(monkeypatch, 1)
    code, _, err = run_cli(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                            "--opt", "nEpochs=2", *data_args(world)], capsys)
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "Traceback" not in err
    assert_nothing_under(tmp_path / "logs")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


def test_sigterm_in_the_second_epoch_keeps_a_resumable_checkpoint(world, tmp_path, capsys, monkeypatch):
    _sigterm_at_train_batch(monkeypatch, 2)
    code, _, err = run_cli(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                            "--opt", "nEpochs=2", *data_args(world)], capsys)
    assert code == 128 + signal.SIGTERM, err
    (run_dir,) = (tmp_path / "logs").iterdir()
    state = torch.load(run_dir / "ckpt_last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    assert not (run_dir / "test").exists() and not [p for p in files_under(run_dir) if ".tmp-" in p]
    monkeypatch.undo()
    code, _, err = run_cli(["train", "--resume", run_dir, *data_args(world)], capsys)
    assert code == 0, err
    state = torch.load(run_dir / "ckpt_last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert (run_dir / "test" / "demo-telea" / "metrics.json").is_file()


def test_sigterm_from_outside_ends_cleanly(world, tmp_path):
    """SIGTERM to every process of a running `declip train` with DataLoader workers (what SLURM sends on
    preemption): exit 143 with one line, no traceback, no process left, and a run folder only with a
    resumable checkpoint."""
    logs = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-m", "declip_plugin", "train", "--detector_path", str(world / "tiny.yaml"),
                             "--log_dir", str(logs), "--opt", "nEpochs=1000", "--opt", "workers=2",
                             "--data_root", str(world / "data"), "--device", "cpu"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            start_new_session=True)
    deadline = time.time() + 120
    while not list(logs.glob("*/ckpt_last.pth")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside a later epoch, with workers running
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == "terminated by SIGTERM"
    assert "Traceback" not in err and "Exception ignored" not in err, err[-2000:]
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no worker left behind
    (run_dir,) = logs.iterdir()
    assert (run_dir / "ckpt_last.pth").is_file()


# hosts and ranks: an error on one rank ends every rank
def test_an_error_on_one_ddp_rank_ends_every_rank(world, tmp_path):
    """Rank 1's validation shard holds a corrupt image; rank 0 would wait for it in the gather forever
    if rank 1 waited at a barrier before exiting. torchrun must end both, with the file named."""
    data = copy_data(world, tmp_path)
    val = sorted((data / "demo" / "celebahq" / "fake" / "telea" / "images" / "valid").iterdir())
    val[1].write_bytes(val[1].read_bytes()[:40])  # ShardSampler: sample 1 is rank 1's
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29531", "-m", "declip_plugin", "train", "--detector_path",
                           str(world / "tiny.yaml"), "--data_root", str(data), "--device", "cpu",
                           "--log_dir", str(tmp_path / "logs")],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "error: " in ln and "Traceback" not in ln]
    assert any(val[1].name in ln for ln in lines), proc.stderr[-3000:]
