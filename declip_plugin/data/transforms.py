"""Per-sample transforms: resize, the official DeCLIP train augmentations, joint flip, normalize.

Order (as in the official DeCLIP loader: Resize -> augmentation -> ToTensor -> Normalize):

1. image resized to ``resolution`` x ``resolution`` and mask resized, by the dataset's resize
   policy (:data:`RESIZES`; each adapter names its own, ``ManipulationDataset.resize``):

   * ``declip`` (every adapter but DeepfakeBench's format): the image with bilinear interpolation
     (``cv2.INTER_LINEAR``). The official code resizes PIL images with torchvision's Resize
     (bilinear, antialiased); OpenCV's INTER_LINEAR is several times faster and differs only by
     the missing antialiasing filter, which is negligible for the usual 256 -> 224 step. Mask
     resized to ``mask_size`` with nearest neighbour, so it stays binary.
   * ``deepfakebench`` (data in DeepfakeBench's format: data/deepfakebench_json.py, from files or
     its LMDB): as its loader (training/dataset/abstract_dataset.py ``load_rgb`` / ``load_mask``),
     the image with ``cv2.INTER_CUBIC`` and the mask to ``resolution`` (``mask_size`` does not
     apply) with cv2's default bilinear interpolation of its 0/255 values; the loader divides by
     255 and the localization metrics binarise at 0.5, so the mask is kept as ``>= 128`` of the
     resized 0/255 values, binary as every mask here. So the checkout's test.py and ``declip
     test`` feed the model the same pixels at any frame size.
2. train split only: the augmentation named by ``augmentation`` (image only):
   ``blur`` GaussianBlur(kernel 5, sigma U(0.4, 2.0)); ``color_jitter`` ColorJitter(0.3, 0.3,
   0.3, 0.3); ``jpeg_compression`` JPEG re-encoding at quality U{30..100}; ``all`` the three
   in the official order color jitter -> JPEG -> blur; ``none``.
3. train split only: horizontal flip with probability ``flip_prob``, image and mask together.
0. test split only, when ``perturb`` is set: the test-time perturbation of data/perturb.py (image
   only), before everything else.
4. image to float (3, R, R) in [0, 1], normalized with ``mean``/``std``; mask to float
   (1, M, M) in {0, 1} (M: ``mask_size``, or ``resolution`` under the ``deepfakebench`` policy).

Random draws use torch's generator (the global one unless one is passed), which DataLoader
seeds differently in every worker.
"""
from typing import Callable, NamedTuple

import cv2
import numpy as np
import torch

from ..config.run import CLIP_MEAN, CLIP_STD, RunConfig  # noqa: F401 - CLIP_*: null mean/std, re-exported
from ..config.schema import fields
from ..errors import ConfigError

#: the values of the run key ``augmentation`` (its schema's choices)
AUGMENTATIONS = fields(RunConfig)["augmentation"].metadata["choices"]


def resize_image(img, size, interpolation=cv2.INTER_LINEAR):
    """Resize an (H, W, 3) uint8 image to size x size (default bilinear: cv2.INTER_LINEAR)."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=interpolation)


def resize_mask(mask, size):
    """Resize an (H, W) {0, 1} mask to size x size with nearest neighbour (stays binary)."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def resize_mask_as_deepfakebench(mask, size):
    """Resize an (H, W) {0, 1} mask to size x size as DeepfakeBench's loader resizes its 0/255 masks
    (cv2's default, bilinear), kept where the resized value is >= 128 (its ``/ 255`` above 0.5)."""
    if mask.shape[0] == size and mask.shape[1] == size:
        return mask
    return (cv2.resize(mask * np.uint8(255), (size, size)) >= 128).astype(np.uint8)


class Resize(NamedTuple):
    """How a dataset's decoded frames and masks reach the model's size (one of :data:`RESIZES`)."""

    name: str
    image_interpolation: int                 # cv2 flag, image to ``resolution``
    mask_at_resolution: bool                 # masks to ``resolution`` (else to ``mask_size``)
    resize_mask: Callable                    # (mask {0, 1}, size) -> mask {0, 1}
    signature: str                           # names this pipeline in the feature cache's keys


#: the resize policies, by the name an adapter gives (``ManipulationDataset.resize``)
RESIZES = {
    "declip": Resize("declip", cv2.INTER_LINEAR, False, resize_mask, "cv2-inter-linear-v1"),
    "deepfakebench": Resize("deepfakebench", cv2.INTER_CUBIC, True, resize_mask_as_deepfakebench,
                            "cv2-inter-cubic-dfb-v1"),
}
DEFAULT_RESIZE = "declip"


def resize_policy(name):
    """The :class:`Resize` named ``name`` (ConfigError naming the known ones)."""
    if name not in RESIZES:
        raise ConfigError(f"unknown resize policy {name!r}; known: {', '.join(sorted(RESIZES))}")
    return RESIZES[name]


def _uniform(lo, hi, generator):
    return lo + (hi - lo) * torch.rand((), generator=generator).item()


def _randint(lo, hi, generator):
    """An integer in [lo, hi] (both inclusive, like random.randint)."""
    return int(torch.randint(lo, hi + 1, (), generator=generator).item())


