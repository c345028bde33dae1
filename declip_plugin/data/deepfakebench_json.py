"""``deepfakebench_json`` adapter: a dataset as DeepfakeBench's preprocessing leaves it.

The JSON (written by DeepfakeBench's ``preprocessing/rearrange.py``)::

    {dataset: {label_name: {"train" | "val" | "test": {video: {"label": label_name,
                                                               "frames": [path, ...]}}}}}

FaceForensics++-style files put one more level, the compression (``c23``, ``c40``, ``raw``),
between the split and the videos; it is recognised and ``compression`` picks the level
(default c23). A dataset name ending in ``_c40`` (DeepfakeBench's ``FF-DF_c40``) reads the
``c40`` level of the name without the suffix.

The frames are read from the files under ``rgb_dir`` or, with ``lmdb: true``, from DeepfakeBench's
LMDB ``<lmdb_dir>/<name>_lmdb`` (data/deepfakebench_lmdb.py: keys as its dataset2lmdb_test.py writes
them); the decoded samples are the same. Where the JSON, frames and LMDB are, and which run-config
keys apply (``dataset_json_folder``, ``rgb_dir``, ``lmdb``, ``lmdb_dir``, ``label_dict``,
``dfb_config``): data/deepfakebench_layout.py.

Spec keys::

    adapter: deepfakebench_json
    dataset: FF-DF                    # the JSON's name (<dataset_json_folder>/FF-DF.json) and top-level key
    json: dataset_json/FF-DF.json     # or one JSON file (then `dataset` defaults to its only key)
    dataset_json_folder: ...          # rgb_dir, lmdb, lmdb_dir: see deepfakebench_layout.py
    lmdb_name: FaceForensics++_lmdb   # the LMDB folder (default: DeepfakeBench's rule)
    label_dict: {FF-real: 0, FF-DF: 1} # label name -> 0 real / 1 fake (any non-zero value is fake)
    base_dir: .                       # base of frame paths starting with "." (default: the checkout
                                      #   root of dfb_config, else the current directory)
    compression: c23
    with_mask: null                   # null: masks used when any manipulated frame has one
    frame_num: null                   # keep N evenly spread frames per video (see data/video.py;
                                      #   in video_mode the config's frame_num applies too)
    mask_polarity: normal
    prepared: {faces: dlib, size: 256, margin: 1.3, mode: fixed_num_frames, num_frames: 32}
                                      # how the frames were made (`declip prepare` writes it; default:
                                      #   DeepfakeBench's preprocessing): `declip predict` makes a new
                                      #   video's frames so (engine/preprocessing.py)

Frames are ordered by their integer file stem within each video (videos by name). The mask of a
frame is the frame path with its ``frames`` directory component replaced by ``masks`` (the last
one, if several); those masks have normal polarity (white = manipulated). Each item's ``video``
is ``<dataset>/<label folder>/<video>``: the full identity, so that FF++ videos with the same id
under different manipulation folders stay apart (DeepfakeBench's video AUC keys on the id alone).
Windows separators in frame paths are accepted. A sample read from an LMDB is named
``<lmdb path>[<key>]``.

Frames are resized as DeepfakeBench's loader resizes them (``cv2.INTER_CUBIC`` to ``resolution``;
masks to ``resolution``, not ``mask_size``): the ``deepfakebench`` policy of data/transforms.py.
"""
import json
import logging
import os
import re

from ..errors import ConfigError, DataError
from .base import ManipulationDataset, Sample
from .deepfakebench_layout import layout
from .deepfakebench_lmdb import LmdbStore, split_parts

logger = logging.getLogger(__name__)

COMPRESSIONS = ("c23", "c40", "raw")


