"""The dataset base class shared by every adapter: sample bookkeeping, loading, checks, collate.

An adapter subclasses :class:`ManipulationDataset`, is constructed as ``Adapter(spec, split,
config)`` and implements :meth:`ManipulationDataset.collect`, which lists the split's samples.
Everything else (filtering, ordering, capping, integrity checks, decoding, transforms) is here.
``config`` is the run config (a :class:`~declip_plugin.config.RunConfig`, or a dict of run keys):
``self.cfg`` is it typed, ``self.config`` the merged dict (for an adapter's own keys).

Items are dicts::

    image  float (3, R, R), normalized with the config's mean/std
    label  int, 0 real / 1 manipulated
    mask   float (1, M, M) in {0, 1}, 1 = manipulated (zeros for real images), or None when the
           dataset has no masks at all (detection-only data)
    name   the image file path
    video  the video identity ``<dataset>/<label or method folder>/<video id>`` (deepfakebench_json,
           folder with video_dirs) or None
    resize the name of the resize policy the image went through (data/transforms.py RESIZES;
           the adapter's ``resize``)

Video data (see :mod:`declip_plugin.data.video`): ``frame_num`` keeps that many evenly spread frames
per video (the spec's ``frame_num``; in video mode also the config's ``frame_num[split]``), and
``video_mode: true`` with ``clip_size: T`` makes each item a clip of T consecutive frames:
``image`` (T, 3, R, R), ``mask`` (T, 1, M, M) or None, ``frames`` the T paths.

Bad files raise :class:`~declip_plugin.errors.DataError` naming the file when the sample is
loaded; with ``skip_bad_files: true`` every sample is checked once at construction instead, and
the bad ones are left out, listed in ``dataset.skipped`` and logged.

Inspection (the config's ``inspect``, set by ``declip datasets --check``, data/check.py): nothing
raises for a problem an adapter finds or for an empty split; every problem is listed in
``dataset.problems`` by kind, and nothing is decoded at construction (the check reads each file
once itself).
"""
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config.run import FrameNumKeys, RunConfig
from ..errors import ConfigError, DataError
from . import images
from .transforms import SampleTransform
from .video import ClipIndex, check_frame_num, clip_size_of, frame_num_for, limit_frames

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"valid": "val", "validation": "val"}
#: directory names tried for each split, in order (Dolos names its validation split "valid")
SPLIT_DIR_NAMES = {"train": ("train",), "val": ("valid", "val", "validation"), "test": ("test",)}
DEFAULT_DATA_ROOT = "./datasets"
DATA_ROOT_ENV = "DECLIP_DATA_ROOT"

#: the kinds of :meth:`ManipulationDataset.problem`: a file that is missing or cannot be listed as a
#: sample, a manipulated sample without its mask, a label the dataset's label_dict lacks
PROBLEM_KINDS = ("file", "mask", "label")


def normalize_split(split):
    """'train' | 'val' | 'test' ('valid' and 'validation' are accepted for 'val')."""
    s = SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
    if s not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; expected one of train, val (or valid), test")
    return s


def data_root(config=None):
    """The run config's ``data_root``, else $DECLIP_DATA_ROOT, else ./datasets."""
    root = RunConfig.of(config).data_root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT
    return os.path.expanduser(str(root))


def resolve_path(path, base):
    """``path`` itself when absolute, else joined to ``base``."""
    path = os.path.expanduser(str(path))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def split_dir(parent, split):
    """``<parent>/<split>``: the first existing of train | valid, val, validation | test (else
    the first name, for the error message of an empty split)."""
    names = SPLIT_DIR_NAMES[split]
    for n in names:
        d = os.path.join(parent, n)
        if os.path.isdir(d):
            return d
    return os.path.join(parent, names[0])


def file_stem(path):
    """``a/b/name.png`` -> ``name``."""
    return os.path.splitext(os.path.basename(path))[0]


def list_images(directory, recursive=False):
    """Sorted full paths of the image files in ``directory`` (empty if it does not exist)."""
    if not os.path.isdir(directory):
        return []
    if not recursive:
        return sorted(os.path.join(directory, n) for n in os.listdir(directory) if images.is_image_file(n))
    out = []
    for r, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out.extend(os.path.join(r, n) for n in files if images.is_image_file(n))
    return sorted(out)


