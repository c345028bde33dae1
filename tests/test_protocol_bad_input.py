"""`declip protocol` with bad input, as a careless user types it: one `error:` line naming what was
typed, exit status 2, and nothing written (so the corrected command on the same --out runs); a grid
killed mid-cell shows only complete cells; with --executor slurm (a fake SLURM on PATH, tests/fake_slurm.py)
a damaged job record and a submission sbatch refuses. Training is a stand-in here (the real jobs:
tests/test_cluster_local.py, tests/test_cluster_slurm.py)."""
import json
import os
import shutil

import pytest

from declip_plugin.cli import main as cli_main
from tests import fake_slurm
from tests.conftest import assert_one_line, data_args, files_under, make_world, run_cli, tiny_rn112_config

TESTS = ["demo-telea", "demo-noise"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("pbad"), tiny_rn112_config(workers=0, nEpochs=1), seed=4, size=64,
                      n_train=2, n_val=2, n_test=2, methods=("telea", "noise"))


@pytest.fixture(scope="module")
def slurm_bin(tmp_path_factory):
    """A fake SLURM's commands (tests/fake_slurm.py) in a folder to put first on PATH."""
    return fake_slurm.install(str(tmp_path_factory.mktemp("slurm_bin")))


def fake_slurm_env(monkeypatch, slurm_bin, state, **extra):
    """The fake SLURM first on PATH, its jobs' states in ``state``, and ``extra`` (FAKE_SLURM_*) set."""
    monkeypatch.setenv("PATH", f"{slurm_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_STATE", str(state))
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def fake_train(monkeypatch):
    """engine.run.train replaced: a run folder with every test set's metrics (``fail_after``: the name
    of a test set after which the run is killed, leaving that set's numbers only)."""
    calls = []

    def train(config, overrides, resume=None, weights_path=None):
        name = overrides["name"]
        calls.append(name)
        run_dir = os.path.join(overrides["log_dir"], f"{name}_2026-01-01-00-00-{len(calls):02d}")
        for i, t in enumerate(overrides["test_dataset"]):
            os.makedirs(os.path.join(run_dir, "test", t))
            with open(os.path.join(run_dir, "test", t, "metrics.json"), "w") as f:
                json.dump({"dataset": t, "method": name, "metrics": {"iou": 10.0 * len(calls) + i}}, f)
            if train.fail_after == (name, t):
                raise KeyboardInterrupt  # killed while testing: one test set scored, the others not
        return run_dir

    train.fail_after = None
    train.calls = calls
    monkeypatch.setattr("declip_plugin.engine.run.train", train)
    return train


def base(world, out, *extra):
    return ["protocol", "--method", world / "tiny.yaml", "--train", "demo-telea", "--test", *TESTS, "--out", out,
            "--data_root", world / "data", "--device", "cpu", "--executor", "debug", *extra]


CASES = [
    ("sweep without values", lambda w, o: base(w, o, "--sweep", "feature_layer"), ["feature_layer", "KEY=V1,V2"]),
    ("sweep of one value", lambda w, o: base(w, o, "--sweep", "feature_layer=layer1"), ["at least two values"]),
    ("misspelled sweep key", lambda w, o: base(w, o, "--sweep", "feature_layr=layer0,layer1"),
     ["--sweep feature_layr=layer0,layer1", "'feature_layr'", "did you mean 'feature_layer'"]),
    ("misspelled --opt key", lambda w, o: base(w, o, "--opt", "nEpoch=2"), ["--opt", "'nEpoch'", "'nEpochs'"]),
    ("--opt of a method not in the protocol", lambda w, o: base(w, o, "--opt", "tinny:nEpochs=2"),
     ["--opt tinny:", "no method 'tinny'", "did you mean 'tiny'"]),
    ("misspelled --opt key of one method", lambda w, o: base(w, o, "--opt", "tiny:nEpoch=2"), ["'nEpoch'", "'nEpochs'"]),
    ("--optional_tests without a preset", lambda w, o: base(w, o, "--optional_tests"), ["--optional_tests", "--preset"]),
    ("misspelled test set", lambda w, o: base(w, o)[:6] + ["demo-nosie"] + base(w, o)[7:], ["demo-nosie", "demo-noise"]),
    ("slurm without --time", lambda w, o: base(w, o)[:-1] + ["slurm"], ["--executor slurm needs --time"]),
    ("bad --time", lambda w, o: base(w, o, "--time", "3h"), ["--time '3h'"]),
    ("bad --mem", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--mem", "lots"], ["--mem 'lots'"]),
    ("--mem without slurm", lambda w, o: base(w, o, "--mem", "16G"), ["--mem", "--executor slurm"]),
    ("--partition without slurm", lambda w, o: base(w, o, "--partition", "gpu"), ["--partition", "--executor slurm"]),
    ("--slurm_opt without =", lambda w, o: base(w, o, "--slurm_opt", "qos"), ["--slurm_opt 'qos'", "KEY=VALUE"]),
    ("--slurm_opt of a flag", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--slurm_opt", "time=90"],
     ["--slurm_opt time=", "use --time"]),
    ("misspelt --slurm_opt key", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--slurm_opt", "qoss=high"],
     ["--slurm_opt qoss=...: neither sbatch nor submitit has an option 'qoss'; did you mean 'qos'?"]),
    ("--slurm_opt cpus-per-tsk", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--slurm_opt",
                                                                  "cpus-per-tsk=4"], ["did you mean 'cpus_per_task'?"]),
    ("--slurm_opt output", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--slurm_opt", "output=x.log"],
     ["--slurm_opt output=...: the jobs' logs are OUT/jobs/submitit/<job>/"]),
    ("--mem inf", lambda w, o: base(w, o)[:-1] + ["slurm", "--time", "60", "--mem", "inf"], ["--mem 'inf'"]),
    ("--max_parallel 0", lambda w, o: base(w, o, "--max_parallel", "0"), ["--max_parallel 0"]),
    ("status of no protocol", lambda w, o: ["protocol", "--status", o], ["proto", "protocol.json"]),
    ("report-only of no protocol", lambda w, o: base(w, o, "--report_only"), ["proto", "no protocol"]),
]


