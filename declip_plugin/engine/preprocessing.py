"""How the frames of a new video reach a checkpoint: made as the frames it was trained on were made.

``declip predict VIDEO`` decodes a video, samples frames, crops faces and resizes them; for its scores
to mean what ``declip test`` means, each step must be the one that made the checkpoint's training
data. :func:`resolve` decides each, from the first source that says:

1. the command line: ``--faces dlib|none``, ``--resize declip|deepfakebench``, ``--mode``,
   ``--num_frames``, ``--stride``;
2. the datasets the checkpoint was trained on (its config's ``train_dataset``): as the checkpoint
   records them (``declip train`` saves :func:`frames_record` in every checkpoint, so the checkpoint
   alone says it on a machine without those datasets), else as the dataset configs here declare them
   (data/catalog.py; checkpoints saved without the record):

   * faces and sampling: a set made by ``declip prepare`` records its settings in its dataset config
     (``prepared: {faces, size, margin, mode, num_frames, stride}``); without that record the
     adapter's ``faces`` says: DeepfakeBench-format data (``deepfakebench_json``) are DeepfakeBench's
     preprocessing, dlib face crops (256 px, margin 1.3, 32 frames per video: the defaults of
     ``declip prepare``, which are its); the other adapters hold whole images;
   * the resize: the adapter's policy (``ManipulationDataset.resize``, data/transforms.py RESIZES);
3. sampling nowhere recorded: DeepfakeBench's, 32 frames spread over the video (``fixed_num_frames``).

A training dataset no config here declares, or training datasets that disagree, with no flag to
settle it: a ConfigError naming them and the flag (nothing is guessed).
"""
import dataclasses
import logging
from typing import Optional

from ..data.catalog import dataset_spec, get_adapter
from ..data.transforms import DEFAULT_RESIZE, RESIZES
from ..errors import ConfigError, DeclipError
from ..media.video import SAMPLING_MODES, Sampling
from ..media.faces import DEFAULT_MARGIN, DEFAULT_SIZE, FACE_MODES

logger = logging.getLogger(__name__)

