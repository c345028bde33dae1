"""One input of ``declip prepare`` into DeepfakeBench's layout, and the marker that says it is done.

For a video (or image, or folder of frames) of label L and name V the sampled frames become::

    <out>/rgb/<NAME>/<NAME>_<real|fake>/frames/V/<i>.png        the face crop (or the whole frame), i = frame index, 3 digits
    <out>/rgb/<NAME>/<NAME>_<real|fake>/masks/V/<i>.png         its mask, warped like the frame, 0/255 (mask > 1 -> 255)
    <out>/rgb/<NAME>/<NAME>_<real|fake>/landmarks/V/<i>.npy     68 landmarks on the crop, int64 (68, 2)

as DeepfakeBench's preprocess.py writes them (frames without a face are skipped). The frame files are
plain writes; what makes a video count as done is its marker, ``<out>/.prepare/<NAME>/done/<label
folder>/V.json``, written atomically after every file of the video: a run killed in the middle leaves
a video without a marker, whose files the next run removes and writes again. A video without a face
in any frame gets a marker too (with no frames): it is listed and left out of the dataset, and not
tried again. A video that cannot be read gets none: the next run tries it again.
"""
import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Optional

import cv2
import numpy as np

from ..atomicio import atomic_write_text
from ..errors import DataError
from .. import deepfakebench_facts as facts
from ..media import Sampling, open_frames
from ..media.faces import DEFAULT_MARGIN, DEFAULT_SIZE

logger = logging.getLogger(__name__)

LANDMARKS_DIR = "landmarks"
STATE_DIR = ".prepare"
MASK_THRESHOLD = 1  # preprocess.py: cv2.threshold(mask, 1, 255, THRESH_BINARY)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What decides the files of a video: a rerun must use the same (checked against the state folder)."""

    faces: str = "dlib"
    size: int = DEFAULT_SIZE
    margin: float = DEFAULT_MARGIN
    mode: str = Sampling.mode
    num_frames: int = Sampling.num_frames
    stride: int = Sampling.stride
    model: Optional[str] = None  # the landmark model file (faces: dlib)

    def sampling(self):
        return Sampling(self.mode, self.num_frames, self.stride)

    def record(self):
        """The settings as the state folder records them (the model by file name and size)."""
        out = dataclasses.asdict(self)
        if self.faces == "none":
            out.update(size=None, margin=None, model=None)
        elif self.model:
            out["model"] = f"{os.path.basename(self.model)} ({os.path.getsize(self.model)} bytes)"
        return out


@dataclasses.dataclass(frozen=True)
class Tree:
    """Where the files of dataset ``name`` go under ``out``; ``labels`` the folders (and JSON labels) of
    real and fake inputs (export.label_names: ``<name>_real``, ``<name>_fake``)."""

    out: str
    name: str
    labels: tuple

    @property
    def rgb_root(self):
        return os.path.join(self.out, "rgb", self.name)

    @property
    def state(self):
        return os.path.join(self.out, STATE_DIR, self.name)

    @property
    def settings_file(self):
        return os.path.join(self.state, "settings.json")

    def label_folder(self, label):
        return self.labels[1 if label else 0]

    def folder(self, item, kind):
        return os.path.join(self.rgb_root, self.label_folder(item.label), kind, item.name)

    def marker(self, item):
        return os.path.join(self.state, "done", self.label_folder(item.label), item.name + ".json")

    def clear(self, item):
        for kind in (facts.FRAMES_DIR, facts.MASKS_DIR, LANDMARKS_DIR):
            shutil.rmtree(self.folder(item, kind), ignore_errors=True)