@pytest.mark.parametrize("what,argv,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, capsys, fake_train, what, argv, words):
    out = tmp_path / "proto"
    code, _, err = run_cli(argv(world, out), capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert not out.exists() and fake_train.calls == []


def test_unknown_preset_is_refused_by_the_parser_and_the_plan(tmp_path, capsys):
    from declip_plugin.protocol.plan import make_plan
    from declip_plugin.errors import ConfigError

    with pytest.raises(SystemExit) as exc:  # the command line: argparse's choices, exit status 2
        cli_main(["protocol", "--preset", "dolso", "--out", str(tmp_path / "proto")])
    assert exc.value.code == 2 and "invalid choice: 'dolso'" in capsys.readouterr().err
    assert not (tmp_path / "proto").exists()
    with pytest.raises(ConfigError, match=r"'dolso'.*did you mean 'dolos'"):  # the Python API
        make_plan("dolso")


def test_slurm_without_slurm_on_path_names_the_missing_commands(world, tmp_path, capsys, fake_train, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "proto"
    code, _, err = run_cli(base(world, out)[:-1] + ["slurm", "--time", "60"], capsys)
    assert code == 2
    assert_one_line(err, "sbatch", "not found on PATH")
    assert not out.exists()


def test_corrected_sweep_runs_on_the_same_out(world, tmp_path, capsys, fake_train):
    out = tmp_path / "proto"
    code, _, err = run_cli(base(world, out, "--sweep", "feature_layr=layer0,layer1"), capsys)
    assert code == 2 and not out.exists()
    code, stdout, err = run_cli(base(world, out, "--sweep", "feature_layer=layer0,layer1"), capsys)
    assert code == 0, err
    assert "0 kept, 2 trained now, 0 failed" in stdout
    assert sorted(p.name for p in (out / "cells").iterdir()) == [
        "tiny-feature_layer-layer0__demo-telea.json", "tiny-feature_layer-layer1__demo-telea.json"]


def test_corrupt_image_in_one_test_set_is_named_before_any_training(world, tmp_path, capsys, fake_train):
    data = tmp_path / "data"
    shutil.copytree(world / "data", data)
    bad = data / "demo" / "celebahq" / "fake" / "noise" / "images" / "test" / "0001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 8)
    out = tmp_path / "proto"
    argv = base(world, out)
    argv[argv.index("--data_root") + 1] = data
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert_one_line(err, str(bad), "demo-noise/test", "skip_bad_files")
    assert not out.exists() and fake_train.calls == []
    code, stdout, err = run_cli(argv + ["--opt", "skip_bad_files=true"], capsys)  # the way the message names
    assert code == 0, err


def test_killed_mid_cell_report_only_shows_complete_cells_and_the_rerun_finishes(world, tmp_path, capsys,
                                                                                  fake_train):
    out = tmp_path / "proto"
    argv = base(world, out)
    argv[argv.index("--train") + 1:argv.index("--test")] = ["demo-telea", "demo-noise"]
    fake_train.fail_after = ("tiny__demo-noise", "demo-telea")  # the second cell dies mid-test
    assert cli_main([str(a) for a in argv]) == 130  # interrupted
    partial = sorted((out / "runs").glob("tiny__demo-noise_*"))
    assert len(partial) == 1 and (partial[0] / "test" / "demo-telea" / "metrics.json").is_file()

    code, stdout, err = run_cli(argv + ["--report_only"], capsys)
    assert code == 0, err
    assert "2 cell(s): 1 done" in stdout and "kept" not in stdout
    assert "not finished (not in the grids or the leaderboard): tiny__demo-noise" in stdout
    board = (out / "leaderboard.md").read_text()
    assert "| tiny__demo-telea |" in board and "| tiny__demo-noise |" not in board
    assert "20.0" not in board  # the killed cell's one test number (iou 10 x its call) is nowhere
    grid = json.loads((out / "grid.json").read_text())
    assert grid["missing"] == ["tiny__demo-noise"] and [r["train"] for r in grid["metrics"]["iou"]] == ["demo-telea"]
    assert not (out / "report.html").exists()

    fake_train.fail_after = None
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert "1 kept, 1 trained now, 0 failed" in stdout
    assert fake_train.calls == ["tiny__demo-telea", "tiny__demo-noise", "tiny__demo-noise"]
    assert not partial[0].exists()  # the dead run folder (no finished epoch) is gone
    grid = json.loads((out / "grid.json").read_text())
    assert grid["missing"] == [] and len(grid["metrics"]["iou"]) == 2


# --- the protocol's methods and presets, like the other commands' --------------------------------------------
def test_protocol_with_an_unknown_method(world, tmp_path, capsys):
    code, _, err = run_cli(["protocol", "--method", "declip_dmeo", "--train", "demo-telea", "--test", "demo-ns",
                            "--out", tmp_path / "proto", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "declip_dmeo", "did you mean 'declip_demo'")


def test_protocol_with_a_misspelled_test_set(world, tmp_path, capsys):
    code, _, err = run_cli(["protocol", "--method", world / "tiny.yaml", "--train", "demo-telea", "--test", "demo-nss",
                            "--out", tmp_path / "proto", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "demo-nss")
    assert not list((tmp_path / "proto").rglob("ckpt_*.pth"))  # nothing trained


def test_protocol_with_an_unknown_preset(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["protocol", "--preset", "dolo", "--out", str(tmp_path / "proto")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'dolo'" in err and "dolos" in err and "Traceback" not in err
    assert not (tmp_path / "proto").exists()


# --- --executor slurm (a fake SLURM on PATH): a damaged job record, a submission sbatch refuses -------------
def test_a_damaged_job_record_is_named_in_one_line_by_status_and_by_a_rerun(world, slurm_bin, tmp_path, monkeypatch,
                                                                             capsys):
    """OUT/jobs/<cell>.json cut short (a full disk, a killed copy): --status and the rerun name the file and
    what to do, in one line, and change nothing (no job submitted, no file written)."""
    from declip_plugin.protocol.cells import Protocol
    from declip_plugin.protocol.plan import make_plan

    out, state = tmp_path / "proto", tmp_path / "state"
    fake_slurm_env(monkeypatch, slurm_bin, state)
    p = Protocol(out, make_plan(methods=[str(world / "tiny.yaml")], train=["demo-telea"],
                                            test=["demo-telea"], overrides={"device": "cpu",
                                                                            "data_root": str(world / "data")}))
    cid = p.plan["cells"][0]["id"]
    record = out / "jobs" / f"{cid}.json"
    os.makedirs(record.parent)
    record.write_text('{"cell": "%s", "executor": "slurm", "job_id": "7' % cid)  # truncated mid-write
    before = files_under(out)
    argv = ["protocol", "--method", str(world / "tiny.yaml"), "--train", "demo-telea", "--test", "demo-telea", "--out",
            str(out), "--data_root", str(world / "data"), "--device", "cpu", "--executor", "slurm", "--time", "60"]
    for args in (["protocol", "--status", str(out)], argv):
        capsys.readouterr()
        assert cli_main(args) == 2
        err = capsys.readouterr().err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"error: job record {record} is damaged (Unterminated string"), line
        assert line.endswith("delete it once the cell's job no longer runs (squeue, sacct) and rerun the command: the "
                             "cell is submitted again")
    assert files_under(out) == before and not list(state.glob("*.sbatch"))


def test_a_submission_sbatch_refuses_is_one_line_and_leaves_no_protocol_folder(world, slurm_bin, tmp_path,
                                                                              monkeypatch, capsys):
    """sbatch --test-only passed, the submission itself failed (a QOS limit reached meanwhile): one line with
    sbatch's own error (not submitit's traceback and sbatch's lines), and the folder the command had just
    created is gone, so the same command can simply be run again."""
    out, state = tmp_path / "proto", tmp_path / "state"
    fake_slurm_env(monkeypatch, slurm_bin, state,
                   FAKE_SLURM_REFUSE="Job violates accounting/QOS policy (job submit limit)")
    capsys.readouterr()
    code = cli_main(["protocol", "--method", str(world / "tiny.yaml"), "--train", "demo-telea", "--test", "demo-telea",
                     "--out", str(out), "--data_root", str(world / "data"), "--device", "cpu", "--executor", "slurm",
                     "--time", "60", "--partition", "gpu"])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line == ("error: sbatch refused the jobs of cell(s) tiny__demo-telea: sbatch: error: Batch job submission "
                    "failed: Job violates accounting/QOS policy (job submit limit)")
    assert not out.exists() and not list(state.glob("*.sbatch"))