#: the frame-making choices a dataset decides, with the flag that overrides each
FLAGS = {"faces": "--faces", "size": "--faces", "margin": "--faces", "resize": "--resize"}
SAMPLING_FLAGS = {"mode": "--mode", "num_frames": "--num_frames", "stride": "--stride"}


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What is done to a video's frames before the detector sees them (see the module docstring).
    ``source`` says where each choice came from, for the log and predictions.json."""

    faces: str
    size: Optional[int]
    margin: Optional[float]
    resize: str
    sampling: Sampling
    source: dict

    def record(self):
        return {"faces": self.faces, "face_size": self.size, "face_margin": self.margin, "resize": self.resize,
                "sampling": dataclasses.asdict(self.sampling), "from": dict(self.source)}

    def describe(self):
        s = self.sampling
        frames = (f"{s.num_frames} frames spread over each video" if s.mode == "fixed_num_frames" else
                  f"every {s.stride}th frame")
        faces = (f"dlib face crops of {self.size} px (margin {self.margin})" if self.faces == "dlib" else
                 "whole frames")
        return (f"videos: {frames} ({self.source['sampling']}), {faces} ({self.source['faces']}), resized as "
                f"{self.resize} ({self.source['resize']})")


def _prepared(name, spec, where):
    """The ``prepared`` record of a dataset spec, checked."""
    rec = spec.get("prepared") or {}
    if not isinstance(rec, dict):
        raise ConfigError(f"dataset {name} ({where}): 'prepared' must be a mapping (faces, size, margin, mode, "
                          f"num_frames, stride), got {rec!r}")
    if rec.get("faces") is not None and rec["faces"] not in FACE_MODES:
        raise ConfigError(f"dataset {name} ({where}): prepared.faces {rec['faces']!r}: use {' or '.join(FACE_MODES)}")
    if rec.get("mode") is not None and rec["mode"] not in SAMPLING_MODES:
        raise ConfigError(f"dataset {name} ({where}): prepared.mode {rec['mode']!r}: use one of "
                          f"{', '.join(SAMPLING_MODES)}")
    return rec


def from_dataset(name, config=None):
    """How dataset ``name``'s frames were made: {faces, size, margin, resize, mode, num_frames, stride}
    (None where it does not say), or None when no dataset config here declares ``name``."""
    try:
        spec = dataset_spec(name, config)
        adapter = get_adapter(spec["adapter"])
    except DeclipError:
        return None
    rec = _prepared(name, spec, "its dataset config")
    faces = rec.get("faces") or getattr(adapter, "faces", "none")
    cropped = faces == "dlib"
    return {"faces": faces, "size": (int(rec.get("size") or DEFAULT_SIZE)) if cropped else None,
            "margin": float(rec.get("margin") or DEFAULT_MARGIN) if cropped else None,
            "resize": getattr(adapter, "resize", DEFAULT_RESIZE),
            "mode": rec.get("mode"), "num_frames": rec.get("num_frames"), "stride": rec.get("stride")}


def frames_record(config):
    """``{dataset: how its frames were made}`` (:func:`from_dataset`) for the training datasets of run
    ``config`` that a dataset config here declares: what ``declip train`` saves in its checkpoints."""
    found = {n: from_dataset(n, config) for n in _train_datasets(config)}
    return {n: f for n, f in found.items() if f is not None}


def _recorded(recorded, checkpoint, flags_given):
    """A checkpoint's ``frames`` record, checked ({} when it has none). A damaged one is an error, unless
    ``--faces`` and ``--resize`` are both given: then it is left unread, with a warning."""
    recorded = recorded or {}
    keys = {"faces", "size", "margin", "resize", "mode", "num_frames", "stride"}
    bad = [n for n, r in recorded.items() if not isinstance(r, dict) or not set(r) <= keys
           or r.get("faces") not in FACE_MODES or r.get("resize") not in RESIZES] if isinstance(recorded, dict) else []
    if isinstance(recorded, dict) and not bad:
        return recorded
    what = (f"checkpoint {checkpoint}: its record of how the training frames were made ('frames') is damaged"
            f"{' at ' + ', '.join(map(str, bad)) if bad else ''}")
    if not flags_given:
        raise ConfigError(f"{what}; pass --faces and --resize (and the sampling flags) to decide without it")
    logger.warning("%s; not read: --faces and --resize decide", what)
    return {}


def _agree(key, found, flag_value, names):
    """The one value of ``key`` the training sets give (or the flag's); ConfigError when they disagree."""
    if flag_value is not None:
        return flag_value, FLAGS.get(key) or SAMPLING_FLAGS[key]
    values = {n: f[key] for n, f in found.items() if f.get(key) is not None}
    distinct = set(values.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{n} {v}" for n, v in values.items())
        flag = FLAGS.get(key) or SAMPLING_FLAGS[key]
        raise ConfigError(f"the checkpoint's training datasets were made differently ({key}: {listed}): pass {flag} "
                          f"to say how to make the frames of a new video")
    if not distinct:
        return None, None
    return distinct.pop(), "as in dataset " + " + ".join(names)


def _train_datasets(config):
    return [str(n) for n in config.train_dataset or []]


def resolve(config, faces=None, resize=None, mode=None, num_frames=None, stride=None, checkpoint="", recorded=None):
    """The :class:`Preprocessing` for a checkpoint's run ``config`` and its ``frames`` record (``recorded``; see
    the module docstring)."""
    if resize is not None and resize not in RESIZES:
        raise ConfigError(f"--resize {resize!r}: use one of {', '.join(sorted(RESIZES))}")
    recorded = _recorded(recorded, checkpoint, faces is not None and resize is not None)
    names = _train_datasets(config)
    found = {n: recorded.get(n) or from_dataset(n, config) for n in names}
    unknown = [n for n, f in found.items() if f is None]
    found = {n: f for n, f in found.items() if f is not None}
    missing = [flag for flag, value in (("--faces dlib|none", faces), (f"--resize {'|'.join(sorted(RESIZES))}",
                                                                        resize)) if value is None]
    if missing and (unknown or not names):
        what = (f"on dataset {', '.join(unknown)}, which no dataset config here declares" if unknown else
                "without a train_dataset in its config")
        raise ConfigError(f"checkpoint {checkpoint} was trained {what}, so how its frames were made is unknown: pass "
                          f"{' and '.join(missing)} (`declip datasets` lists the declared datasets)")
    known = [f"{n} (recorded in the checkpoint)" if n in recorded else n for n in found]
    face_mode, face_src = _agree("faces", found, faces, known)
    size = margin = None
    if face_mode == "dlib":
        size = _agree("size", found, None, known)[0] or DEFAULT_SIZE
        margin = _agree("margin", found, None, known)[0] or DEFAULT_MARGIN
    policy, resize_src = _agree("resize", found, resize, known)
    sampling, sampling_src = _sampling(found, known, mode, num_frames, stride)
    return Preprocessing(face_mode, size, margin, policy, sampling,
                         {"faces": face_src, "resize": resize_src, "sampling": sampling_src})


def _sampling(found, known, mode, num_frames, stride):
    default = Sampling()  # DeepfakeBench's preprocessing: 32 frames spread over the video
    values, sources = {}, set()
    for key, flag_value, fallback in (("mode", mode, default.mode), ("num_frames", num_frames, default.num_frames),
                                      ("stride", stride, default.stride)):
        value, src = _agree(key, found, flag_value, known)
        values[key] = fallback if value is None else value
        if src:
            sources.add(src)
    source = " and ".join(sorted(sources)) or "DeepfakeBench's preprocessing default"
    try:
        return Sampling(str(values["mode"]), int(values["num_frames"]), int(values["stride"])), source
    except (TypeError, ValueError) as e:
        raise ConfigError(f"frame sampling {values}: {e}") from None


__all__ = ["Preprocessing", "frames_record", "from_dataset", "resolve"]