def read_marker(tree, item, source_key):
    """The marker of ``item`` if it is done (for the same source file), else None."""
    try:
        with open(tree.marker(item), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("source") == source_key else None


def source_key(item):
    """What identifies the source of a marker: its path, size and modification time."""
    first = item.path[0] if isinstance(item.path, tuple) else item.path
    st = os.stat(first)
    count = len(item.path) if isinstance(item.path, tuple) else 1
    return f"{first}|{count}|{st.st_size}|{int(st.st_mtime)}"


def _png(path, bgr_or_gray):
    ok, buf = cv2.imencode(".png", bgr_or_gray)
    if not ok:
        raise DataError(f"cannot encode {path} as PNG")
    with open(path, "wb") as f:
        f.write(buf.tobytes())


class ItemWriter:
    """Writes the frames of one item; ``aligner`` is a FaceAligner (None: whole frames)."""

    def __init__(self, tree, item, aligner):
        self.tree, self.item, self.aligner = tree, item, aligner
        self.dirs = {k: tree.folder(item, k) for k in (facts.FRAMES_DIR, facts.MASKS_DIR, LANDMARKS_DIR)}
        self.written, self.no_face, self.sizes = {}, [], set()

    def add(self, index, rgb, mask):
        self.sizes.add((rgb.shape[1], rgb.shape[0]))
        if self.aligner is not None:
            face = self.aligner.align(rgb, mask)
            if face is None:
                self.no_face.append(index)
                return
            rgb, mask, landmarks = face.image, face.mask, face.landmarks
        else:
            landmarks = None
        stem = f"{index:03d}"
        os.makedirs(self.dirs[facts.FRAMES_DIR], exist_ok=True)
        _png(os.path.join(self.dirs[facts.FRAMES_DIR], stem + ".png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if mask is not None:
            os.makedirs(self.dirs[facts.MASKS_DIR], exist_ok=True)
            binary = np.where(mask > MASK_THRESHOLD, 255, 0).astype(np.uint8)
            _png(os.path.join(self.dirs[facts.MASKS_DIR], stem + ".png"), binary)
        if landmarks is not None:
            os.makedirs(self.dirs[LANDMARKS_DIR], exist_ok=True)
            np.save(os.path.join(self.dirs[LANDMARKS_DIR], stem + ".npy"), landmarks)
        self.written[index] = mask is not None

    def keep_only(self, indices):
        """Remove the frames outside the final sample (read before a lying header was found out)."""
        keep = set(indices)
        for index in [i for i in self.written if i not in keep]:
            for kind, ext in ((facts.FRAMES_DIR, ".png"), (facts.MASKS_DIR, ".png"), (LANDMARKS_DIR, ".npy")):
                path = os.path.join(self.dirs[kind], f"{index:03d}{ext}")
                if os.path.exists(path):
                    os.unlink(path)
            del self.written[index]
        self.no_face = [i for i in self.no_face if i in keep]


def process_item(tree, item, settings, aligner):
    """Write one item and its marker; returns the marker (``status`` done | no_face) or, when the item
    cannot be read, ``{'status': 'failed', 'error': one line}`` (nothing counted as done)."""
    t0 = time.perf_counter()
    key = source_key(item)
    tree.clear(item)  # what an unfinished earlier run left
    writer = ItemWriter(tree, item, aligner)
    frames = open_frames(item.path, settings.sampling(), item.mask, kind=item.kind)
    try:
        for index, rgb, mask in frames:
            writer.add(index, rgb, mask)
    except (DataError, cv2.error) as e:
        tree.clear(item)
        return {"status": "failed", "input": item.shown, "error": " ".join(str(e).split())}
    if frames.decoded == 0:
        tree.clear(item)
        return {"status": "failed", "input": item.shown,
                "error": f"{_path_of(item)}: no frame decodes (a video without frames, or a corrupt one)"}
    writer.keep_only(frames.indices)
    marker = {
        "status": "done" if writer.written else "no_face", "input": item.shown, "source": key,
        "frames": sorted(writer.written), "masks": any(writer.written.values()), "no_face": sorted(writer.no_face),
        "sampled": len(frames.indices), "decoded": frames.decoded, "header": frames.header, "passes": frames.passes,
        "sizes": sorted(writer.sizes), "seconds": round(time.perf_counter() - t0, 3),
    }
    if not writer.written:
        tree.clear(item)
    atomic_write_text(tree.marker(item), json.dumps(marker, indent=1))
    return marker


def _path_of(item):
    return os.path.dirname(item.path[0]) if isinstance(item.path, tuple) else item.path


def write_settings(tree, settings):
    atomic_write_text(tree.settings_file, json.dumps(settings.record(), indent=1, sort_keys=True))


def recorded_settings(tree):
    try:
        with open(tree.settings_file, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


__all__ = ["Settings", "Tree", "ItemWriter", "process_item", "read_marker", "source_key", "write_settings",
           "recorded_settings", "LANDMARKS_DIR"]
