"""DeepfakeBench's prepared data in the embedded engine: a dataset written by DeepfakeBench's own
preprocessing scripts (tests/dfb_prepared.py) read through its rgb tree and through its LMDB, the
standard-set configs, `declip datasets`, `--dfb_config`."""
import glob
import json
import os

import cv2
import numpy as np
import pytest
import torch
import yaml

from declip_plugin.cli import main
from declip_plugin.config import configs_dir
from declip_plugin.data import build_dataset, list_datasets
from declip_plugin.errors import ConfigError, DataError
from tests import dfb_prepared
from tests.dfb_prepared import FRAMES, NAME, VIDEOS

SMALL = {"resolution": 24, "mask_size": 24, "mean": [0, 0, 0], "std": [1, 1, 1], "include_real": True}
STANDARD = ("FaceForensics++", "FF-DF", "FF-F2F", "FF-FS", "FF-NT", "FaceShifter", "DeepFakeDetection", "Celeb-DF-v1",
            "Celeb-DF-v2", "DFDCP", "DFDC", "DeeperForensics-1.0", "UADFV")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return dfb_prepared.prepare(tmp_path_factory.mktemp("dfbdata"))


def folders(root, lmdb):
    """The run-config keys that point at the prepared folders."""
    return {"dataset_json_folder": os.path.join(root, "preprocessing", "dataset_json"),
            "rgb_dir": os.path.join(root, "datasets", "rgb"), "lmdb_dir": os.path.join(root, "datasets", "lmdb"),
            "lmdb": lmdb}


def decoded(image_t):
    """(kind, video, frame) from the pixels of tests/dfb_prepared.frame_pixels (channels 1, 2 flat)."""
    img = (image_t * 255).round().to(torch.int64)
    return ("fake" if int(img[2, 0, 0]) == 200 else "real", (int(img[1, 0, 0]) - 7) // 40, int(img[0, 1, 1]) // 10)


def assert_same_items(a, b):
    assert len(a) == len(b) > 0
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]), i
        assert (x["mask"] is None) == (y["mask"] is None) and (x["mask"] is None or torch.equal(x["mask"], y["mask"])), i
        assert (x["label"], x["video"]) == (y["label"], y["video"]), i


def test_lmdb_and_rgb_reads_are_equal_frame_level(checkout):
    spec = {"adapter": "deepfakebench_json", "dataset": NAME, "label_dict": {"UADFV_Real": 0, "UADFV_Fake": 1}}
    rgb = build_dataset(spec, "test", {**SMALL, **folders(checkout, False)})
    lmdb = build_dataset(spec, "test", {**SMALL, **folders(checkout, True)})
    lmdb_path = os.path.join(checkout, "datasets", "lmdb", f"{NAME}_lmdb")
    assert all(os.path.isfile(p) for p, _, _ in rgb.samples)
    assert all(p.startswith(lmdb_path + "[UADFV\\") for p, _, _ in lmdb.samples)  # keys as dataset2lmdb_test.py wrote them
    assert lmdb.store.style == "writer"
    assert len(rgb) == 2 * VIDEOS * FRAMES and rgb.has_masks and lmdb.has_masks
    assert_same_items(rgb, lmdb)
    # the samples are the frames written, in frame order, masks on the fakes only
    got = [decoded(rgb[i]["image"]) for i in range(len(rgb))]
    assert got == sorted(got, key=lambda k: (k[0], k[1], k[2]))
    assert {(k, v) for k, v, _ in got} == {(k, v) for k in ("real", "fake") for v in range(VIDEOS)}
    fake = next(i for i, (k, _, t) in enumerate(got) if k == "fake" and t == 3)
    assert int(lmdb[fake]["mask"].sum()) == 12 * 12 and int(lmdb[0 if got[0][0] == "real" else -1]["mask"].sum()) == 0
    # a spec frame_num keeps frames evenly spread, the same frames from both stores
    rgb4 = build_dataset({**spec, "frame_num": 4}, "test", {**SMALL, **folders(checkout, False)})
    lmdb4 = build_dataset({**spec, "frame_num": 4}, "test", {**SMALL, **folders(checkout, True)})
    assert_same_items(rgb4, lmdb4)
    assert [decoded(rgb4[i]["image"])[2] for i in range(4)] == [0, 2, 5, 7]


