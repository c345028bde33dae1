"""A procedural demo *video* set in DeepfakeBench's JSON + frames/masks layout, where time matters.

``make_demo_videos(out_dir)`` writes::

    <out>/dataset_json/DemoVideo.json                              DeepfakeBench dataset JSON
    <out>/rgb/DemoVideo/DemoVideo_real/frames/<vid>/<t>.png        real videos
    <out>/rgb/DemoVideo/DemoVideo_flicker/frames/<vid>/<t>.png     manipulated videos
    <out>/rgb/DemoVideo/DemoVideo_flicker/masks/<vid>/<t>.png      their masks per frame (white = manipulated)
    <out>/demo_video.json                                          manifest (parameters, counts)

``configs/dataset/demo_video.yaml`` declares it as ``demo-video`` (``root: demo_video`` under the
data root). With ``methods`` naming more manipulations (:data:`METHODS`), each is written beside the
flicker under ``DemoVideo_<method>/`` and gets its own JSON ``dataset_json/DemoVideo-<method>.json``
(the real videos and that manipulation: datasets ``demo-video-<method>``), so a detector trained on one
manipulation can be tested on the others (the ``demo-video`` protocol preset). The frame paths in the JSON are relative to ``<out>`` (``rgb/DemoVideo/...``); with
``paths_base`` they are written as ``./<path relative to paths_base>`` instead, the form a real
DeepfakeBench checkout reads when its scripts run from ``paths_base``.

Every video is a procedural image (the generator of :mod:`declip_plugin.data.demo`) seen through a
slowly drifting camera (sub-pixel translation per frame), with a global gain that jitters per frame
and fresh sensor noise in every frame. Every video, real or fake, has one feathered elliptical region
whose brightness is offset by ``A`` grey levels (``A`` in [20, 40], random sign):

* **real**: the offset is constant over time (a static local lighting difference);
* **fake** (``flicker``): the offset's sign is drawn anew in every frame, so the region flickers
  while the rest of the video stays consistent. Its mask (the region) is written per frame.
* **fake** (``jitter``): the offset is constant, but the region jumps by a few pixels in a random
  direction every frame instead of following the camera (a pasted region that does not track).
* **fake** (``freeze``): the offset is constant and the region's pixels are frozen: the same content,
  noise included, in every frame while the camera drifts and the noise changes around it.

A single frame of either class shows the same kind of region with the same offset distribution, so
a frame-level detector can only separate them by chance; the difference is purely temporal (how
the region behaves from frame to frame). The videos come in pairs, as FaceForensics++'s fakes come
from its real videos: the real video ``i`` of a split and the fake video ``i`` of every method share
their scene, region, camera path, gain and sensor noise (drawn from a Generator seeded by (seed,
split, index)); only the manipulation's own draws (seeded by (seed, label, split, index)) differ. A
detector cannot tell the classes apart by remembering scenes, only by what happens over time. The
same seed gives byte-identical files.
"""
import json
import logging
import os
import shutil
import time
import zlib

import cv2
import numpy as np

from ..atomicio import atomic_write_bytes, staging_dir, swap_in
from ..errors import DataError
from .demo import base_image

logger = logging.getLogger(__name__)

NAME = "DemoVideo"
REAL, FAKE = f"{NAME}_real", f"{NAME}_flicker"
METHODS = ("flicker", "jitter", "freeze")
JITTER_PX = 3
MANIFEST = "demo_video.json"
SPLITS = ("train", "val", "test")
OFFSET = (20.0, 40.0)
SCENE = "scene"  # the Generator key of what a real video and its fakes share
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def _rng(seed, label, split, index):
    return np.random.default_rng([int(seed), zlib.crc32(label.encode()), zlib.crc32(split.encode()), int(index)])


