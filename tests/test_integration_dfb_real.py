"""The real DeepfakeBench checkout (snapshot 8a4a7bf) running our detectors, on every CI run.

Through `declip dfb` (the CLI), in the environment scripts/setup_dfb_env.sh builds
($DEEPFAKEBENCH_PYTHON) against the unpacked snapshot ($DEEPFAKEBENCH_ROOT):

* `declip export-dfb` of the demo data, read by the checkout's own loader;
* test.py with every plugin detector we ship a demo config for (configs/detector/*_demo.yaml
  whose model_name is registered), with our localization metrics beside its own;
* test.py with a native DeepfakeBench detector (meso4) on the same export, with data-loader
  workers started by *spawn*, and the leaderboard over both;
* train.py's Trainer (its CUDA calls stubbed by tests/dfb_harness, for this test only): the config
  it logs is the one with our overrides, localization metrics in its training.log and beside its
  metric pickle; its ckpt_best.pth is accepted by `declip test`, `predict`, `leaderboard`, `report`
  (round trip there -> here);
* `declip train` (embedded engine) -> `declip export-dfb` -> the checkout's test.py on that
  checkpoint, on frames both sides resize: the same predictions and localization metrics as
  `declip test` on the export (round trip here -> there);
* the fork DeepFakesDetection ($DEEPFAKESDETECTION_ROOT): our declip_demo through its own test.py,
  exported under a dataset name its loader accepts (`--name UADFV`), with our localization metrics.

In CI (CI=1 or CI=true) a missing snapshot or environment fails (tests/dfb_support.py).
"""
import csv
import glob
import json
import os
import pickle
import re

import pytest
import yaml

from dfb_support import HARNESS, REPO, checkout_python, checkout_root, fork_root

DATASET = "demo-telea"
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "detector")


def _demo_configs():
    """configs/detector/*_demo.yaml whose model_name one of our plugins registers."""
    from declip_plugin.plugins import build_registries, create_plugin_manager

    names = set(build_registries(create_plugin_manager())["detectors"].names())
    out = []
    for path in sorted(glob.glob(os.path.join(CONFIG_DIR, "*_demo.yaml"))):
        with open(path, encoding="utf-8") as f:
            model_name = (yaml.safe_load(f) or {}).get("model_name")
        if model_name in names:
            out.append(os.path.basename(path)[:-5])
    return out


DEMO_CONFIGS = _demo_configs()


def _input_kind(config_name):
    """'frame' or 'clip' (the detector class's declared input)."""
    from declip_plugin.config import load_yaml, resolve_config_path
    from declip_plugin.plugins import build_registries, create_plugin_manager

    cfg = load_yaml(resolve_config_path(config_name, "detector"))
    cls = build_registries(create_plugin_manager())["detectors"].get(cfg["model_name"])
    return getattr(cls, "input_kind", "frame")




@pytest.fixture(scope="module")
def dfb(tmp_path_factory):
    root = checkout_root(tmp_path_factory)
    python = checkout_python()
    from declip_plugin.integrations import validate_checkout

    validate_checkout(root, mode="test")
    return root, python


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    from declip_plugin.data.demo import make_demo_data

    tmp = tmp_path_factory.mktemp("dfb_real_data")
    # 112 px: declip_demo's resolution, so neither DeepfakeBench's loader (INTER_CUBIC) nor ours
    # (INTER_LINEAR) resizes, and the two pipelines see the same pixels
    make_demo_data(str(tmp / "demo"), n_train=2, n_val=1, n_test=3, size=112)
    return str(tmp)


def _export(dfb, demo_data, tmp, config_name):
    from declip_plugin.integrations import export_dfb

    return export_dfb(DATASET, str(tmp / f"export_{config_name}"),
                      {"data_root": demo_data, "bench_root": dfb[0], "detector": config_name})


def _cli(dfb, mode, opts, script_args):
    from declip_plugin import cli

    return cli.main([str(a) for a in ["dfb", mode, "--bench-root", dfb[0], "--python", dfb[1], *opts, "--",
                                      *script_args]])


