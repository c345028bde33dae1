"""`declip train` and `declip test` (declip_plugin/commands/runs.py) on bad input: every case ends with exit
status 2, one `error:` line naming the file, key or value, no traceback, and nothing created (validation
before any work); the command line's values (--opt, --device) and --resume's refusals. The `world` (demo
data, a tiny detector and its checkpoints) is tests/conftest.py's."""
import pytest
import yaml

from tests.conftest import assert_one_line, data_args, files_under, run_cli


# --- validate before doing work: nothing is created -----------------------------------------------------
def _yaml(world, tmp_path, **change):
    cfg = yaml.safe_load((world / "tiny.yaml").read_text())
    cfg.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


BEFORE_WORK = [
    ("unknown key", lambda w, t: ["train", "--detector_path", _yaml(w, t, decoder_tpye="linear")],
     ["unknown key 'decoder_tpye'", "did you mean 'decoder_type'"]),
    ("misspelled test set", lambda w, t: ["train", "--detector_path", w / "tiny.yaml", "--test_dataset", "demo-tela"],
     ["demo-tela", "demo-telea"]),
    ("misspelled train set", lambda w, t: ["train", "--detector_path", w / "tiny.yaml", "--train_dataset", "demo-nss"],
     ["demo-nss"]),
    ("missing weights", lambda w, t: ["train", "--detector_path", w / "tiny.yaml", "--weights_path", t / "no.pth"],
     ["no.pth", "does not exist"]),
    ("unknown backbone", lambda w, t: ["train", "--detector_path", _yaml(w, t, backbone="ViT-Q/99")],
     ["ViT-Q/99"]),
    ("missing pretrained file", lambda w, t: ["train", "--detector_path", _yaml(w, t, pretrained=str(t / "clip.pt"))],
     ["clip.pt"]),
    ("unknown model_name", lambda w, t: ["train", "--detector_path", _yaml(w, t, model_name="declipp")],
     ["declipp", "did you mean 'declip'"]),
    ("test: misspelled set", lambda w, t: ["test", "--detector_path", w / "tiny.yaml", "--weights_path",
                                           w / "tiny.pth", "--test_dataset", "demo-blurr"], ["demo-blurr"]),
    ("test: missing weights", lambda w, t: ["test", "--detector_path", w / "tiny.yaml", "--weights_path",
                                            t / "gone.pth"], ["gone.pth"]),
    ("empty data root", lambda w, t: ["train", "--detector_path", w / "tiny.yaml", "--data_root", t / "empty"],
     ["demo"]),
    ("no train_dataset", lambda w, t: ["train", "--detector_path", _yaml(w, t, train_dataset=[])],
     ["no train_dataset"]),
]


@pytest.mark.parametrize("case,argv,words", BEFORE_WORK, ids=[c[0] for c in BEFORE_WORK])
def test_failures_before_any_work_create_nothing(world, tmp_path, capsys, case, argv, words):
    logs = tmp_path / "logs"
    (tmp_path / "empty").mkdir()
    args = argv(world, tmp_path)
    extra = [] if "--data_root" in [str(a) for a in args] else ["--data_root", world / "data"]
    code, _, err = run_cli([*args, *extra, "--device", "cpu", "--log_dir", logs], capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert not logs.exists(), files_under(logs)


def test_log_dir_that_is_a_file(world, tmp_path, capsys):
    (tmp_path / "logs").write_text("x")
    code, _, err = run_cli(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                            *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "log_dir", "is a file")
    assert (tmp_path / "logs").read_text() == "x"


# --- every command-line value is checked ---------------------------------------------------------------
OPTS = [
    ("opt YAML syntax", ["--opt", "nEpochs=[1"], ["nEpochs=[1", "not valid YAML"]),
    ("opt empty key", ["--opt", "=3"], ["empty key"]),
    ("opt without =", ["--opt", "nEpochs"], ["KEY=VALUE"]),
    ("device gpu", ["--device", "gpu"], ["'gpu'", "cpu, cuda or cuda:N"]),
    ("batch size 0", ["--opt", "train_batchSize=0"], ["train_batchSize", "at least 1", "command line"]),
    ("negative workers", ["--opt", "workers=-1"], ["workers", "at least 0"]),
    ("flip_prob above 1", ["--opt", "flip_prob=2"], ["flip_prob", "between 0 and 1"]),
    ("wrong type", ["--opt", "nEpochs=x"], ["the command line (--opt)", "nEpochs", "integer"]),
    ("unknown opt key", ["--opt", "nEpoch=3"], ["nEpoch", "did you mean 'nEpochs'"]),
    ("bad nested value", ["--opt", "optimizer.type=rmsprop"], ["optimizer: key 'type'", "rmsprop"]),
    ("zero epochs", ["--opt", "nEpochs=0"], ["nEpochs", "at least 1"]),
]


@pytest.mark.parametrize("case,extra,words", OPTS, ids=[c[0] for c in OPTS])
def test_command_line_values(world, tmp_path, capsys, case, extra, words):
    argv = ["train", "--detector_path", world / "tiny.yaml", "--data_root", world / "data",
            "--log_dir", tmp_path / "logs", *extra]
    if "--device" not in extra:
        argv += ["--device", "cpu"]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert not (tmp_path / "logs").exists()


# --- no silent no-ops: --resume takes no other detector -------------------------------------------------
def test_resume_refuses_detector_path_and_weights(world, tmp_path, capsys):
    for extra, word in ((["--detector_path", world / "tiny.yaml"], "--detector_path"),
                        (["--weights_path", world / "tiny.pth"], "--weights_path")):
        code, _, err = run_cli(["train", "--resume", tmp_path, *extra], capsys)
        assert code == 2
        assert_one_line(err, word)


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    code, _, err = run_cli(["train", "--resume", tmp_path], capsys)
    assert code == 2
    assert_one_line(err, "ckpt_last.pth")