def test_frames_and_masks_are_resized_as_deepfakebenchs_loader_does(checkout):
    """DeepfakeBench-format data, resized as its loader (abstract_dataset.py load_rgb / load_mask): frames
    INTER_CUBIC to resolution, masks to resolution (not mask_size) with cv2's default; the same files through the
    folder adapter keep the engine's INTER_LINEAR and mask_size; the two cannot share a training batch."""
    from declip_plugin.engine.loaders import build_split

    cfg = {**SMALL, "resolution": 40, "mask_size": 20, **folders(checkout, False)}
    spec = {"adapter": "deepfakebench_json", "dataset": NAME, "label_dict": {"UADFV_Real": 0, "UADFV_Fake": 1}}
    ds = build_dataset(spec, "test", cfg)
    i = next(k for k, (_, label, _) in enumerate(ds.samples) if label == 1)
    path, _, mask_path = ds.samples[i]
    item = ds[i]
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)  # its load_rgb, step by step
    cubic = torch.from_numpy(cv2.resize(rgb, (40, 40), interpolation=cv2.INTER_CUBIC) / 255.0).permute(2, 0, 1)
    assert torch.allclose(item["image"], cubic.float(), atol=1e-6)  # mean 0, std 1
    mask = cv2.resize(cv2.imread(mask_path, 0), (40, 40)) / 255  # its load_mask; metrics binarise at 0.5
    assert 0 < np.count_nonzero((mask > 0) & (mask < 1))  # the resize blends the edge: the threshold matters
    assert item["mask"].shape == (1, 40, 40) and torch.equal(item["mask"][0] > 0.5, torch.from_numpy(mask > 0.5))
    folder = {"adapter": "folder", "root": os.path.join(checkout, "datasets", "rgb", NAME, "fake"),
              "images": "frames", "masks": "masks", "video_dirs": True}
    other = build_dataset(folder, "test", cfg)
    o_item = other[[p for p, _, _ in other.samples].index(path)]
    linear = torch.from_numpy(cv2.resize(rgb, (40, 40), interpolation=cv2.INTER_LINEAR) / 255.0).permute(2, 0, 1)
    assert torch.allclose(o_item["image"], linear.float(), atol=1e-6) and o_item["mask"].shape == (1, 20, 20)
    assert not torch.allclose(linear, cubic, atol=1e-3)
    with pytest.raises(ConfigError, match=r"masks of different sizes \(20 px: .*; 40 px: .*mask_size=40"):
        build_split([spec, folder], "train", cfg)


def test_lmdb_read_in_forked_dataloader_workers(checkout):
    """Workers inherit the parent's open LMDB (which LMDB forbids using after fork): they open their own."""
    from torch.utils.data import DataLoader

    from declip_plugin.data import collate_fn

    ds = build_dataset("UADFV", "test", {**SMALL, **folders(checkout, True)})
    direct = torch.stack([ds[i]["image"] for i in range(len(ds))])  # the parent has the LMDB open now
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=collate_fn, multiprocessing_context="fork")
    assert torch.equal(torch.cat([b["image"] for b in loader]), direct)
    assert torch.equal(ds[3]["image"], direct[3])  # and the parent's stays usable


def test_lmdb_and_rgb_reads_are_equal_in_video_mode(checkout):
    cfg = {**SMALL, "video_mode": True, "clip_size": 4, "frame_num": {"train": 8, "test": 8}}
    rgb = build_dataset("UADFV", "test", {**cfg, **folders(checkout, False)})
    lmdb = build_dataset("UADFV", "test", {**cfg, **folders(checkout, True)})
    assert len(rgb) == 2 * VIDEOS * 2  # 8 of 10 frames per video -> 2 clips of 4
    assert rgb[0]["image"].shape == (4, 3, 24, 24) and lmdb[0]["mask"] is not None
    assert_same_items(rgb, lmdb)
    for i in range(len(lmdb)):
        frames = [decoded(lmdb[i]["image"][t]) for t in range(4)]
        assert len({(k, v) for k, v, _ in frames}) == 1  # one video per clip
        assert frames[0][2] in (0, 5)  # frames 0, 1, 2, 3, 5, 6, 7, 8 kept; clips start at 0 and 5


