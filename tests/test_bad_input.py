"""Bad input, tried as a careless or hostile user would: every case ends with exit status 2 (1 for
predict's per-image errors), one line on stderr naming the file, key or value, no traceback, and no
stale, partial or destroyed output. Commands run in-process through the CLI's own error handling."""
import json
import os
import pickle
import shutil

import pytest
import torch
import yaml

from declip_plugin import build_detector
from declip_plugin.checkpoints import save_detector_checkpoint
from declip_plugin.cli import main as cli_main
from declip_plugin.data.demo import make_demo_data
from tests.conftest import TINY_VIT


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo data, a tiny detector YAML, a checkpoint of it, and a finished run to resume."""
    root = tmp_path_factory.mktemp("bad")
    make_demo_data(root / "data" / "demo", seed=2, size=64, n_train=4, n_val=2, n_test=2)
    cfg = {"model_name": "declip", "backbone": TINY_VIT, "pretrained": "none", "feature_layer": "layer0",
           "decoder_type": "linear", "fully_supervised": True, "fix_backbone": False, "train_batchSize": 4,
           "test_batchSize": 4, "workers": 0, "nEpochs": 1, "train_dataset": ["demo-telea"],
           "test_dataset": ["demo-telea"], "tensorboard_masks": 0, "early_stopping": {"enabled": False}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    det = build_detector(cfg)
    save_detector_checkpoint(root / "tiny.pth", det)
    # a checkpoint without the (trained, random-init) backbone: it cannot rebuild this config
    state = {k: v for k, v in det.state_dict().items() if k.startswith("decoder.")}
    torch.save(state, root / "decoder_only.pth")
    return root


def run(argv, capsys):
    capsys.readouterr()
    code = cli_main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, err


def assert_one_line(err, *words):
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def data_args(world):
    return ["--data_root", world / "data", "--device", "cpu"]


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def copy_data(world, tmp_path):
    shutil.copytree(world / "data", tmp_path / "data")
    return tmp_path / "data"


# --- 1. validate before doing work: nothing is created ---------------------------------------------------
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
    code, err = run([*args, *extra, "--device", "cpu", "--log_dir", logs], capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert not logs.exists(), files_under(logs)


def test_log_dir_that_is_a_file(world, tmp_path, capsys):
    (tmp_path / "logs").write_text("x")
    code, err = run(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                     *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "log_dir", "is a file")
    assert (tmp_path / "logs").read_text() == "x"


# --- 2. errors inside DataLoader workers ---------------------------------------------------------------------
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
    code, err = run(argv, capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    assert "DataLoader worker" not in err
    assert files_under(logs) == []  # the failed run left no folder behind


# --- 3. every command-line input is checked --------------------------------------------------------------
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
    code, err = run(argv, capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert not (tmp_path / "logs").exists()


def test_predict_out_that_is_a_file(world, tmp_path, capsys):
    (tmp_path / "out").write_text("keep")
    image = next((world / "data").rglob("*.png"))
    code, err = run(["predict", image, "--weights_path", world / "tiny.pth", "--out", tmp_path / "out",
                     "--device", "cpu"], capsys)
    assert code == 2
    assert_one_line(err, "--out", "is a file")
    assert (tmp_path / "out").read_text() == "keep"


def test_predict_missing_checkpoint(world, tmp_path, capsys):
    image = next((world / "data").rglob("*.png"))
    code, err = run(["predict", image, "--weights_path", tmp_path / "none.pth", "--out", tmp_path / "p"], capsys)
    assert code == 2
    assert_one_line(err, "none.pth", "does not exist")


def test_export_into_a_file(world, tmp_path, capsys):
    (tmp_path / "exp").write_text("keep")
    code, err = run(["export-dfb", "demo-telea", tmp_path / "exp", "--data_root", world / "data"], capsys)
    assert code == 2
    assert_one_line(err, "is a file")
    assert (tmp_path / "exp").read_text() == "keep"


def test_make_demo_data_into_a_file(tmp_path, capsys):
    (tmp_path / "demo").write_text("keep")
    code, err = run(["make-demo-data", tmp_path / "demo"], capsys)
    assert code == 2
    assert_one_line(err, "make-demo-data OUT", "is a file")


def test_leaderboard_out_that_is_a_folder(world, tmp_path, capsys):
    (tmp_path / "board").mkdir()
    code, err = run(["leaderboard", tmp_path / "runs", "--out", tmp_path / "board"], capsys)
    assert code == 2
    assert_one_line(err, "--out", "is a folder")


def test_bench_json_that_is_a_folder(tmp_path, capsys):
    code, err = run(["bench", "--quick", "--device", "cpu", "--json", tmp_path], capsys)
    assert code == 2
    assert_one_line(err, "--json", "is a folder")


def _dfb_result(tmp_path, payload):
    folder = tmp_path / "runs" / "xception_2025-01-01-00-00-00" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metric_dict_best.pickle").write_bytes(payload)
    return tmp_path / "runs"


PICKLES = [
    ("unknown protocol", b"\x80\x09garbage", "metric_dict_best.pickle"),
    ("truncated", pickle.dumps({"auc": 0.9})[:-5], "metric_dict_best.pickle"),
    ("code", pickle.dumps(os.system), "not allowed"),
    ("huge length", b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f", "metric_dict_best.pickle"),
    ("bad unicode", b"\x80\x04X\x02\x00\x00\x00\xff\xfe.", "metric_dict_best.pickle"),
]


@pytest.mark.parametrize("case,payload,word", PICKLES, ids=[c[0] for c in PICKLES])
def test_malformed_deepfakebench_pickles(tmp_path, capsys, case, payload, word):
    code, err = run(["leaderboard", _dfb_result(tmp_path, payload)], capsys)
    assert code == 2
    assert_one_line(err, word)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"metrics": 3}'])
def test_malformed_metrics_json(tmp_path, capsys, text):
    folder = tmp_path / "runs" / "r" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(text)
    code, err = run(["leaderboard", tmp_path / "runs"], capsys)
    assert code == 2
    assert_one_line(err, "metrics.json")


def test_leaderboard_of_nothing(tmp_path, capsys):
    code, err = run(["leaderboard", tmp_path / "nowhere"], capsys)
    assert code == 2
    assert_one_line(err, "nowhere", "does not exist")


# --- 4. no silent no-ops or substitutions ----------------------------------------------------------------
def test_resume_refuses_detector_path_and_weights(world, tmp_path, capsys):
    for extra, word in ((["--detector_path", world / "tiny.yaml"], "--detector_path"),
                        (["--weights_path", world / "tiny.pth"], "--weights_path")):
        code, err = run(["train", "--resume", tmp_path, *extra], capsys)
        assert code == 2
        assert_one_line(err, word)


def test_resume_of_a_folder_that_is_no_run(tmp_path, capsys):
    code, err = run(["train", "--resume", tmp_path], capsys)
    assert code == 2
    assert_one_line(err, "ckpt_last.pth")


def test_checkpoint_without_the_backbone_it_needs(world, tmp_path, capsys):
    code, err = run(["test", "--detector_path", world / "tiny.yaml", "--weights_path", world / "decoder_only.pth",
                     "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "decoder_only.pth", "holds no backbone weights")
    assert not (tmp_path / "logs").exists()


def test_corrupt_checkpoint_is_called_corrupt(world, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes((world / "tiny.pth").read_bytes()[:1000])
    code, err = run(["test", "--detector_path", world / "tiny.yaml", "--weights_path", bad,
                     "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "bad.pth", "is corrupt")


def test_checkpoint_that_runs_code_is_refused(world, tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "hook": shutil.rmtree}, evil)
    code, err = run(["predict", next((world / "data").rglob("*.png")), "--weights_path", evil,
                     "--out", tmp_path / "p"], capsys)
    assert code == 2
    assert_one_line(err, "evil.pth", "arbitrary pickled objects")


def test_predict_reports_a_bad_image_once_and_keeps_the_good(world, tmp_path, capsys):
    good = next((world / "data").rglob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nxx")
    code, err = run(["predict", good, bad, "--weights_path", world / "tiny.pth", "--out", tmp_path / "p",
                     "--device", "cpu"], capsys)
    assert code == 1
    assert_one_line(err, "bad.png")
    summary = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert [p["image"] for p in summary["predictions"]] == [str(good)]


# --- 5. outputs are transactional -----------------------------------------------------------------------
def test_failed_overwrite_keeps_the_previous_export(world, tmp_path, capsys):
    data = copy_data(world, tmp_path)
    out = tmp_path / "exp"
    assert cli_main(["export-dfb", "demo-telea", str(out), "--data_root", str(data), "--no-lmdb"]) == 0
    before = {p: (out / p).read_bytes() for p in files_under(out) if (out / p).is_file()}
    bad = sorted((data / "demo" / "celebahq" / "fake" / "telea" / "images" / "test").iterdir())[0]
    truncated = bad.read_bytes()[:40]
    bad.unlink()  # a new file: the export hard-linked the old one
    bad.write_bytes(truncated)
    code, err = run(["export-dfb", "demo-telea", out, "--data_root", data, "--no-lmdb", "--overwrite"], capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    after = {p: (out / p).read_bytes() for p in files_under(out) if (out / p).is_file()}
    assert after == before  # every frame the old JSON lists is still there, and nothing new


def test_failed_first_export_leaves_nothing(world, tmp_path, capsys):
    data = copy_data(world, tmp_path)
    bad = sorted((data / "demo" / "celebahq" / "fake" / "telea" / "masks" / "valid").iterdir())[0]
    bad.write_bytes(b"not a png")
    out = tmp_path / "exp"
    code, err = run(["export-dfb", "demo-telea", out, "--data_root", data, "--no-lmdb"], capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    assert files_under(out) == []


def test_existing_export_is_not_replaced_without_overwrite(world, tmp_path, capsys):
    out = tmp_path / "exp"
    assert cli_main(["export-dfb", "demo-telea", str(out), "--data_root", str(world / "data"), "--no-lmdb"]) == 0
    code, err = run(["export-dfb", "demo-telea", out, "--data_root", world / "data", "--no-lmdb"], capsys)
    assert code == 2
    assert_one_line(err, "--overwrite")


# --- 7. --debug shows the traceback -------------------------------------------------------------------
def test_debug_raises_instead_of_one_line(world, tmp_path):
    from declip_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="train_batchSize"):
        cli_main(["--debug", "train", "--detector_path", str(world / "tiny.yaml"), "--opt", "train_batchSize=0",
                  "--log_dir", str(tmp_path / "logs")])


# --- 6. hosts and ranks -------------------------------------------------------------------------------
def test_an_error_on_one_ddp_rank_ends_every_rank(world, tmp_path):
    """Rank 1's validation shard holds a corrupt image; rank 0 would wait for it in the gather forever
    if rank 1 waited at a barrier before exiting. torchrun must end both, with the file named."""
    import subprocess
    import sys

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


def test_deepfakebench_train_without_cuda_is_refused_before_the_child(tmp_path_factory, capsys, monkeypatch):
    """On a machine without CUDA, `declip dfb train` stops before DeepfakeBench's train.py starts."""
    import sys

    from declip_plugin.integrations.deepfakebench import launcher
    from tests.dfb_support import checkout_root

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root = checkout_root(tmp_path_factory)
    started = []
    monkeypatch.setattr(launcher, "_run_child", lambda *a, **k: started.append(a) or 0)
    code, err = run(["dfb", "train", "--bench-root", root, "--python", sys.executable, "--",
                     "--detector_path", "training/config/detector/meso4.yaml"], capsys)
    assert code == 2 and not started
    assert_one_line(err, "needs CUDA", sys.executable)