def hash_split(key, ratios=(0.8, 0.1, 0.1)):
    """Deterministic split of ``key`` (a file stem): md5 of the key mapped to [0, 1) and cut at
    the cumulative ``ratios`` of (train, val, test). Stable across machines and Python runs."""
    u = int(hashlib.md5(str(key).encode("utf-8")).hexdigest()[:12], 16) / float(16 ** 12)
    total = float(sum(ratios))
    acc = 0.0
    for name, r in zip(SPLITS, ratios):
        acc += r / total
        if u < acc:
            return name
    return SPLITS[-1]


def parse_ratios(value, where):
    ratios = value if value is not None else (0.8, 0.1, 0.1)
    try:
        ratios = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        ratios = ()
    if len(ratios) != 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConfigError(f"{where}: split_ratios must be 3 non-negative numbers (train, val, test), got {value!r}")
    return ratios


class MaskFinder:
    """Finds the mask file of an image in a masks directory by a naming rule.

    Rules (``mask_match``): ``same_stem`` (``x.jpg`` -> ``x.png``, any image extension, .png
    preferred), ``suffix`` (``x.jpg`` -> ``x<mask_suffix>.png``), ``strip_last_underscore``
    (``a_b_3.jpg`` -> ``a_b<mask_suffix>.png``, the stem up to its last ``_``; AutoSplice).
    Directory listings are read once and cached.
    """

    RULES = ("same_stem", "suffix", "strip_last_underscore")

    def __init__(self, masks_dir, match="same_stem", suffix="_mask"):
        if match not in self.RULES:
            raise ConfigError(f"mask_match must be one of {', '.join(self.RULES)}; got {match!r}")
        self.masks_dir = masks_dir
        self.match = match
        self.suffix = "" if suffix is None else str(suffix)
        self._listings = {}

    def mask_stem(self, image_path):
        stem = file_stem(image_path)
        if self.match == "same_stem":
            return stem
        if self.match == "suffix":
            return stem + self.suffix
        cut = stem.rfind("_")
        return (stem[:cut] if cut > 0 else stem) + self.suffix

    def expected(self, image_path, rel_dir=""):
        """The path a mask would have (with .png) — for error messages."""
        return os.path.join(self.masks_dir, rel_dir, self.mask_stem(image_path) + ".png")

    def find(self, image_path, rel_dir=""):
        """The mask path of ``image_path`` or None; ``rel_dir`` mirrors image subdirectories."""
        d = os.path.join(self.masks_dir, rel_dir) if rel_dir else self.masks_dir
        listing = self._listings.get(d)
        if listing is None:
            listing = self._listings[d] = images.list_images_by_stem(d)
        return images.find_with_stem(listing, d, self.mask_stem(image_path))


class Sample(NamedTuple):
    image: str
    label: int
    mask: Optional[str]
    video: Optional[str] = None


