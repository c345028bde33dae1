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
from declip_plugin.detectors.base import save_detector_checkpoint
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


# --- round 3: the surfaces added in round 2 ------------------------------------------------------------
def assert_nothing_under(path):
    assert files_under(path) == [], files_under(path)


PERTURB_CASES = [("inf", "blur=inf", "inf"), ("nan", "noise=nan", "nan"), ("not a number", "jpeg=high", "'high'"),
                 ("negative", "blur=-1", "-1"), ("above the range", "downscale=1e9", "1e9"), ("jpeg 0", "jpeg=0", "0"),
                 ("unknown kind", "fog=3", "'fog=3'")]


@pytest.mark.parametrize("case,spec,word", PERTURB_CASES, ids=[c[0] for c in PERTURB_CASES])
def test_perturbation_values_are_refused_before_any_work(world, tmp_path, capsys, case, spec, word):
    code, err = run(["test", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                     "--perturb", spec, "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "perturb", word)
    assert_nothing_under(tmp_path / "logs")


@pytest.mark.parametrize("levels", ["1,inf", "nan", "2,1e9"])
def test_robustness_levels_out_of_range_are_refused(world, tmp_path, capsys, levels):
    code, err = run(["robustness", "--detector_path", world / "tiny.yaml", "--weights_path", world / "tiny.pth",
                     "--kind", "blur", "--levels", levels, "--out", tmp_path / "rob", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "blur=", "out of range")
    assert not (tmp_path / "rob").exists()


# report: an error exits non-zero, names what the user gave, and writes no report
def _finished_run(tmp_path):
    folder = tmp_path / "runs" / "r_2026" / "test" / "demo"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"method": "m", "metrics": {"iou": 50.0, "auc": 0.9}}))
    (tmp_path / "runs" / "r_2026" / "run.json").write_text(json.dumps({"name": "m"}))
    return tmp_path / "runs"


def test_report_of_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "a.txt").write_text("hello")
    code, err = run(["report", tmp_path / "empty"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "empty"), "nothing to report")
    assert not (tmp_path / "empty" / "report.html").exists()


def test_report_of_a_truncated_metrics_json(tmp_path, capsys):
    runs = _finished_run(tmp_path)
    metrics = runs / "r_2026" / "test" / "demo" / "metrics.json"
    metrics.write_text(metrics.read_text()[:20])
    code, err = run(["report", runs], capsys)
    assert code == 2
    assert_one_line(err, str(metrics))
    assert not (runs / "report.html").exists()


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_report_out_that_cannot_be_written(tmp_path, capsys, where):
    runs = _finished_run(tmp_path)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "outdir" if where == "a folder" else tmp_path / "afile" / "report.html"
    if where == "a folder":
        out.mkdir()
    code, err = run(["report", runs, "--out", out], capsys)
    assert code == 2
    assert_one_line(err, "--out", str(out))
    assert ".tmp-" not in err
    assert files_under(tmp_path / "outdir") == [] and (tmp_path / "afile").read_text() == "x"


# the official-weights cache: a damaged file is refused and never remembered
WEIGHTS = "declip:vit-l14_layer20_conv-20_lama"


def _weights_bytes():
    import io

    buf = io.BytesIO()
    torch.save({"model": {"fc.weight": torch.arange(4000, dtype=torch.float32)}}, buf)
    return buf.getvalue()


@pytest.fixture
def weights_cache(tmp_path, monkeypatch):
    from declip_plugin.detectors.declip import official_weights as ow

    monkeypatch.setenv("DECLIP_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DECLIP_WEIGHTS_URL", "http://127.0.0.1:9/declip")  # nothing listens: no download
    path = ow.path_of(WEIGHTS)
    os.makedirs(os.path.dirname(path))
    return path