def frame_order(path):
    """Sort key of a frame path (either separator): its integer file stem (non-numeric stems after, by name)."""
    parts = split_parts(path)
    stem = os.path.splitext(parts[-1] if parts else "")[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def mask_path_of(frame_path):
    """The frame path with its last ``frames`` directory replaced by ``masks`` (None if none);
    either separator, kept as it is."""
    tokens = re.split(r"([\\/])", str(frame_path))  # components at even indexes, separators at odd
    for i in range(len(tokens) - 3, -1, -2):
        if tokens[i] == "frames":
            return "".join(tokens[:i] + ["masks"] + tokens[i + 1:])
    return None


class DeepfakeBenchJsonAdapter(ManipulationDataset):
    adapter = "deepfakebench_json"
    default_polarity = "normal"
    resize = "deepfakebench"  # frames INTER_CUBIC, masks to resolution, as DeepfakeBench's loader
    faces = "dlib"  # DeepfakeBench's preprocessing crops faces (a `prepared` record in the spec says otherwise)

    @classmethod
    def locations(cls, spec, config, data_root, name):
        return layout(spec, config, data_root, name).locations()

    def _load(self, path, origin):
        try:
            with open(path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise DataError(
                f"dataset {self.name}: JSON file {path} does not exist (dataset_json_folder from {origin}); "
                f"`declip datasets` shows where each dataset is expected: set --data_root, or --dfb_config to your "
                f"DeepfakeBench's training/config/train_config.yaml") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"dataset {self.name}: cannot read JSON file {path}: {e}") from None

    def _dataset_entry(self, info, path, key):
        if not isinstance(info, dict) or not info:
            raise DataError(f"JSON file {path} is not a DeepfakeBench dataset file (expected {{dataset: {{label: ...}}}})")
        compression = self.spec.get("compression") or self.cfg.compression
        if key is None:
            if len(info) != 1:
                raise ConfigError(
                    f"dataset {self.name}: JSON file {path} holds several datasets "
                    f"({', '.join(sorted(info))}); name one with 'dataset'"
                )
            key = next(iter(info))
        if key not in info and str(key).endswith("_c40") and key[:-4] in info:
            key, compression = key[:-4], "c40"
        if key not in info:
            raise DataError(f"JSON file {path} has no dataset {key!r}; it has: {', '.join(sorted(info))}")
        entry = info[key]
        if not isinstance(entry, dict):
            raise DataError(f"JSON file {path}: dataset {key!r} is not a mapping of labels")
        return key, entry, compression

    def _videos(self, split_info, compression, where):
        """The {video: info} mapping of one label/split, unwrapping a compression level."""
        if not isinstance(split_info, dict):
            raise DataError(f"{where} is not a mapping of videos")
        levels = set(COMPRESSIONS) | {compression}  # a video entry without frames is no compression level
        if split_info and all(isinstance(v, dict) and "frames" not in v for v in split_info.values()) and \
                all(k in levels for k in split_info):
            if compression not in split_info:
                raise DataError(f"{where} has compression levels {', '.join(sorted(split_info))} but not {compression!r}")
            split_info = split_info[compression]
        empty = [v for v, info in split_info.items() if isinstance(info, dict) and info.get("frames") == []]
        for video in empty:
            self.problem(video, f"{where}: video {video!r} has an empty 'frames' list; remove the entry or list its frames")
        return {v: info for v, info in split_info.items() if v not in empty}

    def _resolve_frame(self, frame, rgb_dir, base_dir):
        frame = str(frame).replace("\\", "/")
        if os.path.isabs(frame):
            return os.path.normpath(frame)
        return os.path.normpath(os.path.join(base_dir if frame.startswith(".") else rgb_dir, frame))

    def collect(self):
        lay = layout(self.spec, self.cfg, self.data_root, self.name)
        info = self._load(lay.json, lay.origin["dataset_json_folder"])
        key, entry, compression = self._dataset_entry(info, lay.json, lay.dataset if not self.spec.get("json")
                                                      else self.spec.get("dataset"))
        if not lay.label_dict and not self.inspect:  # inspecting: every label is reported missing
            raise ConfigError(f"dataset {self.name}: label_dict (label name -> 0 real / 1 fake) is required")
        self.label_dict = lay.label_dict
        self.store = LmdbStore(lay.lmdb_path) if lay.lmdb else None
        self._order = {}
        split_keys = ("val", "valid") if self.split == "val" else (self.split,)
        self.looked_in.append(f"{lay.json} [{key}/*/{self.split}]")
        logger.info("dataset %s: JSON %s, frames from %s", self.name, lay.json,
                    f"LMDB {lay.lmdb_path}" if self.store else f"rgb_dir {lay.rgb_dir}")
        samples = []
        for label_name, by_split in sorted(entry.items()):
            split_key = next((k for k in split_keys if isinstance(by_split, dict) and k in by_split), None)
            if split_key is None:
                continue
            where = f"JSON file {lay.json}: {key}/{label_name}/{split_key}"
            for video, vinfo in sorted(self._videos(by_split[split_key], compression, where).items()):
                label = self._label_of(vinfo, label_name, lay.label_dict, where, video)
                if label is None or (label == 0 and not self.include_real):
                    continue
                vid = f"{key}/{label_name}/{video}"
                for frame in sorted(map(str, vinfo["frames"]), key=frame_order):
                    samples.append(self._sample(frame, label, vid, lay, where))
        return self._attach_masks(samples)

    def _label_of(self, vinfo, label_name, label_dict, where, video):
        if not isinstance(vinfo, dict) or not isinstance(vinfo.get("frames"), list):
            raise DataError(f"{where}: video {video!r} has no 'frames' list")
        vlabel = vinfo.get("label", label_name)
        if vlabel not in label_dict:  # a problem of kind label: an error, or listed while inspecting (None)
            self.problem(f"video {video!r}: label {vlabel!r}",
                         f"{where}: label {vlabel!r} of video {video!r} is not in label_dict "
                         f"({', '.join(sorted(map(str, label_dict))) or 'empty'}); add it to label_dict (0 real, 1 fake)",
                         "label")
            return None
        return 1 if label_dict[vlabel] else 0

    def _sample(self, frame, label, vid, lay, where):
        """The Sample of one JSON frame string: a file under rgb_dir, or an LMDB entry."""
        mask = mask_path_of(frame)
        if self.store is None:
            image = self._resolve_frame(frame, lay.rgb_dir, lay.base_dir)
            mask = mask_path_of(image)
        else:
            if self.store.style is None:
                self.store.detect_style(frame, where)
            key = self.store.key(frame)
            if key is None:
                raise DataError(f"{where}: frame {frame!r} is not under the folder {self.store.folder!r} whose files "
                                f"LMDB {self.store.path} holds (keys {self.store.style} style, as the dataset's first frame)")
            image = self.store.label(key)
            mask_key = self.store.key(mask) if mask else None
            mask = self.store.label(mask_key) if mask_key else None
        self._order[image] = frame_order(frame)
        return Sample(image, label, mask, vid)

    def _attach_masks(self, samples):
        """Keep mask paths that exist; decide whether the dataset has masks (with_mask)."""
        listings = {}

        def exists(p):
            if p is None:
                return False
            if self.store is not None:
                return self.store.has(self.store.key_of_label(p))
            d, n = os.path.split(p)
            if d not in listings:
                try:
                    listings[d] = set(os.listdir(d))
                except OSError:
                    listings[d] = set()
            return n in listings[d]

        samples = self._existing_frames(samples, exists)
        with_mask = self.spec.get("with_mask")
        checked = [s._replace(mask=s.mask if exists(s.mask) else None) for s in samples]
        if with_mask is None:
            with_mask = any(s.mask is not None for s in checked if s.label == 1)
        self.has_masks = bool(with_mask)
        if not self.has_masks:
            return checked
        out = []
        for s, original in zip(checked, samples):
            if s.label == 1 and s.mask is None:
                expected = original.mask or "(no 'frames' directory in the path)"
                if self.problem(s.image, f"manipulated frame {s.image} has no mask (expected {expected}); set "
                                         f"with_mask: false in the dataset spec for detection-only use", "mask"):
                    continue
            out.append(s)
        return out

    def _existing_frames(self, samples, exists):
        """The samples whose frame exists (checked by the listings above, before any training); a missing
        one is a :meth:`problem` naming it."""
        out = []
        for s in samples:
            if exists(s.image):
                out.append(s)
            else:
                self.problem(s.image, f"dataset {self.name}: frame {s.image} of video {s.video}, listed in its JSON, "
                                      f"does not exist (skip_bad_files: true leaves missing frames out)")
        return out

    def sort_key(self, sample):
        return (sample.video or "", self._order.get(sample.image) or frame_order(sample.image), sample.image)

    # frames and masks from the LMDB when the dataset is read from one
    def read_bytes(self, path, what="image"):
        return super().read_bytes(path, what) if self.store is None else self.store.read(path, what)

    def source_of(self, sample):
        """The folder of the sample's frames (DeepfakeBench's video): in the LMDB, its key's folder."""
        if self.store is None:
            return os.path.dirname(sample.image)
        return self.store.label("/".join(split_parts(self.store.key_of_label(sample.image))[:-1]))


__all__ = ["DeepfakeBenchJsonAdapter", "frame_order", "mask_path_of"]
