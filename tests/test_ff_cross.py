"""The ff-cross preset (configs/protocol/ff-cross.yaml): DeepFakesDetection's cross-dataset protocol, trained
on FaceForensics++ and tested on DeepfakeBench's sets, planned and run end to end with ``--executor debug`` on
a tiny stand-in of DeepfakeBench's prepared data (tests/dfb_standin.py: its dataset names, JSONs and LMDBs,
frames from the demo video generator), every tower swapped for a tiny one through ``--opt``. The leaderboard
holds the measured rows and both published blocks, each under the metric it reports, never ranked."""
import contextlib
import glob
import io
import json
import os

import pytest

from declip_plugin.commands.protocol import split_method_opts
from declip_plugin.protocol.cells import Protocol
from declip_plugin.protocol.plan import make_plan
from declip_plugin.cli import main as cli_main
from tests.dfb_standin import make_standin

PRESET_TESTS = ["FaceForensics++", "DFDC", "DFDCP", "DeepFakeDetection", "FaceShifter", "UADFV", "Celeb-DF-v2"]
OPTIONAL = ["Celeb-DF-v1", "DeeperForensics-1.0"]
METHODS = ["clip_enhanced", "clip_enhanced_mlp2", "clip_enhanced_vitl14", "clip_stan", "timesformer", "declip_detection"]
TINY = "declip-tiny-vit-96"
# every tower tiny and random; one epoch; 8 frames per video, clips of 4 (two per video: a video level)
TINY_OPTS = ["pretrained=none", "nEpochs=1", "resolution=96", "frame_num={train: 8, test: 8}", "clip_size=4",
             "train_batchSize=8", "test_batchSize=16", "workers=0", "precision=fp32", "tensorboard_masks=0",
             *(f"{m}:backbone={TINY}" for m in ("clip_enhanced", "clip_enhanced_mlp2", "clip_enhanced_vitl14",
                                                "clip_stan", "declip_detection")),
             "clip_stan:depth=1", "timesformer:encoder=test_efficientnet", "timesformer:heads=4",
             "declip_detection:feature_layer=layer1", "declip_detection:decoder_type=linear"]


def _argv(dfb_config, out, *extra):
    argv = ["protocol", "--preset", "ff-cross", "--dfb_config", str(dfb_config), "--out", str(out),
            "--device", "cpu", "--executor", "debug", "--no-report", *extra]
    for opt in TINY_OPTS:
        argv += ["--opt", opt]
    return argv


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("dfb")
    return make_standin(root / "DeepfakeBench", sets=PRESET_TESTS)  # without the optional sets


@pytest.fixture(scope="module")
def ran(standin, tmp_path_factory):
    out = tmp_path_factory.mktemp("ff") / "proto"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli_main(_argv(standin, out))
    assert code == 0, stderr.getvalue()[-3000:]
    return out, stdout.getvalue()


def _table(md, title):
    """``{row name: {column: cell}}`` of the table under ``### <title>`` in a leaderboard.md."""
    block = md.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}, block


def test_the_preset_runs_every_method_on_every_set_and_shows_both_published_tables(ran):
    out, stdout = ran
    md = (out / "leaderboard.md").read_text()
    assert [ln for ln in md.splitlines() if ln.startswith("### ")] == ["### video detection"]  # every run has videos
    rows, block = _table(md, "video detection")
    # measured: every method, a video AUC on every test set; FaceForensics++ alone in-domain
    for m in METHODS:
        for t in PRESET_TESTS:
            assert 0.0 <= float(rows[m][f"video_auc {t}"].strip("*")) <= 1.0, (m, t)
        run = json.loads(open(glob.glob(str(out / "runs" / f"{m}_*" / "test" / "DFDC" / "metrics.json"))[0]).read())
        assert run["in_domain"] is False and run["metrics"]["n_videos"] == 2
    # DeepFakesDetection's table: video AUC per set (its percentages on the 0-1 scale); ID = its FF++ figure,
    # OOD = the mean of its six other figures (83.6, 86.6, 96.2, 74.4, 98.4, 89.0 -> 88.03)
    vitb = rows["CLIP ViT-B (LN+1MLP) (published: DeepFakesDetection)"]
    assert (vitb["video_auc DFDC"], vitb["video_auc DeepFakeDetection"], vitb["video_auc FaceShifter"]) == \
           ("0.836", "0.962", "0.744")
    assert (vitb["video_auc ID mean"], vitb["video_auc OOD mean"]) == ("0.996", "0.880")
    assert vitb["auc ID mean"] == vitb["auc OOD mean"] == ""
    assert len([r for r in rows if r.endswith("(published: DeepFakesDetection)")]) == 6
    # DeepfakeBench's README table: frame AUC only, under auc (FF++_c23 0.9637; OOD: CDFv2 .7365, DFD .8163,
    # DFDC .7077, DFDCP .7374, Fsh .6249, UADFV .9379 -> 0.7601)
    xcep = rows["Xception (published: DeepfakeBench)"]
    assert (xcep["auc ID mean"], xcep["auc OOD mean"]) == ("0.964", "0.760")
    assert all(v == "" for k, v in xcep.items() if k.startswith("video_auc"))
    assert len([r for r in rows if r.endswith("(published: DeepfakeBench)")]) == 15
    # never ranked; both sources named under the table
    assert all("**" not in ln for ln in block.splitlines() if "(published" in ln)
    assert "DeepFakesDetection README" in block and "DeepfakeBench README" in block
    # the headline's grid is printed first, and the grids are the preset's metrics
    assert "video_auc grid" in stdout and sorted(p.name for p in out.glob("grid_*.csv")) == \
           ["grid_auc.csv", "grid_video_auc.csv"]


