"""Every way a run can end, with DataLoader workers: success, bad input, an exception raised in a
worker, Ctrl-C, SIGTERM, an error in the test phase. Each `declip train` runs in its own process
session with a time limit; the process must end within it, with its exit status and one line, and
leave no process of its session behind (a worker that ignores SIGTERM once kept a failed run alive
forever: shared/DESIGN.md section 14).
"""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from declip_plugin.data.demo import make_demo_data
from tests.conftest import TINY_VIT

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
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("endings")
    make_demo_data(root / "data" / "demo", seed=3, size=64, n_train=8, n_val=2, n_test=4)
    cfg = {"model_name": "declip", "backbone": TINY_VIT, "pretrained": "none", "feature_layer": "layer0",
           "decoder_type": "linear", "fully_supervised": True, "fix_backbone": False, "train_batchSize": 2,
           "test_batchSize": 2, "nEpochs": 1, "train_dataset": ["demo-telea"], "test_dataset": ["demo-telea"],
           "tensorboard_masks": 0, "early_stopping": {"enabled": False}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return root


def _copy_data(world, tmp_path):
    import shutil

    shutil.copytree(world / "data", tmp_path / "data")
    return tmp_path / "data"


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
def test_success(world, tmp_path, workers):
    logs = tmp_path / "logs"
    code, err = _finish(_start(_train_args(world, world / "data", logs, workers)), time.time())
    assert code == 0, err[-2000:]
    (run_dir,) = logs.iterdir()
    assert (run_dir / "test" / "demo-telea" / "metrics.json").is_file()


@pytest.mark.parametrize("workers", [2, 4])
def test_bad_input_in_a_worker(world, tmp_path, workers):
    data = _copy_data(world, tmp_path)
    bad = data / "demo" / "celebahq" / "fake" / "telea" / "images" / "train" / "0003.png"
    _truncate(bad)
    logs = tmp_path / "logs"
    code, err = _finish(_start(_train_args(world, data, logs, workers)), time.time())
    assert code == 2, err[-2000:]
    assert _last_line(err).startswith("error: ") and str(bad) in _last_line(err), err[-2000:]
    assert "Traceback" not in err
    assert not logs.exists() or not any(logs.iterdir())  # a run without a finished epoch leaves nothing


@pytest.mark.parametrize("workers", [2])
def test_an_exception_in_a_worker(world, tmp_path, workers):
    logs = tmp_path / "logs"
    argv = ["0005.png", *_train_args(world, world / "data", logs, workers)]
    code, err = _finish(_start(argv, script=WORKER_BUG), time.time())
    assert code == 1, err[-2000:]  # not bad input: the traceback is the report
    assert "RuntimeError: worker bug reading" in err
    assert not logs.exists() or not any(logs.iterdir())


@pytest.mark.parametrize("workers", [2])
def test_an_error_in_the_test_phase(world, tmp_path, workers):
    data = _copy_data(world, tmp_path)
    bad = data / "demo" / "celebahq" / "fake" / "telea" / "images" / "test" / "0001.png"
    logs = tmp_path / "logs"
    # the file breaks after the checks before work, while training runs: the test phase meets it
    proc = _start(_train_args(world, data, logs, workers, "--opt", "nEpochs=2"))
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
def test_ctrl_c(world, tmp_path, workers):
    code, err = _interrupt_in_a_later_epoch(world, tmp_path, workers, signal.SIGINT)
    assert code == 130, err[-2000:]
    assert _last_line(err) == "interrupted"


@pytest.mark.parametrize("workers", [4])
def test_sigterm(world, tmp_path, workers):
    code, err = _interrupt_in_a_later_epoch(world, tmp_path, workers, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert _last_line(err) == "terminated by SIGTERM"


def test_a_failed_loop_stops_its_workers_in_the_process(world, tmp_path):
    """In-process runs (the protocol's debug executor, notebooks) go on after a failed run: its loader's
    workers are gone when the error arrives, not at the process's exit."""
    import multiprocessing

    from declip_plugin.cli import main

    data = _copy_data(world, tmp_path)
    _truncate(data / "demo" / "celebahq" / "fake" / "telea" / "images" / "train" / "0002.png")
    before = {p.pid for p in multiprocessing.active_children()}
    code = main([str(a) for a in _train_args(world, data, tmp_path / "logs", 2)])
    assert code == 2
    left = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert not left, left