def gaussian_blur(img, generator=None):
    sigma = _uniform(0.4, 2.0, generator)
    return cv2.GaussianBlur(img, (5, 5), sigmaX=sigma, sigmaY=sigma)


def jpeg_compression(img, generator=None):
    quality = _randint(30, 100, generator)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB image
        return img
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def color_jitter(img, generator=None, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.3):
    """torchvision's ColorJitter(brightness, contrast, saturation, hue): factors drawn uniformly
    from [1 - x, 1 + x] (hue shift from [-hue, hue] of a full turn), the four adjustments in a
    random order, each clamped to the valid range. Implemented with OpenCV in float32 (several
    times faster than torchvision on tensors; same formulas)."""
    b = _uniform(1 - brightness, 1 + brightness, generator)
    c = _uniform(1 - contrast, 1 + contrast, generator)
    s = _uniform(1 - saturation, 1 + saturation, generator)
    h = _uniform(-hue, hue, generator)
    x = img.astype(np.float32) * np.float32(1 / 255.0)
    for i in torch.randperm(4, generator=generator).tolist():
        if i == 0:  # brightness: scale
            x = np.clip(x * np.float32(b), 0.0, 1.0)
        elif i == 1:  # contrast: blend with the mean gray level
            mean = float(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).mean())
            x = np.clip(x * np.float32(c) + np.float32((1 - c) * mean), 0.0, 1.0)
        elif i == 2:  # saturation: blend with the grayscale image
            gray = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]
            x = np.clip(x * np.float32(s) + gray * np.float32(1 - s), 0.0, 1.0)
        else:  # hue: rotate H in HSV
            hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
            hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(h * 360.0), 360.0)
            x = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0.0, 1.0)
    return np.rint(x * 255.0).astype(np.uint8)


_STEPS = {
    "none": (),
    "blur": (gaussian_blur,),
    "color_jitter": (color_jitter,),
    "jpeg_compression": (jpeg_compression,),
    "all": (color_jitter, jpeg_compression, gaussian_blur),
}


def augment(img, mode, generator=None):
    """Apply the official DeCLIP train augmentation ``mode`` to an (H, W, 3) uint8 RGB image."""
    if mode not in _STEPS:
        raise ConfigError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}; got {mode!r}")
    for step in _STEPS[mode]:
        img = step(img, generator)
    return img


def to_tensor(img, mean=CLIP_MEAN, std=CLIP_STD):
    """(H, W, 3) uint8 RGB -> float (3, H, W), (x / 255 - mean) / std.

    Computed in numpy, one channel plane at a time: torch's intra-op threads cost far more than
    the arithmetic on tensors this small (the loader runs it once per image).
    """
    h, w = img.shape[:2]
    out = np.empty((3, h, w), np.float32)
    for c in range(3):
        np.multiply(img[..., c], np.float32(1.0 / (255.0 * std[c])), out=out[c], dtype=np.float32)
        out[c] -= np.float32(mean[c] / std[c])
    return torch.from_numpy(out)


def mask_to_tensor(mask):
    """(M, M) {0, 1} uint8 -> float (1, M, M)."""
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)[None])


class SampleTransform:
    """Everything between a decoded image/mask and the tensors of one item.

    Built from the run config (a RunConfig or a dict of run keys: ``resolution``, ``mask_size``, ``mean``,
    ``std``, ``augmentation``, ``flip_prob``, ``perturb``; their defaults and limits are the schema's,
    config/run.py); ``train`` enables augmentation and flipping; ``resize`` names the dataset's resize
    policy (:data:`RESIZES`).
    """

    def __init__(self, config=None, train=False, generator=None, perturb=False, resize=DEFAULT_RESIZE):
        config = RunConfig.of(config)
        # test-time perturbation (robustness; data/perturb.py): image only, before the resize
        from . import perturb as _perturb

        self.perturb = _perturb.parse(config.perturb) if perturb else []
        self.perturb_seed = config.perturb_seed if config.perturb_seed is not None else config.manualSeed
        self.resize = resize_policy(resize)
        self.resolution = config.resolution
        self.mask_size = self.resolution if self.resize.mask_at_resolution else config.mask_size
        self.mean, self.std = config.normalisation()
        self.augmentation = config.augmentation
        self.flip_prob = float(config.flip_prob)
        self.train = bool(train)
        self.generator = generator

    def __call__(self, img, mask=None, key=""):
        """(H, W, 3) uint8 RGB image and optional (h, w) {0, 1} mask -> (image, mask) tensors.

        ``key`` (the image path) seeds the test-time perturbation's random draws.
        """
        if self.perturb:
            from .perturb import apply

            img = apply(img, self.perturb, self.perturb_seed, key)
        img = resize_image(img, self.resolution, self.resize.image_interpolation)
        if mask is not None:
            mask = self.resize.resize_mask(mask, self.mask_size)
        if self.train:
            img = augment(img, self.augmentation, self.generator)
            if self.flip_prob > 0 and torch.rand((), generator=self.generator).item() < self.flip_prob:
                img = img[:, ::-1]
                if mask is not None:
                    mask = mask[:, ::-1]
        return to_tensor(img, self.mean, self.std), (mask_to_tensor(mask) if mask is not None else None)
