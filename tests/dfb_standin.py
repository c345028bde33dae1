"""A tiny stand-in of DeepfakeBench's prepared data under its standard dataset names (the ff-cross preset's).

``make_standin(root)`` lays out a DeepfakeBench checkout's data as its preprocessing leaves it
(DESIGN.md sections 12 and 15)::

    <root>/training/config/train_config.yaml         lmdb: True, ./datasets/rgb, ./datasets/lmdb,
                                                     ./preprocessing/dataset_json, label_dict
    <root>/preprocessing/dataset_json/<name>.json    {name: {label: {split: [c23:] {video: {label, frames}}}}}
    <root>/datasets/rgb/<folder>/.../frames/<video>/<t>.png
    <root>/datasets/lmdb/<name>_lmdb                 one per dataset folder; FaceForensics++_lmdb holds
                                                     FaceForensics++, FaceShifter and DeepFakeDetection

JSON frame paths are written as DeepfakeBench distributes them (``FaceForensics++\\original_sequences\\...``,
backslashes, relative to rgb_dir); the LMDB keys as its dataset2lmdb_test.py writes them on Linux
(``<folder>\\`` + the path under the folder with "/"). Frames: the demo video generator's
(data/demo_video.py): real videos, and fakes whose local region flickers. FaceForensics++ has train,
val and test splits; every other set a test split only.
"""
import json
import os

import cv2
import yaml

from declip_plugin.data.demo_video import render_video

C23 = "c23"
# name -> (its folder under rgb_dir, {JSON label: (path under the folder, fake?)}, FaceForensics++-style
# JSON with a compression level): DeepfakeBench's label names (its test_config.yaml label_dict)
SETS = {
    "FaceForensics++": ("FaceForensics++", {"FF-real": ("original_sequences/youtube/c23", False),
                                            "FF-DF": ("manipulated_sequences/Deepfakes/c23", True),
                                            "FF-F2F": ("manipulated_sequences/Face2Face/c23", True)}, True),
    "FaceShifter": ("FaceForensics++", {"FF-real": ("original_sequences/youtube/c23", False),
                                        "FF-FH": ("manipulated_sequences/FaceShifter/c23", True)}, True),
    "DeepFakeDetection": ("FaceForensics++", {"DFD_real": ("original_sequences/actors/c23", False),
                                              "DFD_fake": ("manipulated_sequences/DeepFakeDetection/c23", True)}, True),
    "DFDC": ("DFDC", {"DFDC_Real": ("test/real", False), "DFDC_Fake": ("test/fake", True)}, False),
    "DFDCP": ("DFDCP", {"DFDCP_Real": ("original_videos", False), "DFDCP_FakeA": ("method_A", True),
                        "DFDCP_FakeB": ("method_B", True)}, False),
    "UADFV": ("UADFV", {"UADFV_Real": ("real", False), "UADFV_Fake": ("fake", True)}, False),
    "Celeb-DF-v2": ("Celeb-DF-v2", {"CelebDFv2_real": ("Celeb-real", False),
                                    "CelebDFv2_fake": ("Celeb-synthesis", True)}, False),
    "Celeb-DF-v1": ("Celeb-DF-v1", {"CelebDFv1_real": ("Celeb-real", False),
                                    "CelebDFv1_fake": ("Celeb-synthesis", True)}, False),
    "DeeperForensics-1.0": ("DeeperForensics-1.0", {"DF_real": ("source_videos", False),
                                                    "DF_fake": ("manipulated_videos", True)}, False),
}
TRAIN_SET = "FaceForensics++"


def _videos(name, split, n):
    return [f"{name[:3].lower()}{split[:2]}{i:02d}" for i in range(n)]


def _write_video(rgb, folder, sub, vid, fake, seed, size, frames):
    """The PNG frames of one video (written once: sets share FaceForensics++'s real videos); their JSON paths."""
    import numpy as np

    rng = np.random.default_rng([seed, sum(map(ord, sub + vid)), int(fake)])
    paths = []
    images, _ = render_video(rng, size, frames, fake)
    for t, img in enumerate(images):
        rel = f"{folder}/{sub}/frames/{vid}/{t:03d}.png"
        path = os.path.join(rgb, *rel.split("/"))
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(rel.replace("/", "\\"))
    return paths


def _write_json(json_dir, name, tree):
    with open(os.path.join(json_dir, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump({name: tree}, f)


def _write_lmdbs(root, folders):
    """``<folder>_lmdb`` of every dataset folder: each file under it, keyed as DeepfakeBench's writer keys it."""
    import lmdb

    rgb = os.path.join(root, "datasets", "rgb")
    for folder in folders:
        env = lmdb.open(os.path.join(root, "datasets", "lmdb", f"{folder}_lmdb"), map_size=1 << 27)
        with env.begin(write=True) as txn:
            for d, _, files in os.walk(os.path.join(rgb, folder)):
                for n in files:
                    rel = os.path.relpath(os.path.join(d, n), os.path.join(rgb, folder)).replace(os.sep, "/")
                    with open(os.path.join(d, n), "rb") as f:
                        txn.put(f"{folder}\\{rel}".encode("utf-8"), f.read())
        env.close()


def make_standin(root, sets=tuple(SETS), seed=0, size=32, frames=8, train_videos=3, test_videos=1):
    """The stand-in checkout ``root`` with the datasets ``sets`` (see the module docstring); returns the path
    of its ``training/config/train_config.yaml`` (what --dfb_config takes)."""
    root = str(root)
    rgb, json_dir = os.path.join(root, "datasets", "rgb"), os.path.join(root, "preprocessing", "dataset_json")
    os.makedirs(json_dir, exist_ok=True)
    labels = {}
    for name in sets:
        folder, by_label, ffpp = SETS[name]
        splits = {"train": train_videos, "val": 1, "test": test_videos} if name == TRAIN_SET else {"test": test_videos}
        tree = {}
        for label, (sub, fake) in by_label.items():
            labels[label] = int(fake)
            for split, n in splits.items():
                videos = {vid: {"label": label, "frames": _write_video(rgb, folder, sub, vid, fake, seed, size, frames)}
                          for vid in _videos(name if fake else folder, split, n)}
                tree.setdefault(label, {})[split] = {C23: videos} if ffpp else videos
        _write_json(json_dir, name, tree)
    os.makedirs(os.path.join(root, "datasets", "lmdb"), exist_ok=True)
    _write_lmdbs(root, sorted({SETS[name][0] for name in sets}))
    config = os.path.join(root, "training", "config", "train_config.yaml")
    os.makedirs(os.path.dirname(config), exist_ok=True)
    with open(config, "w", encoding="utf-8") as f:
        yaml.safe_dump({"lmdb": True, "rgb_dir": "./datasets/rgb", "lmdb_dir": "./datasets/lmdb",
                        "dataset_json_folder": "./preprocessing/dataset_json", "label_dict": labels}, f)
    return config
