"""A small synthetic localization dataset in the Dolos layout, for demos, tests and smoke runs.

``make_demo_data(out_dir)`` writes::

    <out>/celebahq/fake/<method>/images/{train,valid,test}/NNNN.png
    <out>/celebahq/fake/<method>/masks/{train,valid,test}/NNNN.png   INVERTED (white = untouched)
    <out>/celebahq/real/{train,valid,test}/NNNN.png
    <out>/demo.json    manifest (parameters, counts, mask-area statistics)
    <out>/README.txt

so the ``dolos`` adapter reads it unchanged (configs/dataset/demo.yaml declares ``demo-<method>``
with ``root: demo``).

Every image is procedural: a smooth gradient, random smooth shapes, multi-scale texture and
per-pixel Gaussian "sensor" noise. A manipulated image starts from its own such image and
replaces a free-form region (brush strokes, ellipses and polygons covering about 5-35% of the
area, anywhere in the frame) by one of six fills. They leave three kinds of trace, so that a
model trained on one kind has something to miss on another (the paper's generalisation gap):

* removed texture (the region lacks the original texture and noise, like an inpainter's output):

  * ``telea`` - OpenCV inpainting, Telea's fast-marching method
  * ``ns``    - OpenCV inpainting, Navier-Stokes
  * ``blur``  - the region taken from a strongly Gaussian-blurred copy
  * ``resample`` - the region taken from a 4x down- then up-sampled copy

* added texture: ``noise`` - the region's content smoothed, then re-synthesised with new, stronger
  texture and noise of other statistics (more high-frequency energy inside, not less);
* a resampling fingerprint: ``grid`` - the whole image goes through a 2x down/up-sampling (as an
  autoencoder's decoder leaves it over the full frame, like LDM inpainting) and the region keeps
  its texture but carries a periodic period-4 checkerboard (a transposed-convolution pattern).

Real images are separate samples. Everything is drawn from numpy Generators seeded by
(seed, method, split, index) and written as PNG with fixed settings, so the same seed gives
byte-identical files and another seed different ones.
"""
import json
import logging
import os
import shutil
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from ..atomicio import atomic_write_text, write_png
from ..errors import DataError

logger = logging.getLogger(__name__)

METHODS = ("telea", "ns", "blur", "resample", "noise", "grid")
# the kind of trace each method leaves (tests and docs): texture removed, texture added, periodic pattern
TRACES = {"telea": "removed", "ns": "removed", "blur": "removed", "resample": "removed",
          "noise": "added", "grid": "periodic"}
SOURCE = "celebahq"
SPLIT_DIRS = ("train", "valid", "test")
MANIFEST = "demo.json"
MASK_AREA = (0.05, 0.35)
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3]


def _rng(seed, kind, split, index):
    """An independent generator per image, stable across runs and machines."""
    return np.random.default_rng([int(seed), zlib.crc32(kind.encode()), zlib.crc32(split.encode()), int(index)])


def _smooth_noise(rng, size, cells, channels):
    """Noise on a cells x cells grid, bilinearly upsampled to size x size (zero mean, unit std)."""
    grid = rng.standard_normal((cells, cells, channels), dtype=np.float32)
    out = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR if cells > 4 else cv2.INTER_CUBIC)
    return out.reshape(size, size, channels)