def test_the_frames_came_through_deepfakebench_lmdbs(ran):
    out, _ = ran
    (per_image,) = glob.glob(str(out / "runs" / "clip_enhanced_2*" / "test" / "FaceShifter" / "per_image.csv"))
    text = open(per_image).read()
    assert "FaceForensics++_lmdb[FaceForensics++\\manipulated_sequences/FaceShifter" in text  # the FF++ pool


def test_the_leaderboard_command_and_the_report_read_the_published_blocks(ran, capsys):
    out, _ = ran
    from declip_plugin.leaderboard import collect
    from declip_plugin.protocol.folder import reference_blocks
    from declip_plugin.report import summary_panels

    capsys.readouterr()
    assert cli_main(["leaderboard", str(out), "--by_task"]) == 0
    assert "CLIP ViT-L (published: DeepFakesDetection) | 0.950" in capsys.readouterr().out
    blocks = reference_blocks([str(out)])
    panel = dict((t, rows) for t, _, rows in summary_panels(collect([str(out)]), blocks))["video detection"]
    published = {name: (idm, round(oodm, 4)) for name, idm, oodm, flag in panel if flag}
    assert published["CLIP ViT-L (DeepFakesDetection)"] == (0.998, round((88.6 + 89.2 + 98.2 + 85.7 + 99.4 + 95.0)
                                                                          / 600, 4))
    assert not any(name.endswith("(DeepfakeBench)") for name in published)  # frame AUC: not the headline


def test_status_names_every_expected_path_and_writes_nothing(standin, tmp_path, capsys):
    out = tmp_path / "proto"
    capsys.readouterr()
    assert cli_main(["protocol", "--preset", "ff-cross", "--optional_tests", "--dfb_config", str(standin),
                     "--out", str(out), "--status"]) == 0
    text = capsys.readouterr().out
    root = os.path.dirname(os.path.dirname(os.path.dirname(standin)))
    json_dir, lmdb_dir = os.path.join(root, "preprocessing", "dataset_json"), os.path.join(root, "datasets", "lmdb")
    lines = {ln.split("|")[1].strip(): ln for ln in text.splitlines() if ln.startswith("| ")}
    for name in PRESET_TESTS + OPTIONAL:
        lmdb = "FaceForensics++" if name in ("FaceForensics++", "FaceShifter", "DeepFakeDetection") else name
        assert os.path.join(json_dir, f"{name}.json") in lines[name] and \
               os.path.join(lmdb_dir, f"{lmdb}_lmdb") in lines[name], lines[name]
        assert ("| missing: JSON, LMDB |" in lines[name]) == (name in OPTIONAL)
    assert "datasets: 7 of 9 found, missing: Celeb-DF-v1, DeeperForensics-1.0" in text
    assert all(f"| {m}__FaceForensics++ |" in text for m in METHODS) and "not started" in text
    assert not out.exists()


def test_a_run_with_missing_sets_names_them_all_before_writing(standin, tmp_path, capsys):
    out = tmp_path / "proto"
    capsys.readouterr()
    assert cli_main(_argv(standin, out, "--optional_tests")) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "2 of 9 dataset(s) missing" in err[0], err
    for name in OPTIONAL:
        assert f"{name}.json" in err[0] and f"{name}_lmdb" in err[0]
    assert not out.exists()


def test_method_options_reach_their_methods_cells_only(tmp_path, monkeypatch):
    """What every executor's job runs (cluster.CellJob: local, SLURM and debug alike) reads the per-method
    --opt from protocol.json."""
    from declip_plugin.protocol.cluster import CellJob

    plain, scoped = split_method_opts(["nEpochs=2", "timesformer:encoder=test_efficientnet",
                                             "clip_stan:optimizer.adam.lr=0.1", "clip_stan:depth=1"])
    assert plain == ["nEpochs=2"] and scoped == {"timesformer": {"encoder": "test_efficientnet"},
                                                 "clip_stan": {"optimizer": {"adam": {"lr": 0.1}}, "depth": 1}}
    plan = make_plan("ff-cross", overrides={"nEpochs": 2, "optimizer": {"type": "adam"}}, method_overrides=scoped)
    Protocol(tmp_path / "p", plan)
    seen = {}

    def train(config, overrides, resume=None):
        seen[os.path.basename(config)] = overrides
        raise KeyboardInterrupt  # enough: what the cell was given

    monkeypatch.setattr("declip_plugin.engine.run.train", train)
    for cell in ("clip_stan__FaceForensics++", "timesformer__FaceForensics++"):
        with pytest.raises(KeyboardInterrupt):
            CellJob(str(tmp_path / "p"), cell)()
    assert seen["clip_stan"]["depth"] == 1 and "encoder" not in seen["clip_stan"]
    assert seen["clip_stan"]["optimizer"] == {"type": "adam", "adam": {"lr": 0.1}}  # merged, not replaced
    assert seen["timesformer"]["encoder"] == "test_efficientnet" and "depth" not in seen["timesformer"]
    assert seen["timesformer"]["nEpochs"] == 2 and seen["timesformer"]["in_domain"] == ["FaceForensics++"]