class ManipulationDataset(Dataset):
    """Base class of the dataset adapters (see the module docstring).

    Subclasses set ``adapter`` and ``default_polarity`` and implement :meth:`collect`.

    Attributes: ``samples`` (sorted list of ``(image_path, label, mask_path_or_None)``),
    ``videos`` (the group id of each sample), ``skipped`` (``(path, reason)`` of files left out
    with ``skip_bad_files``), ``name``, ``split``, ``has_masks``, ``mask_polarity``.
    """

    adapter = "base"
    default_polarity = "normal"
    #: how this adapter's frames and masks are resized to the model's size: a name of
    #: data/transforms.py RESIZES (``deepfakebench`` for data in DeepfakeBench's format, as its loader)
    resize = "declip"
    #: how this adapter's frames were made from their source: ``none`` (whole images) or ``dlib``
    #: (DeepfakeBench's face crop); a dataset config's ``prepared: {faces: ...}`` (written by
    #: ``declip prepare``) says it for one dataset. ``declip predict`` makes a video's frames so
    #: (engine/preprocessing.py)
    faces = "none"

    def __init__(self, spec, split, config=None):
        self.spec = dict(spec or {})
        self.cfg = RunConfig.of(config)
        self.config = self.cfg.to_dict()
        self.split = normalize_split(split)
        self.name = str(self.spec.get("name") or self.adapter)
        self.data_root = data_root(self.cfg)
        self.mask_polarity = self.spec.get("mask_polarity") or self.default_polarity
        if self.mask_polarity not in images.MASK_POLARITIES:
            raise ConfigError(
                f"dataset {self.name}: mask_polarity must be one of {', '.join(images.MASK_POLARITIES)}; "
                f"got {self.mask_polarity!r}"
            )
        # what the detector's training needs (detectors/base.py training_data), set by the engine
        self.require_masks = self.cfg.require_masks
        self.include_real = True if self.cfg.include_real is None else self.cfg.include_real
        self.skip_bad_files = self.cfg.skip_bad_files
        self.inspect = self.cfg.inspect
        self.problems = []  # (kind, path, reason) while inspecting
        self.max_samples = self.cfg.max_samples
        self.transform = SampleTransform(self.cfg, train=self.split == "train", perturb=self.split == "test",
                                         resize=self.resize)
        self.skipped = []
        self.looked_in = []  # directories/files an adapter searched, for the empty-split error
        self.has_masks = True

        samples = list(self.collect())
        if not self.include_real:
            samples = [s for s in samples if s.label == 1]
        if not samples:
            self._raise_empty()
        samples.sort(key=self.sort_key)
        self.video_mode = self.cfg.video_mode
        frame_num = self.spec.get("frame_num")
        frame_num_key = f"dataset {self.name}'s frame_num"  # where the value the user typed lives
        if frame_num is None and self.video_mode:
            frame_num_key = "frame_num" + (f".{'train' if self.split == 'train' else 'test'}"
                                           if isinstance(self.cfg.frame_num, FrameNumKeys) else "")
            frame_num = self.cfg.frames_per_video(self.split)
        elif frame_num is not None:
            frame_num = frame_num_for(frame_num, self.split, f"dataset {self.name}")
        clip_size = clip_size_of(self.cfg, f"dataset {self.name}") if self.video_mode else None
        check_frame_num(frame_num, clip_size, self.split, frame_num_key)
        samples = limit_frames(samples, frame_num)
        samples = self._cap(samples)
        if not self.has_masks:
            samples = [s._replace(mask=None) for s in samples]
            if self.require_masks and self.split == "train":
                raise DataError(
                    f"dataset {self.name} has no masks, but detector {self.cfg.model_name!r} trains on "
                    f"masks (localization); use a dataset with masks, or a detection config of the detector"
                )
        if self.skip_bad_files and not self.inspect:
            samples = self._drop_bad(samples)
        self.sources = [self.source_of(s) for s in samples] if self.inspect else None
        self.samples = [(s.image, s.label, s.mask) for s in samples]
        self.videos = [s.video for s in samples]
        self.clip_index = None
        if self.video_mode:
            self.clip_index = ClipIndex(self.videos, clip_size, train=self.split == "train",
                                        name=f"{self.name} (adapter {self.adapter})")
            self._short_videos(self.clip_index.short, clip_size)
            logger.info("dataset %s/%s: video_mode, %d clips of %d frames", self.name, self.split,
                        len(self.clip_index), self.clip_index.clip_size)
        n_fake = sum(1 for s in samples if s.label == 1)
        logger.info(
            "dataset %s/%s: %d samples (%d manipulated, %d real)%s",
            self.name, self.split, len(samples), n_fake, len(samples) - n_fake,
            "" if self.has_masks else ", no masks",
        )

    # ---- for adapters -------------------------------------------------------------------
    def collect(self):
        """Return the split's :class:`Sample` list (any order).

        Set ``self.has_masks = False`` for a dataset without any masks, append searched
        directories to ``self.looked_in``, and report a missing mask with :meth:`problem`.
        Real samples may be left out when ``self.include_real`` is false.
        """
        raise NotImplementedError

    def sort_key(self, sample):
        return (sample.image,)

    @classmethod
    def locations(cls, spec, config, data_root, name):
        """``[(what, path)]``: where the files of the dataset ``name`` declared by ``spec`` are
        expected (``declip datasets``); by default its ``root``."""
        root = spec.get("root")
        return [("root", resolve_path(root, data_root))] if root else []

    # where a sample's bytes come from: files (an adapter reading another store overrides read_bytes)
    def read_bytes(self, path, what="image"):
        """The encoded bytes (uint8 array) of the image or mask ``path`` of a sample; DataError naming it."""
        return images.read_bytes(path, what)

    def read_image(self, path):
        """RGB uint8 (H, W, 3) of the image ``path`` of a sample."""
        return images.decode_image(self.read_bytes(path, "image"), path)

    def read_mask(self, path):
        """uint8 (H, W) in {0, 1} of the mask ``path`` of a sample, with the dataset's polarity."""
        return images.decode_mask(self.read_bytes(path, "mask"), path, self.mask_polarity)

    def probe_image(self, path):
        """(w, h) of the image ``path`` after a cheap integrity check (skip_bad_files)."""
        return images.probe_bytes(self.read_bytes(path, "image"), path)

    def source_of(self, sample):
        """The source identity of ``sample`` for leak checks (``declip datasets --check``): the folder of
        its video's frames when the adapter knows its video, else None (unknown)."""
        return None if sample.video is None else os.path.dirname(sample.image)

    def problem(self, path, reason, kind="file"):
        """A structural problem with one sample (``kind``: one of :data:`PROBLEM_KINDS`). Inspecting: listed
        in ``problems``. Else a DataError, except that a ``file`` or ``mask`` problem is skipped (listed in
        ``skipped``) with skip_bad_files. Returns whether the caller leaves the sample out: always, but for
        a missing mask while inspecting (the sample is still checked, without its mask)."""
        if self.inspect:
            self.problems.append((kind, str(path), reason))
            return kind != "mask"
        if not self.skip_bad_files or kind == "label":
            raise DataError(reason)
        self.skipped.append((str(path), reason))
        return True

    def manipulated_samples(self, image_paths, finder=None, images_dir=None):
        """Label-1 samples for ``image_paths`` with their masks from ``finder`` (None: no masks).

        ``images_dir`` is the directory the paths were listed under; their subdirectories are
        mirrored under the masks directory. An image without a mask is a :meth:`problem`.
        """
        out = []
        for p in image_paths:
            if finder is None:
                out.append(Sample(p, 1, None))
                continue
            rel = os.path.relpath(os.path.dirname(p), images_dir) if images_dir else ""
            rel = "" if rel == "." else rel
            m = finder.find(p, rel)
            if m is None and self.problem(p, f"manipulated image {p} has no mask (expected {finder.expected(p, rel)})",
                                          "mask"):
                continue
            out.append(Sample(p, 1, m))
        return out

    def list_manipulated(self, directory, recursive=False, keep=None):
        """The manipulated images of this split in ``directory`` (DataError naming it if none)."""
        self.looked_in.append(directory)
        paths = [p for p in list_images(directory, recursive) if keep is None or keep(p)]
        if not paths:
            self._raise_empty("manipulated images")
        return paths

    def real_samples(self, directory, recursive=False, keep=None):
        """Label-0 samples for the images in ``directory`` (DataError naming it if it has none)."""
        self.looked_in.append(directory)
        paths = [p for p in list_images(directory, recursive) if keep is None or keep(p)]
        if not paths and not self.inspect:
            raise DataError(
                f"dataset {self.name}: include_real is on but no real images were found for split "
                f"{self.split!r} in {directory}"
            )
        return [Sample(p, 0, None) for p in paths]

    def split_filter(self, key_of, default="all"):
        """The spec's split rule as a predicate on image paths (None keeps everything).

        ``split: all`` gives every split the whole set; ``split: hash`` keeps the paths whose
        ``key_of(path)`` :func:`hash_split` assigns to this split (``split_ratios``).
        """
        rule = self.spec.get("split", default)
        if rule == "all":
            return None
        if rule != "hash":
            raise ConfigError(f"dataset {self.name}: split must be 'all' or 'hash', got {rule!r}")
        ratios = parse_ratios(self.spec.get("split_ratios"), f"dataset {self.name}")
        return lambda p: hash_split(key_of(p), ratios) == self.split

    def resolve(self, path, base=None):
        """A path from the spec: absolute, or relative to ``base`` (default: the data root)."""
        return resolve_path(path, self.data_root if base is None else base)

    def require(self, key):
        value = self.spec.get(key)
        if value in (None, ""):
            raise ConfigError(f"dataset {self.name} (adapter {self.adapter}): missing required key {key!r}")
        return value

    # ---- internals ----------------------------------------------------------------------
    def _raise_empty(self, what=None):
        if self.inspect:  # an empty split is a finding of the check, not an error
            return
        where = ", ".join(str(p) for p in self.looked_in) or "(nowhere)"
        what = what or ("images" if self.include_real else "manipulated images")
        msg = f"dataset {self.name}: no {what} found for split {self.split!r} in {where}"
        if self.skipped:
            msg += f" ({len(self.skipped)} skipped as bad files)"
        raise DataError(msg)

    def _cap(self, samples):
        """First ``max_samples`` after sorting; with both labels present each label keeps its
        share (at least one), so a capped detection split still has both classes."""
        n = self.max_samples
        if n is None or len(samples) <= n:
            return samples
        fakes = [s for s in samples if s.label == 1]
        reals = [s for s in samples if s.label == 0]
        if not fakes or not reals or n < 2:
            return samples[:n]
        n_fake = min(len(fakes), max(1, min(n - 1, round(n * len(fakes) / len(samples)))))
        kept = fakes[:n_fake] + reals[: n - n_fake]
        kept.sort(key=self.sort_key)
        return kept

    def check_sample(self, sample):
        """Integrity check of one sample without a full decode of its image; None if fine,
        else the reason (the DataError message)."""
        try:
            image_wh = self.probe_image(sample.image)
            if sample.mask is not None and self.has_masks:
                mask = self.read_mask(sample.mask)
                images.check_mask_fits((mask.shape[1], mask.shape[0]), image_wh, sample.mask, sample.image)
        except DataError as e:
            return str(e)
        return None

    def _drop_bad(self, samples):
        workers = max(1, min(8, os.cpu_count() or 1, len(samples)))
        with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV decodes without the GIL
            reasons = list(pool.map(self.check_sample, samples))
        good = []
        bad = []
        for s, reason in zip(samples, reasons):
            if reason is None:
                good.append(s)
            else:
                bad.append((s.image, reason))
        self.skipped.extend(bad)
        if self.skipped:
            shown = "; ".join(f"{p}: {r}" for p, r in self.skipped[:10])
            more = f"; ... and {len(self.skipped) - 10} more" if len(self.skipped) > 10 else ""
            logger.warning(
                "dataset %s/%s: skipped %d bad file(s) (skip_bad_files: true): %s%s",
                self.name, self.split, len(self.skipped), shown, more,
            )
        if not good:
            self._raise_empty()
        return good

    def _short_videos(self, short, clip_size):
        """Videos with fewer than ``clip_size`` frames give no clip. As DeepfakeBench, they are left out
        with a warning, and listed with the run's skipped files (metrics.json); no clip at all is an
        error naming a video, its frame count and clip_size."""
        n_videos = len(set(self.videos))
        if short and len(short) == n_videos:
            video, n = short[0]
            raise DataError(f"dataset {self.name}: no video of split {self.split!r} has clip_size={clip_size} frames, so "
                            f"video_mode gives no clip (e.g. {video} has {n}; the longest of the {n_videos} has "
                            f"{max(k for _, k in short)}); lower clip_size")
        for video, n in short:
            self.skipped.append((video, f"video of {n} frame(s), fewer than clip_size={clip_size}: no clip"))
        if short:
            logger.warning("dataset %s/%s: %d of %d video(s) have fewer than clip_size=%d frames and give no clip "
                           "(e.g. %s with %d); they are left out", self.name, self.split, len(short), n_videos,
                           clip_size, *short[0])

    def __len__(self):
        return len(self.clip_index) if self.clip_index is not None else len(self.samples)

    def __getitem__(self, index):
        if self.clip_index is not None:
            return self._load_clip(index)
        return self._load_frame(index)

    def _load_clip(self, index):
        """A clip: T frames through one random draw of the transform (the same flip for all)."""
        video, frames = self.clip_index.frames(index, self.transform.generator)
        gen = self.transform.generator
        state = gen.get_state() if gen is not None else torch.get_rng_state()
        items = []
        for i in frames:
            if gen is not None:
                gen.set_state(state)
            else:
                torch.set_rng_state(state)
            items.append(self._load_frame(i))
        labels = {it["label"] for it in items}
        if len(labels) != 1:
            raise DataError(f"dataset {self.name}: video {video} mixes labels {sorted(labels)}")
        masks = [it["mask"] for it in items]
        return {"image": torch.stack([it["image"] for it in items], 0), "label": items[0]["label"],
                "mask": None if masks[0] is None else torch.stack(masks, 0), "name": items[0]["name"],
                "video": video, "frames": [it["name"] for it in items], "resize": self.resize}

    def _load_frame(self, index):
        path, label, mask_path = self.samples[index]
        img = self.read_image(path)
        mask = None
        if self.has_masks:
            if mask_path is not None:
                mask = self.read_mask(mask_path)
                images.check_mask_fits((mask.shape[1], mask.shape[0]), (img.shape[1], img.shape[0]), mask_path, path)
            elif label == 1:
                raise DataError(f"manipulated image {path} has no mask")
            else:
                mask = np.zeros((self.transform.mask_size, self.transform.mask_size), np.uint8)
        image_t, mask_t = self.transform(img, mask, key=path)
        return {"image": image_t, "label": int(label), "mask": mask_t, "name": path, "video": self.videos[index],
                "resize": self.resize}

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, samples={len(self.samples)})"