def base_image(rng, size):
    """A procedural RGB uint8 image: gradient + smooth shapes + multi-scale texture + noise."""
    s = size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.float32(np.cos(angle)) * xx + np.float32(np.sin(angle)) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(30, 225, 3).astype(np.float32), rng.uniform(30, 225, 3).astype(np.float32)
    low = 25.0 * _smooth_noise(rng, s, 4, 3)
    layer = cv2.merge([low[..., c] + (c0[c] + (c1[c] - c0[c]) * ramp) for c in range(3)])
    for _ in range(int(rng.integers(4, 10))):
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cx, cy = (int(v) for v in rng.integers(0, s, 2))
        if rng.random() < 0.5:
            axes = (int(rng.integers(s // 16, s // 3)), int(rng.integers(s // 16, s // 3)))
            cv2.ellipse(layer, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
        else:
            k = int(rng.integers(3, 7))
            r = rng.uniform(s / 12, s / 3.5)
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            pts = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(layer, [pts], color, cv2.LINE_AA)
    img = cv2.GaussianBlur(layer, (0, 0), 1.0)

    # multi-scale texture (coarse to fine) and per-pixel Gaussian sensor noise: what the
    # manipulations remove
    strength = np.float32(rng.uniform(0.6, 1.4))
    texture = 6.0 * _smooth_noise(rng, s, max(2, s // 32), 1)
    texture += 7.0 * _smooth_noise(rng, s, max(2, s // 8), 1)
    texture = texture + 6.0 * _smooth_noise(rng, s, max(2, s // 2), 3)
    fine = rng.random((s, s, 1), dtype=np.float32) - np.float32(0.5)
    texture += 40.0 * cv2.GaussianBlur(fine, (0, 0), 0.7)[..., None]
    img += strength * texture
    img += np.float32(rng.uniform(3.0, 7.0)) * rng.standard_normal((s, s, 3), dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _draw_shape(rng, mask, center, scale):
    s = mask.shape[0]
    kind = rng.integers(0, 3)
    cx, cy = center
    if kind == 0:  # brush stroke: a random walk of thick lines
        width = max(2, int(rng.uniform(0.25, 0.6) * scale))
        x, y = cx, cy
        for _ in range(int(rng.integers(2, 6))):
            a = rng.uniform(0, 2 * np.pi)
            step = rng.uniform(0.4, 1.2) * scale
            nx = int(np.clip(x + step * np.cos(a), 0, s - 1))
            ny = int(np.clip(y + step * np.sin(a), 0, s - 1))
            cv2.line(mask, (int(x), int(y)), (nx, ny), 255, width)
            cv2.circle(mask, (nx, ny), width // 2, 255, -1)
            x, y = nx, ny
    elif kind == 1:
        axes = (max(2, int(rng.uniform(0.3, 0.8) * scale)), max(2, int(rng.uniform(0.3, 0.8) * scale)))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    else:
        k = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        rad = rng.uniform(0.3, 0.9, k) * scale
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255)


def free_form_mask(rng, size, area=MASK_AREA):
    """A uint8 mask (255 = manipulated) of strokes/ellipses/polygons covering ~``area`` of the image."""
    s = size
    lo, hi = area
    target = rng.uniform(lo, hi)
    scale = np.sqrt(target) * s * 0.6
    mask = np.zeros((s, s), np.uint8)
    center = rng.uniform(0.15 * s, 0.85 * s, 2)
    for _ in range(60):
        trial = mask.copy()
        _draw_shape(rng, trial, center, scale)
        frac = np.count_nonzero(trial) / trial.size
        if frac <= hi + 0.02:
            mask = trial
            if frac >= target:
                break
        else:
            scale *= 0.7
        # next shape: near the current region, or (sometimes) a separate region
        if rng.random() < 0.25:
            center = rng.uniform(0.1 * s, 0.9 * s, 2)
        else:
            center = np.clip(center + rng.normal(0, scale, 2), 0, s - 1)
    if np.count_nonzero(mask) / mask.size < 0.02:  # practically never; keep the set well-formed
        cv2.circle(mask, (s // 2, s // 2), int(np.sqrt(lo / np.pi) * s) + 1, 255, -1)
    return mask


def _checker(size, period, phase):
    """A +-1 checkerboard of ``period`` pixels (float32, size x size), shifted by ``phase``."""
    idx = (np.arange(size) + phase) // (period // 2)
    return np.where((idx[:, None] + idx[None, :]) % 2 == 0, 1.0, -1.0).astype(np.float32)


def manipulate(img, mask, method, rng=None):
    """Replace the region ``mask`` (uint8, 255 = manipulated) of ``img`` with ``method``'s fill.

    ``noise`` and ``grid`` draw from ``rng`` (a numpy Generator; required for them).
    """
    s = img.shape[0]
    if method in ("noise", "grid") and rng is None:
        raise DataError(f"demo method {method!r} needs a random generator")
    if method == "noise":
        base = cv2.GaussianBlur(img, (0, 0), max(2.0, s / 64)).astype(np.float32)
        grain = 10.0 * _smooth_noise(rng, s, max(2, s // 3), 3)
        grain += np.float32(rng.uniform(14.0, 20.0)) * (rng.random((s, s, 3), dtype=np.float32) - np.float32(0.5)) * 2
        fill = np.clip(np.rint(base + grain), 0, 255).astype(np.uint8)
        return np.where(mask[..., None] > 0, fill, img)
    if method == "grid":
        small = cv2.resize(img, (max(1, s // 2), max(1, s // 2)), interpolation=cv2.INTER_AREA)
        whole = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        pattern = np.float32(rng.uniform(7.0, 11.0)) * _checker(s, 4, int(rng.integers(0, 4)))
        fill = img.astype(np.float32) + pattern[..., None]
        out = np.where(mask[..., None] > 0, fill, whole)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if method == "telea":
        return cv2.inpaint(img, mask, 3, cv2.INPAINT_TELEA)
    if method == "ns":
        return cv2.inpaint(img, mask, 3, cv2.INPAINT_NS)
    if method == "blur":
        fill = cv2.GaussianBlur(img, (0, 0), max(2.0, s / 64))
    elif method == "resample":
        small = cv2.resize(img, (max(1, s // 4), max(1, s // 4)), interpolation=cv2.INTER_AREA)
        fill = cv2.resize(small, (s, s), interpolation=cv2.INTER_CUBIC)
    else:
        raise DataError(f"unknown demo method {method!r}; available: {', '.join(METHODS)}")
    return np.where(mask[..., None] > 0, fill, img)


def _write_png(path, array):
    write_png(path, array, _PNG_PARAMS)


def _write_sample(job):
    """Write one image (and its inverted mask); return the manipulated fraction (None if real)."""
    seed, size, kind, split, i, (img_dir, mask_dir) = job
    rng = _rng(seed, kind, split, i)
    img = base_image(rng, size)
    if kind == "real":
        _write_png(os.path.join(img_dir, f"{i:04d}.png"), img)
        return None
    mask = free_form_mask(rng, size)
    _write_png(os.path.join(img_dir, f"{i:04d}.png"), manipulate(img, mask, kind, rng))
    _write_png(os.path.join(mask_dir, f"{i:04d}.png"), 255 - mask)  # inverted, as Dolos
    return np.count_nonzero(mask) / mask.size


def _prepare(out_dir):
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, MANIFEST)):
            raise DataError(
                f"{out_dir} is not empty and holds no demo set ({MANIFEST} missing); "
                f"choose a new or empty directory"
            )
        shutil.rmtree(os.path.join(out_dir, SOURCE), ignore_errors=True)  # our own previous demo
    os.makedirs(out_dir, exist_ok=True)


def make_demo_data(out_dir, seed=0, size=128, n_train=48, n_val=16, n_test=32, methods=METHODS):
    """Write the demo set to ``out_dir`` and return a summary dict.

    ``n_train``/``n_val``/``n_test`` are the images per split for each method and for the real
    set (so the defaults write 4 x 96 manipulated images with masks and 96 real images).
    An existing demo set in ``out_dir`` is replaced; any other non-empty directory is refused.
    """
    t0 = time.perf_counter()
    out_dir = os.fspath(out_dir)
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise DataError(f"demo image size must be an integer >= 32, got {size!r}")
    counts = dict(zip(SPLIT_DIRS, (n_train, n_val, n_test)))
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"demo image count for {split} must be a positive integer, got {n!r}")
    methods = tuple(methods)
    for m in methods:
        if m not in METHODS:
            raise DataError(f"unknown demo method {m!r}; available: {', '.join(METHODS)}")
    _prepare(out_dir)

    root = os.path.join(out_dir, SOURCE)
    jobs = []
    for split, n in counts.items():
        for kind in ("real",) + methods:
            if kind == "real":
                dirs = (os.path.join(root, "real", split), None)
            else:
                dirs = (os.path.join(root, "fake", kind, "images", split), os.path.join(root, "fake", kind, "masks", split))
            for d in dirs:
                if d:
                    os.makedirs(d, exist_ok=True)
            jobs.extend((seed, size, kind, split, i, dirs) for i in range(n))
    # One generator per image, so the order of execution does not matter. OpenCV and numpy
    # release the GIL; OpenCV's own thread pool is switched off meanwhile (it would compete
    # with ours) and restored afterwards.
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
            areas = [a for a in pool.map(_write_sample, jobs) if a is not None]
    finally:
        cv2.setNumThreads(cv_threads)
    n_files = sum(1 if j[2] == "real" else 2 for j in jobs)

    manifest = {
        "description": "declip_plugin synthetic demo set (Dolos layout)",
        "seed": int(seed),
        "size": int(size),
        "source": SOURCE,
        "methods": list(methods),
        "images_per_split": counts,
        "real_images_per_split": counts,
        "mask_polarity": "inverted (white = untouched, black = manipulated)",
        "mask_area": {
            "min": round(float(np.min(areas)), 4),
            "mean": round(float(np.mean(areas)), 4),
            "max": round(float(np.max(areas)), 4),
        },
        "files": n_files,
    }
    atomic_write_text(os.path.join(out_dir, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    atomic_write_text(os.path.join(out_dir, "README.txt"), _readme(manifest))
    seconds = time.perf_counter() - t0
    logger.info("wrote the demo set to %s: %d files in %.1f s", out_dir, n_files, seconds)
    return {**manifest, "out_dir": out_dir, "seconds": seconds}


def _readme(m):
    c = m["images_per_split"]
    return (
        "Synthetic demo data for declip-plugin (written by `declip make-demo-data`).\n\n"
        f"Seed {m['seed']}, {m['size']}x{m['size']} PNG images, Dolos layout:\n"
        f"  {SOURCE}/fake/<method>/images/<split>/NNNN.png   manipulated images\n"
        f"  {SOURCE}/fake/<method>/masks/<split>/NNNN.png    masks, INVERTED: white = untouched\n"
        f"  {SOURCE}/real/<split>/NNNN.png                   real images\n\n"
        f"Methods: {', '.join(m['methods'])} (telea/ns: OpenCV inpainting; blur: blurred fill; "
        "resample: 4x down/up-sampled fill; noise: re-synthesised stronger texture; grid: whole image\n"
        "2x down/up-sampled, region with a period-4 checkerboard).\n"
        f"Images per split and method (and real images per split): train {c['train']}, "
        f"valid {c['valid']}, test {c['test']}.\n"
        f"Manipulated area: {100 * m['mask_area']['min']:.0f}-{100 * m['mask_area']['max']:.0f}% "
        f"(mean {100 * m['mask_area']['mean']:.0f}%) of the image, free-form strokes, ellipses, polygons.\n"
        "Every image is procedural (gradient, shapes, multi-scale texture, Gaussian sensor noise);\n"
        "telea/ns/blur/resample remove the texture and noise inside the region, noise adds texture,\n"
        "grid leaves a periodic pattern.\n"
        "Read it with the datasets demo-<method> (configs/dataset/demo.yaml, root `demo` under the data root).\n"
    )
