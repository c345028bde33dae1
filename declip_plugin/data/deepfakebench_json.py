"""``deepfakebench_json`` adapter: DeepfakeBench's dataset JSON files (frames of videos).

The JSON (written by DeepfakeBench's ``preprocessing/rearrange.py``)::

    {dataset: {label_name: {"train" | "val" | "test": {video: {"label": label_name,
                                                               "frames": [path, ...]}}}}}

FaceForensics++-style files put one more level, the compression (``c23``, ``c40``, ``raw``),
between the split and the videos; it is recognised and ``compression`` picks the level
(default c23). A dataset name ending in ``_c40`` (DeepfakeBench's ``FF-DF_c40``) reads the
``c40`` level of the name without the suffix.

Spec keys::

    adapter: deepfakebench_json
    json: dataset_json/FF-DF.json     # or dataset_json_folder + dataset (<folder>/<dataset>.json)
    dataset: FF-DF                    # top-level key (default: the only key in the file)
    label_dict: {FF-real: 0, FF-DF: 1} # default: config label_dict; any non-zero value is fake
    rgb_dir: .                        # base of relative frame paths (default: the data root)
    base_dir: .                       # base of frame paths starting with "." (DeepfakeBench runs
                                      #   from its checkout root; default: current directory)
    compression: c23
    with_mask: null                   # null: masks used when any manipulated frame has one
    frame_num: null                   # keep N evenly spread frames per video (see data/video.py;
                                      #   in video_mode the config's frame_num applies too)
    mask_polarity: normal

Frames are ordered by their integer file stem within each video (videos by name). The mask of a
frame is the frame path with its ``frames`` directory component replaced by ``masks`` (the last
one, if several); those masks have normal polarity (white = manipulated). Each item's ``video``
is ``<dataset>/<label folder>/<video>``: the full identity, so that FF++ videos with the same id
under different manipulation folders stay apart (DeepfakeBench's video AUC keys on the id alone). JSON files and relative paths are
resolved against the data root unless absolute; Windows separators in frame paths are accepted.
"""
import json
import os

from ..errors import ConfigError, DataError
from .base import ManipulationDataset, Sample, file_stem

COMPRESSIONS = ("c23", "c40", "raw")


def frame_order(path):
    """Sort key of a frame path: its integer file stem (non-numeric stems after, by name)."""
    stem = file_stem(path)
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def mask_path_of(frame_path):
    """The frame path with its last ``frames`` directory replaced by ``masks`` (None if none)."""
    parts = frame_path.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "frames":
            return "/".join(parts[:i] + ["masks"] + parts[i + 1:])
    return None


class DeepfakeBenchJsonAdapter(ManipulationDataset):
    adapter = "deepfakebench_json"
    default_polarity = "normal"

    def _json_path(self):
        if self.spec.get("json"):
            return self.resolve(self.spec["json"])
        folder = self.spec.get("dataset_json_folder") or self.config.get("dataset_json_folder")
        if not folder or not self.spec.get("dataset"):
            raise ConfigError(
                f"dataset {self.name} (adapter deepfakebench_json): give 'json' (a JSON file) or "
                f"'dataset_json_folder' and 'dataset'"
            )
        return os.path.join(self.resolve(folder), f"{self.spec['dataset']}.json")

    def _load(self, path):
        try:
            with open(path, "r", encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            raise DataError(f"dataset {self.name}: JSON file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"dataset {self.name}: cannot read JSON file {path}: {e}") from None

    def _dataset_entry(self, info, path):
        if not isinstance(info, dict) or not info:
            raise DataError(f"JSON file {path} is not a DeepfakeBench dataset file (expected {{dataset: {{label: ...}}}})")
        key = self.spec.get("dataset")
        compression = self.spec.get("compression") or self.config.get("compression") or "c23"
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
        path = self._json_path()
        info = self._load(path)
        key, entry, compression = self._dataset_entry(info, path)
        label_dict = self.spec.get("label_dict") or self.config.get("label_dict")
        if not isinstance(label_dict, dict) or not label_dict:
            raise ConfigError(f"dataset {self.name}: label_dict (label name -> 0 real / 1 fake) is required")
        rgb_dir = self.resolve(self.spec.get("rgb_dir") or ".")
        base_dir = os.path.abspath(os.path.expanduser(str(self.spec.get("base_dir") or ".")))
        split_keys = ("val", "valid") if self.split == "val" else (self.split,)
        self.looked_in.append(f"{path} [{key}/*/{self.split}]")

        samples = []
        for label_name, by_split in sorted(entry.items()):
            split_key = next((k for k in split_keys if isinstance(by_split, dict) and k in by_split), None)
            if split_key is None:
                continue
            where = f"JSON file {path}: {key}/{label_name}/{split_key}"
            for video, vinfo in sorted(self._videos(by_split[split_key], compression, where).items()):
                if not isinstance(vinfo, dict) or not isinstance(vinfo.get("frames"), list):
                    raise DataError(f"{where}: video {video!r} has no 'frames' list")
                vlabel = vinfo.get("label", label_name)
                if vlabel not in label_dict:
                    raise DataError(
                        f"{where}: label {vlabel!r} of video {video!r} is not in label_dict "
                        f"({', '.join(sorted(map(str, label_dict)))})"
                    )
                label = 1 if label_dict[vlabel] else 0
                if label == 0 and not self.include_real:
                    continue
                frames = sorted((self._resolve_frame(f, rgb_dir, base_dir) for f in vinfo["frames"]), key=frame_order)
                vid = f"{key}/{label_name}/{video}"
                samples.extend(Sample(f, label, mask_path_of(f.replace(os.sep, "/")), vid) for f in frames)
        return self._attach_masks(samples)

    def _attach_masks(self, samples):
        """Keep mask paths that exist; decide whether the dataset has masks (with_mask)."""
        listings = {}

        def exists(p):
            if p is None:
                return False
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
                self.problem(
                    s.image,
                    f"manipulated frame {s.image} has no mask (expected {expected}); set with_mask: false "
                    f"in the dataset spec for detection-only use",
                )
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
        return (sample.video or "", frame_order(sample.image), sample.image)


__all__ = ["DeepfakeBenchJsonAdapter", "frame_order", "mask_path_of"]