def _stack(tensors):
    """torch.stack, done by numpy for CPU tensors: torch's intra-op threads make copies this
    small many times slower on a busy machine (the loader's main process when workers=0)."""
    if all(t.device.type == "cpu" and not t.requires_grad for t in tensors):
        return torch.from_numpy(np.stack([t.numpy() for t in tensors], 0))
    return torch.stack(tensors, 0)


def collate_fn(batch):
    """Stack items into a data_dict: image (B,3,R,R), label (B,) long, mask (B,1,M,M) or None,
    name list[str], video list, resize list (the items' resize policies), landmark None
    (DeepfakeBench's key; DeCLIP uses none). Clips
    (video_mode) stack the same way: image (B,T,3,R,R), mask (B,T,1,M,M), and ``frames`` (B lists
    of T paths).

    ``mask`` is None only when every item's mask is None; if only some are (datasets mixed in
    one batch), those become zeros and ``mask_valid`` (B,) bool marks the real ones.
    """
    if not batch:
        raise DataError("cannot collate an empty batch")
    out = {
        "image": _stack([b["image"] for b in batch]),
        "label": torch.tensor([int(b["label"]) for b in batch], dtype=torch.long),
        "name": [b.get("name") for b in batch],
        "video": [b.get("video") for b in batch],
        "resize": [b.get("resize") for b in batch],
        "landmark": None,
    }
    if "frames" in batch[0]:
        out["frames"] = [b.get("frames") for b in batch]
    masks = [b.get("mask") for b in batch]
    present = [m for m in masks if m is not None]
    if not present:
        out["mask"] = None
    elif len(present) == len(masks):
        out["mask"] = _stack(masks)
    else:
        ref = present[0]
        out["mask"] = _stack([m if m is not None else torch.zeros_like(ref) for m in masks])
        out["mask_valid"] = torch.tensor([m is not None for m in masks], dtype=torch.bool)
    return out


__all__ = [
    "ManipulationDataset", "Sample", "MaskFinder", "collate_fn", "normalize_split", "data_root",
    "resolve_path", "split_dir", "file_stem", "list_images", "hash_split", "SPLITS",
]