def _one(pattern):
    found = glob.glob(pattern)
    assert len(found) == 1, f"expected one match of {pattern}, found {found}"
    return found[0]


def _read_results(results):
    folder = _one(os.path.join(results, "*_*", "test", DATASET))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        dfb_metrics = pickle.load(f)
    loc_file = os.path.join(folder, "localization_metrics.json")
    loc = None
    if os.path.exists(loc_file):
        with open(loc_file, encoding="utf-8") as f:
            loc = json.load(f)["metrics"]
    return dfb_metrics, loc


@pytest.fixture(scope="module")
def plugin_runs(dfb, demo_data, tmp_path_factory):
    """test.py through `declip dfb test --cpu` for each demo config: {config: (results dir, stdout)}."""
    return {}


@pytest.mark.parametrize("config_name", [c for c in DEMO_CONFIGS if _input_kind(c) == "frame"])
def test_test_py_runs_our_detector(dfb, demo_data, tmp_path_factory, config_name, capfd, plugin_runs):
    import torch

    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_yaml
    from declip_plugin.detectors import capability

    tmp = tmp_path_factory.mktemp(f"run_{config_name}")
    summary = _export(dfb, demo_data, tmp, config_name)
    torch.manual_seed(0)
    detector = build_detector(load_yaml(summary["yaml"]))
    ckpt = save_detector_checkpoint(str(tmp / "ckpt_ours.pth"), detector)  # our format: the launcher converts it
    results = str(tmp / "results")
    opts = ["--cpu", "--data", summary["out_dir"], "--results_dir", results, "--opt", "workers=0",
            "--opt", "test_batchSize=4"]
    rc = _cli(dfb, "test", opts, ["--detector_path", summary["yaml"], "--test_dataset", DATASET, "--weights_path", ckpt])
    out = capfd.readouterr().out
    print(out)
    assert rc == 0
    assert "===> Load checkpoint done!" in out  # test.py's strict load of the converted weights
    dfb_metrics, loc = _read_results(results)
    # DeepfakeBench's own metrics (metrics/utils.py get_test_metrics) over the 6 test images, as it printed them
    assert {"acc", "auc", "eer", "ap", "video_auc", "pred", "label"} <= set(dfb_metrics)
    assert len(dfb_metrics["pred"]) == 6 and sorted(dfb_metrics["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert f"dataset: {DATASET}\nacc: {dfb_metrics['acc']}\n" in out
    # the same predictions as our own detector on the same images (test.py's loader, our weights)
    probs = _our_probs(detector, summary, dfb)
    assert sorted(dfb_metrics["pred"].tolist()) == pytest.approx(sorted(probs), abs=1e-4)
    plugin_runs[config_name] = results
    if not capability(detector, "produces_mask"):  # a detector without a decoder: detection only
        assert loc is None and "(localization, declip_plugin)" not in out
        return
    # ours, from the same forward passes, printed after DeepfakeBench's table
    assert loc["n_manipulated"] == 3 and loc["n_empty_gt"] == 3
    for key in ("iou", "f1", "f1_best", "pixel_ap", "pixel_auc"):
        assert loc[key] is not None
    assert out.index(f"dataset: {DATASET}\n") < out.index(f"dataset: {DATASET} (localization, declip_plugin)")
    assert f"iou: {loc['iou']}" in out


@pytest.mark.parametrize("config_name", [c for c in DEMO_CONFIGS if _input_kind(c) == "clip"])
def test_test_py_runs_a_clip_detector_in_video_mode(dfb, tmp_path_factory, config_name, capfd):
    """test.py's video_mode path ((B, T, 3, H, W) clips) with our clip detector, on the demo videos
    written in DeepfakeBench's JSON layout with paths relative to the checkout."""
    import torch

    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_yaml, resolve_config_path
    from declip_plugin.data.demo_video import NAME, make_demo_videos

    tmp = tmp_path_factory.mktemp(f"video_{config_name}")
    made = make_demo_videos(str(tmp / "videos"), seed=0, size=96, n_frames=16, n_train=1, n_val=1, n_test=3,
                            paths_base=dfb[0])
    cfg = load_yaml(resolve_config_path(config_name))
    torch.manual_seed(0)
    ckpt = save_detector_checkpoint(str(tmp / "ckpt.pth"), build_detector({**cfg, "pretrained": "none"}))
    results = str(tmp / "results")
    opts = ["--cpu", "--no-lmdb", "--results_dir", results, "--opt", "workers=0", "--opt", "test_batchSize=2",
            "--opt", f"dataset_json_folder={os.path.dirname(made['json'])}",
            "--opt", f"label_dict={{{NAME}_real: 0, {NAME}_flicker: 1}}"]
    rc = _cli(dfb, "test", opts, ["--detector_path", str(resolve_config_path(config_name)), "--test_dataset", NAME,
                                  "--weights_path", ckpt])
    out = capfd.readouterr().out
    print(out)
    assert rc == 0
    folder = _one(os.path.join(results, "*_*", "test", NAME))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        metrics = pickle.load(f)
    # 3 real + 3 fake videos of 16 frames, clip_size 8: two clips each, one prediction per clip
    assert len(metrics["pred"]) == 12 and sorted(metrics["label"].tolist()) == [0] * 6 + [1] * 6
    assert f"video_auc: {metrics['video_auc']}" in out


def _our_probs(detector, summary, dfb):
    """Our detector's p(fake) on the exported test images, read and normalised as DeepfakeBench does
    (cv2 BGR->RGB, resize to resolution with INTER_CUBIC, /255, mean/std)."""
    import cv2
    import numpy as np
    import torch

    with open(summary["json"], encoding="utf-8") as f:
        tree = json.load(f)[DATASET]
    cfg = yaml.safe_load(open(summary["yaml"], encoding="utf-8"))
    mean, std, size = np.array(cfg["mean"]), np.array(cfg["std"]), cfg["resolution"]
    images = []
    for label in tree.values():
        for video in label["test"].values():
            img = cv2.cvtColor(cv2.imread(os.path.join(dfb[0], video["frames"][0])), cv2.COLOR_BGR2RGB)
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) / 255.0
            images.append(torch.from_numpy(((img - mean) / std).transpose(2, 0, 1)).float())
    detector.eval()
    with torch.no_grad():
        return detector({"image": torch.stack(images)}, inference=True)["prob"].tolist()


@pytest.fixture(scope="module")
def meso4_run(dfb, demo_data, tmp_path_factory):
    """DeepfakeBench's own meso4 (random init) on the declip_demo export, data-loader workers by spawn."""
    import subprocess

    tmp = tmp_path_factory.mktemp("run_meso4")
    summary = _export(dfb, demo_data, tmp, "declip_demo")
    results = str(tmp / "results")
    det = os.path.join(dfb[0], "training", "config", "detector", "meso4.yaml")
    env = os.environ.copy()
    env.update(DECLIP_TEST_START_METHOD="spawn", PYTHONPATH=os.pathsep.join([HARNESS, env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [dfb[1], "-m", "declip_plugin", "dfb", "test", "--bench-root", dfb[0], "--cpu", "--data", summary["out_dir"],
         "--results_dir", results, "--opt", "workers=1", "--opt", "test_batchSize=2",
         "--", "--detector_path", det, "--test_dataset", DATASET, "--weights_path="],  # empty: random init
        env=env, capture_output=True, text=True, timeout=600)
    return results, proc


def test_test_py_runs_its_own_meso4_with_spawned_workers(meso4_run):
    results, proc = meso4_run
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    dfb_metrics, loc = _read_results(results)
    assert len(dfb_metrics["pred"]) == 6 and sorted(dfb_metrics["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert "Fail to load the pre-trained weights" in proc.stdout
    assert f"dataset: {DATASET}\nacc: {dfb_metrics['acc']}\n" in proc.stdout
    assert loc is None and "(localization, declip_plugin)" not in proc.stdout  # with_mask: false in meso4.yaml


def test_leaderboard_over_ours_and_meso4(plugin_runs, meso4_run):
    from declip_plugin.leaderboard import collect

    if "declip_demo" not in plugin_runs:
        pytest.fail("the declip_demo run of test_test_py_runs_our_detector did not complete")
    entries = collect([plugin_runs["declip_demo"], meso4_run[0]])
    assert sorted((e.method, e.dataset) for e in entries) == [("declip", DATASET), ("meso4", DATASET)]
    by_method = {e.method: e for e in entries}
    with open(_one(os.path.join(meso4_run[0], "*", "test", DATASET, "metric_dict_best.pickle")), "rb") as f:
        assert by_method["meso4"].metrics["auc"] == pytest.approx(pickle.load(f)["auc"])


def test_train_py_trainer_logs_the_config_that_runs_and_localization(dfb, demo_data, tmp_path, capfd, monkeypatch):
    summary = _export(dfb, demo_data, tmp_path, "declip_demo")
    logs = str(tmp_path / "logs")
    monkeypatch.setenv("DECLIP_TEST_STUB_CUDA", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HARNESS, os.environ.get("PYTHONPATH", "")]))
    opts = ["--stub-datasets", "--data", summary["out_dir"], "--opt", f"log_dir={logs}", "--opt", "nEpochs=0", "--opt", "workers=0",
            "--opt", "train_batchSize=2", "--opt", "test_batchSize=4", "--opt", "optimizer.adam.lr=0.0005"]
    rc = _cli(dfb, "train", opts, ["--detector_path", summary["yaml"], "--train_dataset", DATASET,
                                   "--test_dataset", DATASET, "--no-save_feat"])
    out, err = capfd.readouterr()
    assert rc == 0, err[-6000:]
    run = _one(os.path.join(logs, "declip_*"))  # one folder: the log and the Trainer's outputs together
    with open(os.path.join(run, "training.log"), encoding="utf-8") as f:
        log = f.read()
    print("\n".join(line for line in log.splitlines() if "localization" in line or "testing-metric" in line))
    # the configuration train.py logged is the one with the overrides (applied before its merge)
    assert f"\nlog_dir: {logs}\n" in log and "\nworkers: 0\n" in log and "\ntrain_batchSize: 2\n" in log
    assert re.search(r"\noptimizer: \{'type': 'adam', 'adam': \{'lr': 0\.0005, ", log)
    assert "\nlmdb: False\n" in log and f"\ndataset_json_folder: {summary['out_dir']}/dataset_json\n" in log
    # the Trainer's own test round, then ours in its log and beside its metric pickle
    folder = os.path.join(run, "test", DATASET)
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        dfb_metrics = pickle.load(f)
    assert len(dfb_metrics["pred"]) == 6
    assert os.path.isfile(os.path.join(folder, "ckpt_best.pth"))
    with open(os.path.join(folder, "localization_metrics.json"), encoding="utf-8") as f:
        loc = json.load(f)
    assert loc["host"].startswith("DeepfakeBench Trainer") and loc["metrics"]["n_manipulated"] == 3
    line = _one_line(log, f"dataset: {DATASET}    localization (declip_plugin): ")
    assert f"iou: {loc['metrics']['iou']}" in line and f"pixel_ap: {loc['metrics']['pixel_ap']}" in line
    _trainer_checkpoint_works_here(summary, demo_data, folder, dfb_metrics, tmp_path, logs)


def _trainer_checkpoint_works_here(summary, demo_data, folder, dfb_metrics, tmp_path, logs):
    """Round trip there -> here: the Trainer's ckpt_best.pth (a plain state dict of the detector) in
    `declip test` (the same predictions as the Trainer's test round: the images are at the model's
    resolution, so both loaders feed the same pixels), `predict`, `leaderboard` and `report`."""
    ckpt = os.path.join(folder, "ckpt_best.pth")
    ours_dir = str(tmp_path / "ours")
    common = ["--data_root", demo_data, "--device", "cpu", "--opt", "workers=0", "--opt", "precision=fp32"]
    assert _declip("test", "--detector_path", summary["yaml"], "--weights_path", ckpt, "--test_dataset", DATASET,
                   "--log_dir", ours_dir, "--opt", "include_real=true", *common) == 0
    ours = _our_test_scores(_one(os.path.join(ours_dir, "*")))
    theirs = _per_label(dfb_metrics["pred"], dfb_metrics["label"])
    for label in (0, 1):
        assert theirs[label] == pytest.approx(ours[label], abs=1e-4)
    image = summary["sources"][next(k for k in summary["sources"] if k.endswith("fake_test_00000"))]["image"]
    pred_dir = str(tmp_path / "pred")
    assert _declip("predict", image, "--weights_path", ckpt, "--detector_path", summary["yaml"], "--out", pred_dir,
                   "--device", "cpu") == 0
    with open(os.path.join(pred_dir, "predictions.json"), encoding="utf-8") as f:
        record = json.load(f)["predictions"][0]
    # the same image in the Trainer's test round: its score among the fake ones
    assert min(abs(record["prob_fake"] - p) for p in theirs[1]) < 1e-4
    from declip_plugin.leaderboard import collect

    entries = [e for e in collect([logs, ours_dir]) if e.dataset == DATASET]  # the Trainer adds an 'avg' too
    assert len(entries) == 2
    trainer = next(e for e in entries if e.source.endswith("metric_dict_best.pickle") and e.source.startswith(logs))
    assert trainer.metrics["auc"] == pytest.approx(dfb_metrics["auc"])
    report = str(tmp_path / "report.html")
    assert _declip("report", logs, ours_dir, "--out", report) == 0
    with open(report, encoding="utf-8") as f:
        assert DATASET in f.read()


def _one_line(text, start):
    lines = [ln for ln in text.splitlines() if start in ln]
    assert len(lines) == 1, f"expected one line with {start!r}, found {lines}"
    return lines[0]


def _per_label(preds, labels):
    """{label: sorted predictions}: DeepfakeBench's loader shuffles, so pair by label and value."""
    out = {}
    for p, y in zip(preds, labels):
        out.setdefault(int(y), []).append(float(p))
    return {k: sorted(v) for k, v in out.items()}


def _our_test_scores(run_dir):
    import csv

    with open(_one(os.path.join(run_dir, "test", DATASET, "per_image.csv")), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return _per_label([r["score"] for r in rows], [r["label"] for r in rows])


def _declip(*args):
    from declip_plugin import cli

    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def demo_data_resized(tmp_path_factory):
    from declip_plugin.data.demo import make_demo_data

    tmp = tmp_path_factory.mktemp("dfb_real_data_128")
    # 128 px against declip_demo's resolution 112: both loaders resize every frame and mask
    make_demo_data(str(tmp / "demo"), n_train=2, n_val=1, n_test=3, size=128)
    return str(tmp)


def _our_metrics(run_dir, dataset):
    with open(_one(os.path.join(run_dir, "test", dataset, "metrics.json")), encoding="utf-8") as f:
        return json.load(f)["metrics"]


def test_round_trip_declip_train_here_then_test_py_there(dfb, demo_data_resized, tmp_path, capfd):
    """declip train (embedded engine) -> export-dfb -> the checkout's test.py with that ckpt_best.pth, on 128 px
    frames that both sides resize to the model's 112 px: the YAML export-dfb wrote loads it strictly, and test.py's
    predictions and localization metrics equal those of `declip test` reading the same export (DeepfakeBench-format
    data, from its rgb tree and from its LMDB: resized as DeepfakeBench's loader resizes, INTER_CUBIC, masks to
    resolution)."""
    logs, exp, res = (str(tmp_path / n) for n in ("runs", "exports", "results"))
    name = "RoundTrip"  # undeclared: `declip test` reads it from the export's JSON folder
    common = ["--device", "cpu", "--opt", "workers=0", "--opt", "precision=fp32"]
    assert _declip("train", "--detector_path", "declip_demo", "--train_dataset", DATASET, "--test_dataset", DATASET,
                   "--data_root", demo_data_resized, "--log_dir", logs, "--opt", "nEpochs=1", *common) == 0
    ckpt = _one(os.path.join(logs, "*", "ckpt_best.pth"))
    assert _declip("export-dfb", DATASET, exp, "--data_root", demo_data_resized, "--bench_root", dfb[0],
                   "--name", name) == 0
    yaml_path = os.path.join(exp, f"declip_{name}.yaml")
    capfd.readouterr()
    rc = _cli(dfb, "test", ["--cpu", "--data", exp, "--results_dir", res, "--opt", "workers=0"],
              ["--detector_path", yaml_path, "--test_dataset", name, "--weights_path", ckpt])
    out, err = capfd.readouterr()
    assert rc == 0, err[-4000:]
    assert "===> Load checkpoint done!" in out  # test.py's strict load of our checkpoint, converted
    folder = _one(os.path.join(res, "*_*", "test", name))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        dfb_metrics = pickle.load(f)
    with open(os.path.join(folder, "localization_metrics.json"), encoding="utf-8") as f:
        loc = json.load(f)["metrics"]
    theirs = _per_label(dfb_metrics["pred"], dfb_metrics["label"])
    assert set(theirs) == {0, 1} and loc["n_manipulated"] == 3
    # frame paths in the export are relative to the checkout (its scripts run there): --dfb_config names it
    read = ["--dfb_config", dfb[0], "--opt", f"dataset_json_folder={exp}/dataset_json", "--opt", "include_real=true"]
    for store in (["--opt", "lmdb=false"], ["--opt", "lmdb=true", "--opt", f"lmdb_dir={exp}/lmdb"]):
        ours_dir = str(tmp_path / f"ours_{store[1]}")
        assert _declip("test", "--detector_path", yaml_path, "--weights_path", ckpt, "--test_dataset", name,
                       "--log_dir", ours_dir, *read, *store, *common) == 0
        run = _one(os.path.join(ours_dir, "*"))
        with open(os.path.join(run, "test", name, "per_image.csv"), encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 6 and (store[1] == "lmdb=false") == all(os.path.isfile(r["path"]) for r in rows)
        ours = _per_label([r["score"] for r in rows], [r["label"] for r in rows])
        # the goal is 1e-4; this one-epoch tiny model's probabilities all lie within 1e-4 of each other, so the
        # check is tighter: frames resized with INTER_LINEAR (the other adapters' resize) differ by ~3e-6 here
        for label in (0, 1):
            assert theirs[label] == pytest.approx(ours[label], abs=1e-6), store
        metrics = _our_metrics(run, name)
        for key in ("iou", "f1", "pixel_ap", "pixel_auc"):  # masks resized to resolution on both sides
            assert metrics[key] == pytest.approx(loc[key], abs=1e-4), (store, key)


def test_fork_deepfakesdetection_runs_declip_demo_through_its_test_py(demo_data, tmp_path_factory, capfd):
    import torch

    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.config import load_yaml

    fork = (fork_root(tmp_path_factory), checkout_python())
    tmp = tmp_path_factory.mktemp("fork")
    # its loader accepts only its own dataset names (collect_img_and_label): the demo set goes in as UADFV
    summary = export_dfb_as(fork, demo_data, tmp, "UADFV")
    torch.manual_seed(0)
    ckpt = save_detector_checkpoint(str(tmp / "ckpt.pth"), build_detector(load_yaml(summary["yaml"])))
    results = str(tmp / "results")
    rc = _cli(fork, "test", ["--cpu", "--data", summary["out_dir"], "--results_dir", results, "--opt", "workers=0"],
              ["--detector_path", summary["yaml"], "--test_dataset", "UADFV", "--weights_path", ckpt])
    out, err = capfd.readouterr()
    print(out)
    assert rc == 0, err[-4000:]
    assert "Optimal threshold:" in out  # the fork's own test.py (DeepfakeBench's has no such line)
    folder = _one(os.path.join(results, "*_*", "test", "UADFV"))
    with open(os.path.join(folder, "metric_dict_best.pickle"), "rb") as f:
        assert sorted(pickle.load(f)["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    with open(os.path.join(folder, "localization_metrics.json"), encoding="utf-8") as f:
        loc = json.load(f)["metrics"]
    assert loc["n_manipulated"] == 3 and loc["iou"] is not None
    assert f"dataset: UADFV (localization, declip_plugin)\niou: {loc['iou']}" in out


def export_dfb_as(checkout, demo_data, tmp, name):
    from declip_plugin.integrations import export_dfb

    return export_dfb(DATASET, str(tmp / f"export_{name}"), {"data_root": demo_data, "bench_root": checkout[0],
                                                             "name": name, "detector": "declip_demo"})


def _script(name, env, cwd, *args, timeout=600):
    """``bash scripts/<name> ARGS`` with ``env`` added, the package's own `declip` (the one beside this
    interpreter), from ``cwd``."""
    import subprocess
    import sys

    full = {**os.environ, "DECLIP": os.path.join(os.path.dirname(sys.executable), "declip"), **env}
    return subprocess.run(["bash", os.path.join(REPO, "scripts", name), *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def test_scripts_test_sh_with_the_checkout_as_written(dfb, demo_data, tmp_path):
    """`ENGINE=deepfakebench bash scripts/test.sh` as the README shows it: the bundled name declip_demo
    becomes a YAML the checkout reads, demo-telea is exported for it, test.py runs on the CPU (no GPU
    here) with our localization metrics, and the results land in RESULTS_DIR."""
    import torch

    from declip_plugin import build_detector
    from declip_plugin.config import load_yaml, resolve_config_path
    from declip_plugin.detectors.base import save_detector_checkpoint

    torch.manual_seed(0)
    save_detector_checkpoint(str(tmp_path / "ckpt.pth"), build_detector(load_yaml(resolve_config_path("declip_demo"))))
    env = {"ENGINE": "deepfakebench", "DEEPFAKEBENCH_ROOT": dfb[0], "DEEPFAKEBENCH_PYTHON": dfb[1],
           "DETECTOR": "declip_demo", "TEST_DATASET": DATASET, "WEIGHTS": "ckpt.pth", "DATA_ROOT": demo_data,
           "EXPORT_DIR": "exp", "RESULTS_DIR": "res"}
    # extra arguments: `declip dfb`'s own options (test.py, whose only flags are --detector_path,
    # --test_dataset and --weights_path, would refuse them)
    proc = _script("test.sh", env, tmp_path, "--opt", "test_batchSize=2", "--python", dfb[1])
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "sees no GPU: running DeepfakeBench's test.py on the CPU" in proc.stderr
    assert "--detector_path declip_demo is a bundled detector config" in proc.stderr
    with open(tmp_path / "exp" / f"export_{DATASET}.json", encoding="utf-8") as f:
        assert json.load(f)["paths_relative_to"] == os.path.realpath(dfb[0])
    dfb_metrics, loc = _read_results(str(tmp_path / "res"))
    assert sorted(dfb_metrics["label"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert loc["n_manipulated"] == 3 and f"iou: {loc['iou']}" in proc.stdout
    assert "| 3/3 [" in proc.stderr  # test.py's progress bar: 6 images in batches of 2, as --opt asked


def test_scripts_train_sh_with_the_checkout_refuses_without_cuda(dfb, tmp_path):
    """`ENGINE=deepfakebench bash scripts/train.sh` (defaults: declip on the Dolos sets, which are not
    here) ends with the one-line CUDA refusal, before anything is exported."""
    env = {"ENGINE": "deepfakebench", "DEEPFAKEBENCH_ROOT": dfb[0], "DEEPFAKEBENCH_PYTHON": dfb[1],
           "DATA_ROOT": str(tmp_path / "no_data"), "EXPORT_DIR": "exp"}
    proc = _script("train.sh", env, tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0]
    assert "training/train.py needs CUDA" in errors[0] and "sees no GPU" in errors[0] and "Traceback" not in proc.stderr
    assert not os.path.exists(tmp_path / "exp")
