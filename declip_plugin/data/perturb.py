"""Test-time perturbations of the image only (robustness): JPEG, Gaussian blur, Gaussian noise, downscale.

A perturbation spec is ``kind=value`` (several joined by commas, applied in the given order):

* ``jpeg=Q``       JPEG re-encoding at quality Q (1-100)
* ``blur=SIGMA``   Gaussian blur, sigma in pixels (kernel covering +-3 sigma)
* ``noise=SIGMA``  additive Gaussian noise, sigma in 0-255 grey levels, clipped to [0, 255]
* ``downscale=F``  down-sampled by F (area) and back up to the original size (bilinear)

It is applied to the decoded image of the test split before any other transform; the ground-truth
mask is never touched. Random draws (the noise) come from a generator seeded by (seed, image
path), so a given seed perturbs every image the same way in every run, process and worker.
"""
import zlib

import cv2
import numpy as np

from ..errors import ConfigError

KINDS = {
    "jpeg": "JPEG quality 1-100 (lower = stronger)",
    "blur": "Gaussian blur sigma in pixels, 0-50",
    "noise": "Gaussian noise sigma in grey levels, 0-255",
    "downscale": "down/up-sampling factor, 1-64",
}
# the closed range of each kind's value: finite bounds, so that inf, nan and absurd values are refused
# here and not by OpenCV mid-run
RANGES = {"jpeg": (1.0, 100.0), "blur": (0.0, 50.0), "noise": (0.0, 255.0), "downscale": (1.0, 64.0)}


def parse(spec):
    """``'jpeg=50,noise=4'`` -> [('jpeg', 50.0), ('noise', 4.0)]; None/'' -> []."""
    if spec in (None, "", "none"):
        return []
    if not isinstance(spec, str):
        raise ConfigError(f"perturb {spec!r}: expected KIND=VALUE (e.g. jpeg=50); kinds: {', '.join(KINDS)}")
    out = []
    for part in spec.split(","):
        kind, sep, raw = part.strip().partition("=")
        kind = kind.strip().lower()
        if not sep or kind not in KINDS:
            raise ConfigError(f"perturb {part.strip()!r}: expected KIND=VALUE with KIND one of "
                              f"{', '.join(f'{k} ({v})' for k, v in KINDS.items())}")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"perturb {part.strip()!r}: {raw.strip()!r} is not a number; {kind}: {KINDS[kind]}") from None
        lo, hi = RANGES[kind]
        if not lo <= value <= hi:  # also false for nan; inf is out of every range
            raise ConfigError(f"perturb {part.strip()!r}: {raw.strip()} is out of range; {kind}: {KINDS[kind]}")
        out.append((kind, value))
    return out


def image_rng(seed, key):
    return np.random.default_rng([int(seed), zlib.crc32(str(key).encode("utf-8"))])


def apply(img, steps, seed=0, key=""):
    """Perturb an (H, W, 3) uint8 RGB image by ``steps`` (from :func:`parse`); returns a new array."""
    rng = None
    for kind, value in steps:
        if kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(round(value))])
            if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
                raise ConfigError("perturb jpeg: OpenCV could not encode the image")
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        elif kind == "blur":
            if value > 0:
                img = cv2.GaussianBlur(img, (0, 0), sigmaX=value, sigmaY=value)
        elif kind == "noise":
            if value > 0:
                rng = rng or image_rng(seed, key)
                noisy = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(value)
                img = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        elif kind == "downscale":
            if value > 1:
                h, w = img.shape[:2]
                small = cv2.resize(img, (max(1, int(round(w / value))), max(1, int(round(h / value)))),
                                   interpolation=cv2.INTER_AREA)
                img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(img)


def describe(steps):
    return ",".join(f"{k}={v:g}" for k, v in steps) or "none"