def test_dfb_config_reads_the_checkout_as_deepfakebench_does(checkout, tmp_path):
    """Its own test_config.yaml: lmdb True, ./datasets/lmdb, ./preprocessing/dataset_json from the checkout root."""
    cfg = {**SMALL, "mode": "test"}
    by_file = build_dataset("UADFV", "test", {**cfg, "dfb_config": os.path.join(checkout, "training/config/test_config.yaml")})
    by_root = build_dataset("UADFV", "val", {**cfg, "dfb_config": checkout})
    assert by_file.store is not None and by_root.store is not None  # lmdb: True in its config
    assert_same_items(by_file, build_dataset("UADFV", "test", {**cfg, **folders(checkout, False)}))
    # frame paths starting with "." are relative to the checkout root (where DeepfakeBench runs), not the cwd
    src = os.path.join(checkout, "preprocessing", "dataset_json", f"{NAME}.json")
    (tmp_path / f"{NAME}.json").write_text(open(src).read().replace('"UADFV/', '"./datasets/rgb/UADFV/'))
    dotted = {"adapter": "deepfakebench_json", "dataset": NAME, "dataset_json_folder": str(tmp_path)}
    assert os.getcwd() != checkout
    for lmdb in (False, True):
        assert_same_items(by_file, build_dataset(dotted, "test", {**cfg, "dfb_config": checkout, "lmdb": lmdb}))
    # the run config's own keys win over the dfb_config's
    plain = build_dataset("UADFV", "test", {**cfg, "dfb_config": checkout, "lmdb": False})
    assert plain.store is None and os.path.isfile(plain.samples[0][0])


def test_windows_style_json_reads_both_ways(checkout, tmp_path):
    """DeepfakeBench's distributed JSONs use backslashes: the same frames from rgb and LMDB."""
    src = os.path.join(checkout, "preprocessing", "dataset_json", f"{NAME}.json")
    text = open(src).read().replace("/", "\\\\")
    (tmp_path / f"{NAME}.json").write_text(text)
    assert "UADFV\\\\fake\\\\frames" in text
    keys = {**folders(checkout, False), "dataset_json_folder": str(tmp_path)}
    rgb = build_dataset("UADFV", "test", {**SMALL, **keys})
    lmdb = build_dataset("UADFV", "test", {**SMALL, **keys, "lmdb": True})
    assert_same_items(rgb, lmdb)
    assert_same_items(rgb, build_dataset("UADFV", "test", {**SMALL, **folders(checkout, False)}))


def test_an_undeclared_dataset_is_read_from_the_dfb_json_folder(checkout, tmp_path):
    info = json.load(open(os.path.join(checkout, "preprocessing", "dataset_json", f"{NAME}.json")))
    (tmp_path / "MySet.json").write_text(json.dumps({"MySet": info[NAME]}))
    keys = {**folders(checkout, True), "dataset_json_folder": str(tmp_path)}
    with pytest.raises(DataError, match="MySet_lmdb does not exist"):
        build_dataset("MySet", "test", {**SMALL, **keys, "label_dict": {"UADFV_Real": 0, "UADFV_Fake": 1}})
    ds = build_dataset("MySet", "test", {**SMALL, **keys, "lmdb": False, "label_dict": {"UADFV_Real": 0, "UADFV_Fake": 1}})
    assert len(ds) == 2 * VIDEOS * FRAMES and ds.videos[0].startswith("MySet/")
    with pytest.raises(DataError, match="label 'UADFV_Fake' of video 'v0' is not in label_dict"):
        build_dataset("MySet", "test", {**SMALL, **keys, "lmdb": False, "label_dict": {"UADFV_Real": 0}})