# --- the commands of the protocol and the report go through the same handling ------------------------
def test_protocol_with_an_unknown_method(world, tmp_path, capsys):
    code, err = run(["protocol", "--method", "declip_dmeo", "--train", "demo-telea", "--test", "demo-ns",
                     "--out", tmp_path / "proto", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "declip_dmeo", "did you mean 'declip_demo'")


def test_protocol_with_a_misspelled_test_set(world, tmp_path, capsys):
    code, err = run(["protocol", "--method", world / "tiny.yaml", "--train", "demo-telea", "--test", "demo-nss",
                     "--out", tmp_path / "proto", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "demo-nss")
    assert not list((tmp_path / "proto").rglob("ckpt_*.pth"))  # nothing trained


def test_report_of_a_missing_folder(tmp_path, capsys):
    code, err = run(["report", tmp_path / "nothing"], capsys)
    assert code == 2
    assert_one_line(err, "nothing")


def test_unknown_official_weights_name(capsys):
    code, err = run(["weights", "fetch", "declip:vit-l14_layer20_conv-20_lamma"], capsys)
    assert code == 2
    assert_one_line(err, "lamma")


def test_leaderboard_unknown_metric_is_refused(world, tmp_path, capsys):
    folder = tmp_path / "runs" / "r" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"method": "m", "metrics": {"iou": 50.0, "auc": 0.9}}))
    code, err = run(["leaderboard", tmp_path / "runs", "--metrics", "iuo"], capsys)
    assert code == 2
    assert_one_line(err, "iuo", "iou")


def test_robustness_with_a_bad_level(world, tmp_path, capsys):
    code, err = run(["robustness", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                     "--kind", "jpeg", "--levels", "90,abc", "--out", tmp_path / "rob", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "abc")
    assert not (tmp_path / "rob").exists()
