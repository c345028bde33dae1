"""Progress output: bars only on a terminal, one line per epoch / test set otherwise, nothing with --quiet."""
import logging
import subprocess
import sys

import pytest

from declip_plugin import progress as prog
from tests.conftest import make_world, tiny_rn112_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    cfg = tiny_rn112_config(mask_size=48, train_batchSize=2, test_batchSize=2, workers=0, nEpochs=2,
                            early_stopping={"enabled": False}, train_dataset=["demo-telea"], test_dataset=["demo-telea"],
                            data_root=str(root / "data"), device="cpu", test_include_real=True)
    make_world(root, cfg, seed=5, size=48, n_train=4, n_val=2, n_test=2, methods=("telea",))
    return root, root / "tiny.yaml"


def _train(root, path, *extra):
    log = root / f"log{len(extra)}.txt"
    with open(log, "w") as f:  # stdout and stderr to a file, as `> log 2>&1`: not a terminal
        proc = subprocess.run([sys.executable, "-m", "declip_plugin", *extra, "train", "--detector_path", str(path),
                               "--log_dir", str(root / f"logs{len(extra)}")], stdout=f, stderr=subprocess.STDOUT,
                              timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    return text


def test_a_log_file_gets_lines_not_carriage_return_fragments(tiny):
    root, path = tiny
    text = _train(root, path)
    assert "\r" not in text
    epochs = [line for line in text.splitlines() if " epoch " in line and "train loss" in line]
    assert [line.split(" epoch ")[1].split(":")[0] for line in epochs] == ["1/2", "2/2"]
    assert all(" img/s, ETA " in line for line in epochs)
    tests = [line for line in text.splitlines() if "test demo-telea: " in line and " img/s)" in line]
    assert len(tests) == 1 and "4 images" in tests[0]  # 2 manipulated + 2 real test images, once


def test_quiet_prints_neither_bars_nor_progress_lines(tiny):
    root, path = tiny
    text = _train(root, path, "--quiet")
    assert "\r" not in text and "img/s" not in text and "ETA" not in text
    assert "run directory:" in text  # results are still printed
    # the run's own log keeps the epoch lines
    (run,) = (root / "logs1").iterdir()
    log = (run / "training.log").read_text()
    assert "epoch 1/2: train loss" in log and "epoch 2/2: train loss" in log and " img/s, ETA " in log


def test_off_a_terminal_one_summary_line_per_loop(caplog):
    caplog.set_level(logging.INFO, logger="declip_plugin.progress")
    bar = prog.progress(range(3), "test x")
    assert not hasattr(bar, "n")  # no tqdm bar: pytest's captured stderr is not a terminal
    for _ in bar:
        bar.update_images(4)
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == ["test x: 3 batches, 12 images"]
    caplog.clear()
    prog.set_quiet(True)
    try:
        for _ in prog.progress(range(3), "test y"):
            pass
    finally:
        prog.set_quiet(False)
    assert caplog.records == []
    assert prog.eta_line(2, 8, 30.0) == "ETA 1m30s" and prog.eta_line(8, 8, 30.0) == "ETA 0s"