def test_lmdb_problems_name_the_lmdb_and_the_keys_tried(checkout, tmp_path):
    keys = folders(checkout, True)
    with pytest.raises(DataError, match=f"LMDB {tmp_path}/none/UADFV_lmdb does not exist"):
        build_dataset("UADFV", "test", {**SMALL, **keys, "lmdb_dir": str(tmp_path / "none")})
    # an LMDB whose keys do not fit the JSON: the frame, every key tried and the LMDB's first key
    os.makedirs(tmp_path / "other")
    os.symlink(os.path.join(checkout, "datasets", "lmdb", f"{NAME}_lmdb"), tmp_path / "other" / "Other_lmdb")
    info = json.load(open(os.path.join(checkout, "preprocessing", "dataset_json", f"{NAME}.json")))
    (tmp_path / "Other.json").write_text(json.dumps({"Other": info[NAME]}).replace("UADFV/", "Other/"))
    with pytest.raises(DataError) as e:
        build_dataset("Other", "test", {**SMALL, **keys, "dataset_json_folder": str(tmp_path),
                                        "lmdb_dir": str(tmp_path / "other"), "label_dict": {"UADFV_Fake": 1}})
    msg = str(e.value)
    assert "has no entry for frame 'Other/fake/frames/v0/000.png'" in msg
    assert "'Other\\\\fake/frames/v0/000.png'" in msg and "its first key is 'UADFV\\\\fake/frames/v0/000.png'" in msg
    assert "skips every folder" not in msg
    # a folder named like a video: DeepfakeBench's LMDB writer skipped it, and the error says so
    (tmp_path / "UADFV.json").write_text(json.dumps(info).replace("/v0/", "/video0/"))
    with pytest.raises(DataError, match="dataset2lmdb_test.py skips every folder whose path contains 'video'"):
        build_dataset("UADFV", "test", {**SMALL, **keys, "dataset_json_folder": str(tmp_path)})