def _png(path, array):
    """A frame or mask file (plain write: the set is written whole into a staging folder and swapped
    in once complete, see :func:`make_demo_videos`)."""
    ok, buf = cv2.imencode(".png", array, _PNG)
    if not ok:
        raise DataError(f"cannot encode {path}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(buf.tobytes())


def render_video(rng, size, n_frames, fake, method="flicker", manip=None):
    """``(frames, masks)``: n_frames RGB uint8 (size, size, 3) and uint8 {0, 255} (size, size) masks;
    ``method`` (one of :data:`METHODS`) is the manipulation of a fake video. ``rng`` draws the scene,
    region, camera path, gain and noise; ``manip`` (default: ``rng``) the manipulation's own draws, so
    that a real and a fake video rendered from Generators in the same state differ in those alone."""
    manip = rng if manip is None else manip
    if fake and method not in METHODS:
        raise DataError(f"unknown demo video method {method!r}; available: {', '.join(METHODS)}")
    margin = size // 4
    big = size + 2 * margin
    scene = base_image(rng, big).astype(np.float32)
    region = np.zeros((big, big), np.uint8)
    center = (int(rng.uniform(margin + size * 0.25, margin + size * 0.75)),
              int(rng.uniform(margin + size * 0.25, margin + size * 0.75)))
    axes = (int(rng.uniform(size / 5, size / 3)), int(rng.uniform(size / 5, size / 3)))
    cv2.ellipse(region, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    alpha = cv2.GaussianBlur(region.astype(np.float32) / 255.0, (0, 0), 1.2)[..., None]
    amplitude = float(rng.uniform(*OFFSET))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    velocity = rng.uniform(-0.2, 0.2, 2)
    noise = float(rng.uniform(2.0, 4.0))
    frames, masks, frozen, offset = [], [], None, np.zeros(2)
    for t in range(n_frames):
        s = (1.0 if manip.random() < 0.5 else -1.0) if fake and method == "flicker" else sign
        img = scene + (s * amplitude) * alpha
        img = img * np.float32(1.0 + rng.normal(0.0, 0.01))
        shift = np.array([[1.0, 0.0, -margin + velocity[0] * t], [0.0, 1.0, -margin + velocity[1] * t]], np.float32)
        frame = cv2.warpAffine(img, shift, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        frame += np.float32(noise) * rng.standard_normal(frame.shape, dtype=np.float32)
        m = cv2.warpAffine(region, shift, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
        if fake and method == "jitter":  # the region (offset and its content) jumps off the camera's path
            offset = manip.uniform(-JITTER_PX, JITTER_PX, 2) if t else offset
            move = np.array([[1.0, 0.0, offset[0]], [0.0, 1.0, offset[1]]], np.float32)
            patch = cv2.warpAffine(frame, move, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            m = cv2.warpAffine(m, move, (size, size), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
            a = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 1.2)[..., None]
            frame = a * patch + (1 - a) * frame
        elif fake and method == "freeze":  # the region's pixels of frame 0, in every frame
            a = cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 1.2)[..., None]
            frozen = frame.copy() if frozen is None else frozen
            frame = a * frozen + (1 - a) * frame
        frames.append(np.clip(np.rint(frame), 0, 255).astype(np.uint8))
        masks.append(m if fake else np.zeros_like(m))
    return frames, masks


def make_demo_videos(out_dir, seed=0, size=64, n_frames=16, n_train=100, n_val=20, n_test=40, paths_base=None,
                     overwrite=True, methods=("flicker",)):
    """Write the demo video set (``n_*`` videos per label and split); returns the manifest dict.

    ``methods``: the manipulations (:data:`METHODS`), each ``n_*`` fake videos per split. The first is
    paired with the real videos in ``DemoVideo.json``; every one in ``DemoVideo-<method>.json``.

    The whole set (frames, JSONs, manifest) is written into a staging folder inside ``out_dir`` and
    then swapped in for the previous one: a rerun never leaves a JSON of an earlier run pointing at
    frames it removed (e.g. ``DemoVideo-jitter.json`` after a rerun without ``jitter``), and a killed
    run leaves the previous set as it was."""
    methods = tuple(methods)
    if n_frames < 2 or size < 16:
        raise DataError(f"demo videos need at least 2 frames of 16 px (got n_frames={n_frames}, size={size})")
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise DataError(f"demo video methods {', '.join(bad) or '(none)'}: choose from {', '.join(METHODS)}")
    t0 = time.perf_counter()
    out = os.path.abspath(os.path.expanduser(str(out_dir)))
    rgb = os.path.join(out, "rgb", NAME)
    if os.path.exists(rgb) and not overwrite:
        raise DataError(f"{rgb} exists; remove it or pass overwrite")
    base = os.path.abspath(os.path.expanduser(str(paths_base))) if paths_base else None
    json_dir = os.path.join(out, "dataset_json")
    stage = staging_dir(out, "demo-video")
    try:
        counts = {"train": n_train, "val": n_val, "test": n_test}
        tree, files = _write_frames(out, stage, base, seed, size, n_frames, counts, methods)
        jsons = _write_jsons(tree, methods, json_dir, os.path.join(stage, "dataset_json"))
        manifest = {"name": NAME, "labels": {REAL: 0, **{f"{NAME}_{m}": 1 for m in methods}},
                    "methods": list(methods), "seed": seed, "size": size, "n_frames": n_frames,
                    "videos_per_label": counts, "files": files, "json": jsons[NAME], "jsons": jsons,
                    "paths_base": base, "seconds": round(time.perf_counter() - t0, 2)}
        atomic_write_bytes(os.path.join(stage, MANIFEST), json.dumps(manifest, indent=1).encode("utf-8"))
        swap_in(stage, out, [rgb, json_dir, os.path.join(out, MANIFEST)])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info("demo videos: %d files in %s (%.1fs)", files, out, manifest["seconds"])
    return manifest


def _write_frames(out, stage, base, seed, size, n_frames, counts, methods):
    """Render every video into ``stage`` (the same layout as ``out``); returns (JSON tree, files written).
    The JSON's frame paths name the frames' final places under ``out``."""
    def key(path):
        if base is None:
            return os.path.relpath(path, out).replace(os.sep, "/")
        return "./" + os.path.relpath(path, base).replace(os.sep, "/")

    rgb = os.path.join(out, "rgb", NAME)
    labels = [(REAL, None)] + [(f"{NAME}_{m}", m) for m in methods]
    tree = {label: {s: {} for s in SPLITS} for label, _ in labels}
    files = 0
    for split in SPLITS:
        for label, method in labels:
            for i in range(counts[split]):
                vid = f"{'f' if method else 'r'}{split[:2]}{i:03d}"
                tree[label][split][vid] = {"label": label, "frames": []}
                frames, masks = render_video(_rng(seed, SCENE, split, i), size, n_frames, method is not None,
                                             method or "flicker", manip=_rng(seed, label, split, i))
                for t, (frame, mask) in enumerate(zip(frames, masks)):
                    fpath = os.path.join(rgb, label, "frames", vid, f"{t:03d}.png")
                    _png(os.path.join(stage, os.path.relpath(fpath, out)), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                    files += 1
                    if method:
                        mpath = os.path.join(rgb, label, "masks", vid, f"{t:03d}.png")
                        _png(os.path.join(stage, os.path.relpath(mpath, out)), mask)
                        files += 1
                    tree[label][split][vid]["frames"].append(key(fpath))
    return tree, files


def _write_jsons(tree, methods, json_dir, staged_dir):
    """The dataset JSONs (staged); returns {dataset name: its final path}."""
    jsons = {}
    for i, method in enumerate(methods):
        fake = f"{NAME}_{method}"
        names = ([NAME] if i == 0 else []) + [f"{NAME}-{method}"]
        for name in names:
            atomic_write_bytes(os.path.join(staged_dir, f"{name}.json"),
                               json.dumps({name: {REAL: tree[REAL], fake: tree[fake]}}, indent=1).encode("utf-8"))
            jsons[name] = os.path.join(json_dir, f"{name}.json")
    return jsons


__all__ = ["make_demo_videos", "render_video", "NAME", "REAL", "FAKE", "METHODS"]
