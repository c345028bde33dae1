"""A small dataset prepared the way DeepfakeBench's own preprocessing prepares one, for the tests.

``prepare(root)`` lays out a DeepfakeBench checkout's data folders under ``root`` and runs the
checkout's own writer scripts on them, from the snapshot (only these files are unpacked):

* ``preprocessing/rearrange.py`` (dataset UADFV, ``dataset_root_path: ''`` run from ``rgb_dir``, so
  frame paths are relative to ``rgb_dir``: ``UADFV/fake/frames/v0/000.png``) writes
  ``preprocessing/dataset_json/UADFV.json``. It imports pandas at the top and uses it only for DFDC;
  the project's environment has no pandas, so an empty ``pandas`` module is put on the child's
  PYTHONPATH (its UADFV branch never touches it).
* ``preprocessing/dataset2lmdb_test.py --dataset_size 1``, run from the checkout root as its README
  says, writes ``datasets/lmdb/UADFV_lmdb``.
* ``training/config/train_config.yaml`` / ``test_config.yaml`` are the checkout's own (``lmdb: True``,
  ``./datasets/rgb``, ``./datasets/lmdb``, ``./preprocessing/dataset_json``, its label_dict).

Frames: ``VIDEOS`` videos per label of ``FRAMES`` PNG frames (``SIZE`` px); the value of frame ``t``
of video ``v`` encodes both (:func:`frame_pixels`); fake frames have masks (a square, white =
manipulated). Video names avoid "video": the LMDB writer skips any folder whose path contains it.
"""
import os
import shutil
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import yaml

from tests.dfb_support import missing, snapshot

NAME = "UADFV"
LABELS = {"real": "UADFV_Real", "fake": "UADFV_Fake"}
VIDEOS = 3
FRAMES = 10
SIZE = 24
MEMBERS = ("preprocessing/rearrange.py", "preprocessing/dataset2lmdb_test.py",
           "training/config/train_config.yaml", "training/config/test_config.yaml")


def frame_pixels(kind, video, t):
    """An RGB frame whose channels encode (kind, video, frame index)."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[..., 0] = 10 * t
    img[..., 1] = 40 * video + 7
    img[..., 2] = 200 if kind == "fake" else 50
    img[::3, ::3, 0] += 1  # some texture, so that a decoder's choices show
    return img


def _unpack(root):
    """The writer scripts and host configs from $DEEPFAKEBENCH_ROOT or the snapshot."""
    checkout = os.environ.get("DEEPFAKEBENCH_ROOT")
    if checkout and all(os.path.isfile(os.path.join(checkout, m)) for m in MEMBERS):
        for m in MEMBERS:
            os.makedirs(os.path.dirname(os.path.join(root, m)), exist_ok=True)
            shutil.copyfile(os.path.join(checkout, m), os.path.join(root, m))
        return
    tar = snapshot("DeepfakeBench")
    if tar is None:
        missing("no DeepfakeBench snapshot (../shared/reference) and no DEEPFAKEBENCH_ROOT: its writer scripts are needed")
    with tarfile.open(tar) as t:
        for m in MEMBERS:
            member = t.getmember(f"DeepfakeBench/{m}")
            os.makedirs(os.path.dirname(os.path.join(root, m)), exist_ok=True)
            with t.extractfile(member) as src, open(os.path.join(root, m), "wb") as dst:
                shutil.copyfileobj(src, dst)


def _write_frames(rgb):
    for kind in ("real", "fake"):
        for v in range(VIDEOS):
            frames = os.path.join(rgb, NAME, kind, "frames", f"v{v}")
            os.makedirs(frames, exist_ok=True)
            for t in range(FRAMES):
                cv2.imwrite(os.path.join(frames, f"{t:03d}.png"), cv2.cvtColor(frame_pixels(kind, v, t), cv2.COLOR_RGB2BGR))
                if kind == "fake":
                    masks = os.path.join(rgb, NAME, kind, "masks", f"v{v}")
                    os.makedirs(masks, exist_ok=True)
                    mask = np.zeros((SIZE, SIZE), np.uint8)
                    mask[t % 8: t % 8 + 12, 4:16] = 255
                    cv2.imwrite(os.path.join(masks, f"{t:03d}.png"), mask)


def _run(args, cwd, env=None):
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def prepare(root):
    """Build the checkout-shaped folder ``root`` (see the module docstring); returns it."""
    root = str(root)
    _unpack(root)
    rgb = os.path.join(root, "datasets", "rgb")
    _write_frames(rgb)
    json_dir = os.path.join(root, "preprocessing", "dataset_json")
    os.makedirs(json_dir, exist_ok=True)
    stubs = os.path.join(root, "stubs")
    os.makedirs(stubs, exist_ok=True)
    with open(os.path.join(stubs, "pandas.py"), "w") as f:
        f.write('"""Stands in for pandas, which rearrange.py imports but does not use for UADFV."""\n')
    rearrange_cfg = {"rearrange": {"dataset_name": {"default": NAME}, "dataset_root_path": {"default": ""},
                                   "output_file_path": {"default": json_dir}, "comp": {"default": "c23"},
                                   "perturbation": {"default": "end_to_end"}}}
    with open(os.path.join(rgb, "config.yaml"), "w") as f:  # rearrange.py reads ./config.yaml
        yaml.safe_dump(rearrange_cfg, f)
    env = {**os.environ, "PYTHONPATH": stubs}
    _run([os.path.join(root, "preprocessing", "rearrange.py")], cwd=rgb, env=env)
    os.remove(os.path.join(rgb, "config.yaml"))
    lmdb_cfg = {"to_lmdb": {"dataset_name": {"default": NAME}, "dataset_root_path": {"default": "./datasets/rgb"},
                            "output_lmdb_dir": {"default": "./datasets/lmdb"}, "comp": {"default": "c23"}}}
    with open(os.path.join(root, "preprocessing", "config.yaml"), "w") as f:  # dataset2lmdb_test.py's
        yaml.safe_dump(lmdb_cfg, f)
    _run(["preprocessing/dataset2lmdb_test.py", "--dataset_size", "1"], cwd=root)
    return root
