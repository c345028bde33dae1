"""End to end: the embedded engine on generated demo data with a tiny model."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from declip_plugin.cli import main as cli_main
from declip_plugin.data.demo import make_demo_data
from tests.conftest import tiny_config

DETECTION = ["acc", "auc", "eer", "ap", "acc_best"]
LOCALIZATION = ["iou", "f1", "f1_best", "pixel_ap", "pixel_auc", "empty_gt_fp_rate"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_demo_data(root / "demo", seed=1, size=96, n_train=12, n_val=4, n_test=4)
    return root


def tiny_yaml(tmp_path, **extra):
    cfg = tiny_config(feature_layer="layer0", decoder_type="linear", train_batchSize=4, test_batchSize=4, workers=0,
                      nEpochs=2, include_real=True, log_every=1, train_dataset=["demo-telea"],
                      test_dataset=["demo-telea", "demo-ns"], in_domain=["demo-telea"],
                      early_stopping={"enabled": False}, tensorboard_masks=2)
    cfg.update(extra)
    import yaml

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "declip_plugin", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


def only_run_dir(log_dir):
    runs = [d for d in log_dir.iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def test_train_kill_resume_test_writes_every_metric(tmp_path, data_root):
    yaml_path = tiny_yaml(tmp_path, nEpochs=200)
    log_dir = tmp_path / "logs"
    proc = subprocess.Popen([sys.executable, "-m", "declip_plugin", "train", "--detector_path", str(yaml_path),
                             "--data_root", str(data_root), "--log_dir", str(log_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        last = None
        while time.time() < deadline:
            runs = list(log_dir.glob("*/ckpt_last.pth")) if log_dir.exists() else []
            if runs:
                last = runs[0]
                break
            assert proc.poll() is None, "training ended before its first checkpoint"
            time.sleep(0.2)
        assert last is not None, "no checkpoint within 300 s"
        time.sleep(0.5)  # now somewhere inside a later epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = last.parent
    state = torch.load(last, weights_only=True)
    killed_at = state["epoch"]
    assert killed_at >= 1
    assert (run_dir / "ckpt_best.pth").exists() and (run_dir / "config.yaml").exists()

    res = run_cli(["train", "--resume", run_dir, "--opt", f"nEpochs={killed_at + 1}"])
    assert res.returncode == 0, res.stderr[-3000:]
    state = torch.load(run_dir / "ckpt_last.pth", weights_only=True)
    assert state["epoch"] == killed_at + 1 and [h["epoch"] for h in state["history"]] == list(range(1, killed_at + 2))
    assert "resumed from" in (run_dir / "training.log").read_text()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))

    for name in ("demo-telea", "demo-ns"):
        folder = run_dir / "test" / name
        data = json.loads((folder / "metrics.json").read_text())
        for key in DETECTION + LOCALIZATION:
            assert isinstance(data["metrics"][key], float), (name, key, data["metrics"].get(key))
        assert data["in_domain"] is (name == "demo-telea")
        header, *rows = (folder / "per_image.csv").read_text().strip().splitlines()
        assert header == "path,label,score,iou,f1,f1_best,pixel_ap,pixel_auc,fp_rate"
        assert len(rows) == 8  # 4 fake + 4 real test images
        with open(folder / "metric_dict_best.pickle", "rb") as f:
            dfb = pickle.load(f)
        assert {"acc", "auc", "eer", "ap", "pred", "label"} <= set(dfb) and len(dfb["pred"]) == 8


def test_test_command_reads_a_checkpoint_and_writes_results(tmp_path, data_root):
    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_detector_config

    yaml_path = tiny_yaml(tmp_path)
    det = build_detector(load_detector_config(yaml_path))
    ckpt = save_detector_checkpoint(tmp_path / "w.pth", det)
    assert cli_main(["test", "--detector_path", str(yaml_path), "--weights_path", str(ckpt), "--test_dataset",
                     "demo-blur", "--data_root", str(data_root), "--log_dir", str(tmp_path / "t"),
                     "--opt", "save_masks=true"]) == 0
    run_dir = only_run_dir(tmp_path / "t")
    folder = run_dir / "test" / "demo-blur"
    assert len(list((folder / "masks").glob("*.png"))) == 8
    assert json.loads((run_dir / "run.json").read_text())["test_dataset"] == ["demo-blur"]


@pytest.mark.parametrize("args,needle", [
    (["train", "--detector_path", "{bad_key}"], "unknown key 'nEpoch'; did you mean 'nEpochs'?"),
    (["test", "--detector_path", "{good}", "--weights_path", "{missing}"], "does not exist"),
    (["train", "--detector_path", "{good}", "--train_dataset", "demo-teela"], "did you mean 'demo-telea'"),
    (["train", "--detector_path", "{good}", "--opt", "nEpochs=two"], "'nEpochs' must be an integer"),
])
def test_user_errors_end_with_one_line_and_no_traceback(tmp_path, data_root, args, needle):
    good = tiny_yaml(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text() + "nEpoch: 3\n")
    subs = {"{bad_key}": bad, "{good}": good, "{missing}": tmp_path / "nope.pth"}
    argv = [str(subs.get(a, a)) for a in args] + ["--data_root", str(data_root), "--log_dir", str(tmp_path / "l")]
    res = run_cli(argv)
    assert res.returncode == 2, res.stderr[-2000:]
    err = [line for line in res.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and needle in err[0], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    debug = run_cli(["--debug", *argv])
    assert "Traceback" in debug.stderr


def test_predict_writes_mask_overlay_json_and_reports_corrupt_files(tmp_path, data_root):
    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_detector_config

    det = build_detector(load_detector_config(tiny_yaml(tmp_path)))
    ckpt = save_detector_checkpoint(tmp_path / "w.pth", det)
    good = sorted((data_root / "demo/celebahq/fake/telea/images/test").glob("*.png"))[0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:200])
    out = tmp_path / "pred"
    res = run_cli(["predict", good, corrupt, "--weights_path", ckpt, "--out", out])
    assert res.returncode == 1
    assert str(corrupt) in res.stderr
    summary = json.loads((out / "predictions.json").read_text())
    assert [p["image"] for p in summary["predictions"]] == [str(good)]
    assert [e["image"] for e in summary["errors"]] == [str(corrupt)]
    import cv2

    mask = cv2.imread(summary["predictions"][0]["mask"], cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(summary["predictions"][0]["overlay"])
    assert mask.shape == (96, 96) and overlay.shape == (96, 96, 3)  # at the image's own size
    assert 0.0 <= summary["predictions"][0]["prob_fake"] <= 1.0


def test_leaderboard_over_two_runs_and_a_deepfakebench_pickle(tmp_path):
    from declip_plugin.engine.evaluator import EvalResult, write_results
    from declip_plugin.leaderboard import collect, render

    def our_run(name, ious):
        run = tmp_path / "ours" / f"{name}_2026-01-01-00-00-00"
        for ds, iou in ious.items():
            write_results(run / "test" / ds, ds, EvalResult({"iou": iou, "auc": iou / 100, "f1_best": iou / 100}, []),
                          {"method": name, "in_domain": ds == "dolos-lama"})
        return run

    a = our_run("declip", {"dolos-lama": 80.0, "dolos-ldm": 30.0})
    b = our_run("clip_linear", {"dolos-lama": 40.0, "dolos-ldm": 20.0})
    dfb = tmp_path / "dfb_logs" / "xception_2026-02-03-04-05-06" / "test" / "dolos-ldm"
    dfb.mkdir(parents=True)
    with open(dfb / "metric_dict_best.pickle", "wb") as f:  # DeepfakeBench's own format
        pickle.dump({"acc": 0.7, "auc": 0.91, "eer": 0.2, "ap": 0.88, "pred": np.random.rand(10),
                     "label": np.random.randint(0, 2, 10), "video_auc": 0.9}, f)
    (dfb / "localization_metrics.json").write_text(json.dumps({"metrics": {"iou": 55.5}}))  # from `declip dfb`
    entries = collect([a, b, tmp_path / "dfb_logs"])
    assert {e.method: e.metrics.get("iou") for e in entries if e.dataset == "dolos-ldm"}["xception"] == 55.5
    md = render(entries, metrics=["iou", "auc"])
    lines = md.splitlines()
    assert lines[0].startswith("| method | iou dolos-lama | iou dolos-ldm | iou ID mean | iou OOD mean |")
    row = {l.split("|")[1].strip(): l for l in lines[2:5]}
    assert set(row) == {"declip", "clip_linear", "xception"}
    assert "**80.0**" in row["declip"] and "**0.910**" in row["xception"]  # best marked per column
    csv_text = render(entries, fmt="csv", metrics=["auc"])
    assert "0.910*" in csv_text and csv_text.splitlines()[0].startswith("method,auc dolos-lama,auc dolos-ldm")
    assert cli_main(["leaderboard", str(a), str(b), str(tmp_path / "dfb_logs"), "--out", str(tmp_path / "lb.md")]) == 0
    assert "xception" in (tmp_path / "lb.md").read_text()


def test_leaderboard_refuses_pickles_with_code(tmp_path):
    from declip_plugin.errors import DeclipError
    from declip_plugin.leaderboard import collect

    folder = tmp_path / "x_2026-01-01-00-00-00" / "test" / "d"
    folder.mkdir(parents=True)
    with open(folder / "metric_dict_best.pickle", "wb") as f:
        pickle.dump({"auc": 0.5, "evil": os.system}, f)
    with pytest.raises(DeclipError, match="not allowed"):
        collect([tmp_path])


def test_two_gloo_processes_give_the_same_metrics_as_one(tmp_path, data_root):
    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_detector_config

    yaml_path = tiny_yaml(tmp_path, test_batchSize=3)  # 8 images over 2 ranks: uneven last batches
    det = build_detector(load_detector_config(yaml_path))
    ckpt = save_detector_checkpoint(tmp_path / "w.pth", det)
    common = ["test", "--detector_path", yaml_path, "--weights_path", ckpt, "--test_dataset", "demo-ns",
              "--data_root", data_root, "--device", "cpu"]
    one = run_cli([*common, "--log_dir", tmp_path / "one"])
    assert one.returncode == 0, one.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "declip_plugin", *map(str, common), "--log_dir", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((only_run_dir(tmp_path / "one") / "test/demo-ns/metrics.json").read_text())["metrics"]
    m2 = json.loads((only_run_dir(tmp_path / "two") / "test/demo-ns/metrics.json").read_text())["metrics"]
    assert m1["n_images"] == m2["n_images"] == 8
    for k in DETECTION + LOCALIZATION:
        assert m2[k] == pytest.approx(m1[k], abs=1e-6), k


def test_resumed_run_ends_bitwise_equal_to_an_uninterrupted_one(tmp_path, data_root, monkeypatch):
    """Killed after epoch 1 (in-process: the second epoch raises), then resumed: the final weights
    equal those of an uninterrupted run with the same seed, bit for bit (CPU). Random flips make the
    per-epoch streams matter."""
    from declip_plugin.engine import trainer as trainer_mod

    yaml_path = tiny_yaml(tmp_path, nEpochs=3, fix_backbone=False, flip_prob=0.5, tensorboard_masks=0)
    args = ["train", "--detector_path", str(yaml_path), "--data_root", str(data_root), "--device", "cpu"]
    assert cli_main([*args, "--log_dir", str(tmp_path / "whole")]) == 0

    real_epoch = trainer_mod.Trainer.train_epoch

    def killed_in_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", killed_in_epoch_2)
    assert cli_main([*args, "--log_dir", str(tmp_path / "cut")]) == 130
    run = only_run_dir(tmp_path / "cut")
    assert torch.load(run / "ckpt_last.pth", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(trainer_mod.Trainer, "train_epoch", real_epoch)
    (run / ".tmp-killed.pth").write_bytes(b"half a checkpoint")  # what a write killed mid-way leaves
    assert cli_main(["train", "--resume", str(run), "--device", "cpu", "--data_root", str(data_root)]) == 0
    assert not list(run.rglob(".tmp-*"))

    whole = torch.load(only_run_dir(tmp_path / "whole") / "ckpt_last.pth", weights_only=True)
    resumed = torch.load(run / "ckpt_last.pth", weights_only=True)
    assert whole["epoch"] == resumed["epoch"] == 3
    assert whole["model"].keys() == resumed["model"].keys() and any(k.startswith("backbone.") for k in whole["model"])
    for k, v in whole["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