def test_the_cli_reads_dfb_config_and_reports_bad_input_in_one_line(checkout, capsys):
    extra = os.path.join(checkout, "preprocessing", "dataset_json", "MyOwn.json")  # a JSON no config declares
    with open(extra, "w") as f:
        f.write("{}")
    try:
        assert main(["datasets", "--dfb_config", checkout]) == 0
    finally:
        os.remove(extra)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(STANDARD) <= set(rows)
    lmdb = os.path.join(checkout, "datasets", "lmdb")
    assert rows["UADFV"].split()[2] == "found" and f"LMDB {lmdb}/UADFV_lmdb" in rows["UADFV"]
    ff = rows["FF-DF"]
    assert ff.split()[2] == "missing" and f"{checkout}/preprocessing/dataset_json/FF-DF.json (missing)" in ff
    assert f"LMDB {lmdb}/FaceForensics++_lmdb (missing)" in ff  # every FF++ variant reads FaceForensics++_lmdb
    assert f"JSON {extra}; LMDB {lmdb}/MyOwn_lmdb (missing)" in rows["MyOwn"]
    assert main(["datasets", "--dfb_config", os.path.join(checkout, "nowhere.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dfb_config") and "nowhere.yaml does not exist" in err and "\n" not in err


def test_a_detector_yaml_as_dfb_config_is_refused_in_one_line(checkout, tmp_path, capsys):
    """A DeepfakeBench detector YAML sets none of the data keys: taken as "no config" it let the defaults
    blame a JSON path the user never named; now the YAML itself is named."""
    det = tmp_path / "xception.yaml"
    det.write_text(yaml.safe_dump({"model_name": "xception", "backbone_name": "xception", "train_batchSize": 32}))
    logs = tmp_path / "logs"
    code = main(["train", "--detector_path", "clip_enhanced_demo", "--dfb_config", str(det), "--device", "cpu",
                 "--train_dataset", NAME, "--test_dataset", NAME, "--log_dir", str(logs)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line.startswith(f"error: dfb_config {det}: a detector config (model_name: xception); it sets none of "
                           "lmdb, rgb_dir, lmdb_dir, dataset_json_folder, label_dict"), line
    assert "training/config/train_config.yaml" in line and "--detector_path" in line
    assert not logs.exists()


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _foreign(path):
    with open(path, "wb") as f:
        f.write(b"not an LMDB " * 4096)


@pytest.mark.parametrize("damage", [_truncate, _foreign], ids=["truncated", "foreign"])
def test_a_damaged_lmdb_is_refused_in_one_line_naming_it(checkout, tmp_path, capsys, damage):
    """A truncated data.mdb ended the process with SIGBUS (memory-mapped pages past the file's end) and no
    line at all; a file that is no LMDB is refused too. The truncated one in a child process: a SIGBUS
    there would end pytest."""
    import shutil
    import subprocess
    import sys

    lmdb_dir = tmp_path / "lmdb"
    shutil.copytree(os.path.join(checkout, "datasets", "lmdb", f"{NAME}_lmdb"), lmdb_dir / f"{NAME}_lmdb")
    data = lmdb_dir / f"{NAME}_lmdb" / "data.mdb"
    damage(data)
    logs = tmp_path / "logs"
    argv = ["train", "--detector_path", "clip_enhanced_demo", "--dfb_config", checkout, "--device", "cpu",
            "--train_dataset", NAME, "--test_dataset", NAME, "--log_dir", str(logs), "--opt", f"lmdb_dir={lmdb_dir}"]
    if damage is _truncate:
        done = subprocess.run([sys.executable, "-m", "declip_plugin", *argv], capture_output=True, text=True,
                              timeout=300)
        code, err = done.returncode, done.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err[-3000:]
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if damage is _truncate:
        assert line.startswith(f"error: LMDB {data} is truncated: {os.path.getsize(data)} bytes, but its header "
                               "says "), line
    else:
        assert line.startswith(f"error: LMDB {data.parent} cannot be opened (") and "MDB_INVALID" in line, line
    assert "dataset2lmdb_test.py" in line and "lmdb: false" in line
    assert not logs.exists()


def test_declip_datasets_says_where_each_standard_set_is_expected(tmp_path, capsys):
    assert main(["datasets", "--data_root", str(tmp_path)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(STANDARD) <= set(rows)
    assert f"JSON {tmp_path}/dataset_json/Celeb-DF-v2.json (missing); frames {tmp_path}/rgb (missing)" in rows["Celeb-DF-v2"]
    assert rows["Celeb-DF-v2"].split()[1:3] == ["deepfakebench_json", "missing"]


def test_bundled_detector_yamls_name_declared_datasets():
    declared = set(list_datasets())
    unknown = []
    for path in sorted(glob.glob(os.path.join(str(configs_dir()), "detector", "*.yaml"))):
        cfg = yaml.safe_load(open(path))
        for k in ("train_dataset", "val_dataset", "test_dataset", "in_domain", "all_dataset"):
            names = cfg.get(k) or []
            unknown += [(os.path.basename(path), k, n) for n in ([names] if isinstance(names, str) else names)
                        if n not in declared]
    assert unknown == []
    assert set(STANDARD) <= declared


def test_bundled_label_dict_is_deepfakebenchs(checkout):
    bundled = yaml.safe_load(open(os.path.join(str(configs_dir()), "dataset", "deepfakebench.yaml")))
    theirs = yaml.safe_load(open(os.path.join(checkout, "training", "config", "test_config.yaml")))
    assert bundled["defaults"]["label_dict"] == theirs["label_dict"]
    assert {s["dataset"] for s in bundled["datasets"].values()} == set(STANDARD) == set(bundled["datasets"])


def per_image(run_dir):
    import csv

    with open(os.path.join(run_dir, "test", NAME, "per_image.csv")) as f:
        return {row["path"]: (int(row["label"]), float(row["score"])) for row in csv.DictReader(f)}


def test_train_and_test_read_a_deepfakebench_checkouts_lmdb(checkout, tmp_path):
    """`declip train` / `declip test` with --dfb_config: DeepfakeBench's own configs (lmdb: True)."""
    common = ["--detector_path", "clip_enhanced_demo", "--dfb_config", checkout, "--device", "cpu",
              "--opt", "train_batchSize=16"]
    assert main(["train", *common, "--train_dataset", NAME, "--test_dataset", NAME, "--log_dir", str(tmp_path / "train"),
                 "--opt", "nEpochs=1"]) == 0
    (run,) = glob.glob(str(tmp_path / "train" / "clip_enhanced_demo_*"))
    trained = per_image(run)
    assert len(trained) == 2 * VIDEOS * FRAMES
    assert all(p.startswith(os.path.join(checkout, "datasets", "lmdb", f"{NAME}_lmdb[")) for p in trained)
    assert main(["test", *common, "--test_dataset", NAME, "--weights_path", os.path.join(run, "ckpt_best.pth"),
                 "--log_dir", str(tmp_path / "test")]) == 0
    (tested,) = glob.glob(str(tmp_path / "test" / "clip_enhanced_demo_*"))
    again = per_image(tested)
    assert again.keys() == trained.keys()
    assert all(abs(again[k][1] - trained[k][1]) < 1e-5 and again[k][0] == trained[k][0] for k in trained)
