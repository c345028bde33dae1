"""Frames of a video file, of a folder of frame images, or of one image, sampled as DeepfakeBench samples.

Decoding: OpenCV's ``VideoCapture`` with its FFmpeg backend (opencv-python is a requirement already,
and its wheels carry FFmpeg: mp4, avi, mov, mkv, webm). It is also the decoder DeepfakeBench's
``preprocessing/preprocess.py`` reads videos with, so the frames are the ones it would crop.

A video is decoded once, front to back: every frame is ``grab()``-bed, only the sampled ones are
``retrieve()``-d (converted to RGB); nothing seeks. The frame count is the number of frames that
decode, not the container's header: the header's count only plans the first pass. When the two
differ (a header that lies, a truncated file) the sample is taken over the decoded count, and the
frames of it that the first pass did not yield are read in a second pass. So an iteration may yield
frames that end up outside the sample; after it, :attr:`Frames.indices` holds the sample: keep
only those.

Sampling (:class:`Sampling`), as preprocess.py: ``fixed_num_frames`` takes
``np.linspace(0, n - 1, num_frames, dtype=int)`` (each index once: a video shorter than
``num_frames`` gives all its frames), ``fixed_stride`` every ``stride``-th frame from 0.

A companion (a per-video mask video, as FaceForensics++ ships them, or a folder of per-frame masks)
is read in step with its video; it yields single-channel uint8 masks (the largest channel value of
a colour mask). Frames and masks of a video end where either ends (as preprocess.py); the count of
both is logged when they differ.
"""
import dataclasses
import logging
import os

import cv2
import numpy as np

from ..errors import DataError

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SAMPLING_MODES = ("fixed_num_frames", "fixed_stride")
#: the kinds of frame source :func:`open_frames` reads
FRAME_SOURCES = ("video", "frames", "image")


class MediaError(DataError):
    """A video or image that cannot be read (the message names the file)."""