@pytest.mark.parametrize("damage", ["bit flip", "truncation"])
def test_damaged_official_weights_are_refused(weights_cache, capsys, damage):
    good = _weights_bytes()
    bad = bytearray(good)
    if damage == "bit flip":
        bad[len(good) // 2] ^= 0x01
    else:
        del bad[len(good) - 300:]
    with open(weights_cache, "wb") as f:
        f.write(bad)
    code, err = run(["weights", "fetch", WEIGHTS], capsys)
    assert code == 2
    assert_one_line(err, weights_cache, "corrupt")
    assert not os.path.exists(weights_cache + ".json")


def test_a_corrupt_cached_file_replaced_by_a_good_one_is_accepted(weights_cache, capsys):
    good = _weights_bytes()
    with open(weights_cache, "wb") as f:
        f.write(good[:-10])
    assert run(["weights", "fetch", WEIGHTS], capsys)[0] == 2
    with open(weights_cache, "wb") as f:
        f.write(good)
    code, err = run(["weights", "fetch", WEIGHTS], capsys)
    assert code == 0, err
    assert json.loads(open(weights_cache + ".json").read())["size"] == len(good)


# video data: every case names the value or file at fault before (or instead of) any run folder
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from declip_plugin.data.demo_video import make_demo_videos

    root = tmp_path_factory.mktemp("videos")
    make_demo_videos(root / "demo_video", seed=1, size=32, n_frames=16, n_train=1, n_val=1, n_test=1)
    return root


def _video_json(root):
    return root / "demo_video" / "dataset_json" / "DemoVideo.json"


def _edit_videos(videos, tmp_path, edit, split="train"):
    """A copy of the demo videos with ``edit(root, the first fake video's entry of split)`` applied."""
    root = tmp_path / "vdata"
    shutil.copytree(videos, root)
    info = json.loads(_video_json(root).read_text())
    by_video = info["DemoVideo"]["DemoVideo_flicker"][split]
    edit(root, by_video[sorted(by_video)[0]])
    _video_json(root).write_text(json.dumps(info))
    return root


def _missing_frame(root, entry):
    os.remove(root / "demo_video" / entry["frames"][3])


def _other_size(root, entry):
    import cv2
    import numpy as np

    cv2.imwrite(str(root / "demo_video" / entry["frames"][3]), np.zeros((48, 40, 3), np.uint8))


VIDEO_CASES = [
    ("a frame missing", _missing_frame, [], ["003.png", "does not exist"]),
    ("a frame of another size than its mask", _other_size, [], ["003.png", "does not match"]),
    ("an entry without frames", lambda r, e: e.pop("frames"), [], ["has no 'frames' list", "DemoVideo.json"]),
    ("an entry with an empty frame list", lambda r, e: e.update(frames=[]), [], ["empty 'frames' list"]),
    ("every video shorter than the clip", None, ["--opt", "clip_size=20", "--opt", "frame_num=32"],
     ["clip_size=20", "has 16"]),
    ("frame_num below clip_size", None, ["--opt", "frame_num={train: 16, test: 4}"],
     ["frame_num.test is 4", "clip_size=8"]),
]


@pytest.mark.parametrize("case,edit,extra,words", VIDEO_CASES, ids=[c[0] for c in VIDEO_CASES])
def test_bad_video_data(videos, tmp_path, capsys, case, edit, extra, words):
    root = _edit_videos(videos, tmp_path, edit) if edit else videos
    code, err = run(["train", "--detector_path", "clip_stan_demo", "--data_root", root, "--device", "cpu",
                     "--log_dir", tmp_path / "logs", "--opt", "nEpochs=1", "--opt", "train_batchSize=2", *extra],
                    capsys)
    assert code == 2
    assert_one_line(err, *words)
    assert_nothing_under(tmp_path / "logs")


def test_a_clip_detector_on_image_data(world, tmp_path, capsys):
    code, err = run(["train", "--detector_path", "clip_stan_demo", "--train_dataset", "demo-telea", "--test_dataset",
                     "demo-telea", "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "demo-telea", "images, not frames of videos", "video_mode")
    assert_nothing_under(tmp_path / "logs")


def test_videos_shorter_than_the_clip_are_left_out_and_listed(videos, tmp_path, capsys):
    """As DeepfakeBench, a video shorter than clip_size gives no clip; the results say which were left out."""
    root = _edit_videos(videos, tmp_path, lambda r, e: e.update(frames=e["frames"][:4]), split="test")
    code, err = run(["train", "--detector_path", "clip_stan_demo", "--data_root", root, "--device", "cpu",
                     "--log_dir", tmp_path / "logs", "--opt", "nEpochs=1", "--opt", "train_batchSize=2",
                     "--test_dataset", "demo-video"], capsys)
    assert code == 0, err
    (metrics,) = (tmp_path / "logs").glob("*/test/demo-video/metrics.json")
    skipped = json.loads(metrics.read_text())["skipped"]
    assert [s["path"] for s in skipped] == ["DemoVideo/DemoVideo_flicker/fte000"]
    assert "4 frame(s), fewer than clip_size=8" in skipped[0]["reason"]


# dfb: a folder that is no checkout
def test_deepfakebench_root_that_is_no_checkout(tmp_path, capsys):
    (tmp_path / "notdfb").mkdir()
    code, err = run(["dfb", "test", "--bench-root", tmp_path / "notdfb", "--cpu", "--", "--detector_path", "x.yaml"],
                    capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "notdfb"))


# SIGTERM (kill, SLURM preemption) ends a run like Ctrl-C
def _sigterm_at_train_batch(monkeypatch, k):
    """SIGTERM to this process at the k-th training batch (one batch per epoch here: k = the epoch)."""
    import signal

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
    import signal

    _sigterm_at_train_batch(monkeypatch, 1)
    code, err = run(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                     "--opt", "nEpochs=2", *data_args(world)], capsys)
    assert code == 128 + signal.SIGTERM, err
    assert "SIGTERM" in err and "Traceback" not in err
    assert_nothing_under(tmp_path / "logs")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the run's only


def test_sigterm_in_the_second_epoch_keeps_a_resumable_checkpoint(world, tmp_path, capsys, monkeypatch):
    import signal

    _sigterm_at_train_batch(monkeypatch, 2)
    code, err = run(["train", "--detector_path", world / "tiny.yaml", "--log_dir", tmp_path / "logs",
                     "--opt", "nEpochs=2", *data_args(world)], capsys)
    assert code == 128 + signal.SIGTERM, err
    (run_dir,) = (tmp_path / "logs").iterdir()
    state = torch.load(run_dir / "ckpt_last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1
    assert not (run_dir / "test").exists() and not [p for p in files_under(run_dir) if ".tmp-" in p]
    monkeypatch.undo()
    code, err = run(["train", "--resume", run_dir, *data_args(world)], capsys)
    assert code == 0, err
    state = torch.load(run_dir / "ckpt_last.pth", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert (run_dir / "test" / "demo-telea" / "metrics.json").is_file()


def test_sigterm_from_outside_ends_cleanly(world, tmp_path):
    """SIGTERM to every process of a running `declip train` with DataLoader workers (what SLURM sends on
    preemption): exit 143 with one line, no traceback, no process left, and a run folder only with a
    resumable checkpoint."""
    import signal
    import subprocess
    import sys
    import time

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


def test_protocol_with_an_unknown_preset(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["protocol", "--preset", "dolo", "--out", str(tmp_path / "proto")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'dolo'" in err and "dolos" in err and "Traceback" not in err
    assert not (tmp_path / "proto").exists()