def is_video_file(name):
    return str(name).lower().endswith(VIDEO_EXTENSIONS)


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Which frames of a video of ``n`` frames are taken (DeepfakeBench's preprocessing modes)."""

    mode: str = "fixed_num_frames"
    num_frames: int = 32
    stride: int = 10

    def __post_init__(self):
        if self.mode not in SAMPLING_MODES:
            raise DataError(f"sampling mode {self.mode!r}: use one of {', '.join(SAMPLING_MODES)}")
        if self.num_frames < 1 or self.stride < 1:
            raise DataError(f"num_frames and stride must be positive, got {self.num_frames} and {self.stride}")

    def indices(self, n):
        """The sorted frame indices taken from a video of ``n`` frames."""
        if n <= 0:
            return []
        if self.mode == "fixed_stride":
            return list(range(0, n, self.stride))
        return sorted(set(np.linspace(0, n - 1, self.num_frames, endpoint=True, dtype=int).tolist()))

    def independent_of_length(self):
        """True when whether frame i is taken does not depend on the video's length."""
        return self.mode == "fixed_stride"


def quiet_decoder_logs():
    """Silence FFmpeg's and OpenCV's own messages on stderr ("moov atom not found", "[ WARN:0] ...") in
    this process: a file that does not decode is reported as a :class:`MediaError` naming it instead.
    Call it before the first video is opened (FFmpeg reads its level then)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # an OpenCV build without the logging utilities
        pass


def _open_capture(path, what):
    if not os.path.isfile(path):
        raise MediaError(f"{what} {path} does not exist")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise MediaError(f"{what} {path} is not a video OpenCV/FFmpeg can open (corrupt, empty or another kind "
                         f"of file)")
    return cap


def mask_channel(mask):
    """A mask image (H, W) or (H, W, C) -> uint8 (H, W): its largest channel value."""
    mask = np.asarray(mask)
    return mask if mask.ndim == 2 else mask.max(axis=2)


class _Capture:
    """Sequential access to one video file: :meth:`next` decodes the next frame, :meth:`read` converts it."""

    def __init__(self, path, what):
        self.path, self.what = path, what
        self.cap = _open_capture(path, what)

    def header_count(self):
        n = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        return int(n) if n and n > 0 else 0

    def next(self):
        return bool(self.cap.grab())

    def read(self, index):
        ok, bgr = self.cap.retrieve()
        if not ok or bgr is None:
            raise MediaError(f"{self.what} {self.path}: frame {index} does not decode")
        return bgr

    def close(self):
        self.cap.release()


class _Images:
    """A list of image files read like a video (a folder of frames, one image, or per-frame masks)."""

    def __init__(self, paths, what):
        self.paths, self.what, self.pos = list(paths), what, -1

    def header_count(self):
        return len(self.paths)

    def next(self):
        self.pos += 1
        return self.pos < len(self.paths)

    def read(self, index):
        path = self.paths[self.pos]
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise MediaError(f"{self.what} {path} cannot be decoded (not an image, or a corrupt file)")
        return img

    def close(self):
        pass


def _source(kind, path, what):
    if kind == "video":
        return _Capture(path, what)
    return _Images(path if isinstance(path, (list, tuple)) else [path], what)


class Frames:
    """The sampled frames of one source: iterate for ``(index, rgb, mask or None)``.

    ``kind`` is ``video`` (``path`` a video file), ``frames`` (``path`` the sorted list of a video's
    frame images) or ``image`` (one image file); ``mask`` the same kind of thing for its mask (a mask
    video, a list of mask images, one mask image). After an iteration: :attr:`indices` (the
    sample, over :attr:`decoded` frames), :attr:`header` (the count the container declared),
    :attr:`passes`."""

    def __init__(self, kind, path, sampling, mask=None):
        if kind not in FRAME_SOURCES:
            raise ValueError(f"kind {kind!r}: one of {FRAME_SOURCES}")
        self.kind, self.path, self.sampling, self.mask = kind, path, sampling, mask
        self.indices, self.decoded, self.header, self.passes = None, None, None, 0
        self.mask_decoded = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _open(self):
        src = _source(self.kind, self.path, "video" if self.kind == "video" else "image")
        try:
            companion = _source(self.kind, self.mask, "mask") if self.mask is not None else None
        except BaseException:
            src.close()
            raise
        return src, companion

    def __iter__(self):
        src, companion = self._open()
        self.header = src.header_count()
        if self.sampling.independent_of_length():
            plan = lambda i: i % self.sampling.stride == 0  # noqa: E731
        else:
            plan = set(self.sampling.indices(self.header)).__contains__
        yielded = set()
        try:
            for item in self._decode(src, companion, plan):
                yielded.add(item[0])
                yield item
        finally:
            src.close()
            if companion is not None:
                companion.close()
        self.passes = 1
        self.indices = self.sampling.indices(self.decoded)
        missing = {i for i in self.indices if i not in yielded}
        if missing:
            logger.info("%s: the header says %d frames, %d decode: a second pass for the %d sampled frames the first "
                        "one did not read", self._name(), self.header, self.decoded, len(missing))
            yield from self._second_pass(missing)

    def _second_pass(self, missing):
        count = self.decoded
        src, companion = self._open()
        try:
            yield from self._decode(src, companion, missing.__contains__, stop=max(missing) + 1)
        finally:
            src.close()
            if companion is not None:
                companion.close()
        self.decoded, self.passes = count, 2

    def _name(self):
        return self.path if isinstance(self.path, str) else os.path.dirname(self.path[0]) if self.path else "?"

    def _decode(self, src, companion, wanted, stop=None):
        """Decode front to back; yield the frames ``wanted(i)`` picks; set :attr:`decoded` (a full pass)."""
        i, video_ended = 0, False
        while stop is None or i < stop:
            if not src.next():
                video_ended = True
                break
            if companion is not None and not companion.next():
                self._mask_ended(i)
                break
            if wanted(i):
                yield (i, *self._read(src, companion, i))
            i += 1
        if stop is None:
            if video_ended and companion is not None and companion.next():
                logger.warning("%s: its mask %s has more frames than the %d the video decodes; the rest are not used",
                               self._name(), self._mask_name(), i)
            self.decoded = i

    def _read(self, src, companion, i):
        frame = cv2.cvtColor(src.read(i), cv2.COLOR_BGR2RGB)
        mask = mask_channel(companion.read(i)) if companion is not None else None
        if mask is not None and mask.shape[:2] != frame.shape[:2]:
            raise MediaError(f"mask {self._mask_name()} is {mask.shape[1]}x{mask.shape[0]} at frame {i}, its video "
                             f"{self._name()} {frame.shape[1]}x{frame.shape[0]}: masks must have their frames' size")
        return np.ascontiguousarray(frame), mask

    def _mask_ended(self, i):
        logger.warning("%s: its mask %s ends after %d frames; the video's frames after it are not used",
                       self._name(), self._mask_name(), i)

    def _mask_name(self):
        return self.mask if isinstance(self.mask, str) else os.path.dirname(self.mask[0]) if self.mask else "?"


def open_frames(path, sampling=None, mask=None, kind=None):
    """:class:`Frames` of ``path``: a video file, a list of frame images, or an image file (``kind``
    guessed from ``path`` when not given)."""
    if kind is None:
        kind = "frames" if isinstance(path, (list, tuple)) else "video" if is_video_file(path) else "image"
    return Frames(kind, path, sampling or Sampling(), mask)


__all__ = ["FRAME_SOURCES", "VIDEO_EXTENSIONS", "MediaError", "Sampling", "Frames", "open_frames", "is_video_file",
           "mask_channel", "quiet_decoder_logs"]
