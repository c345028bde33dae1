"""Video data as DeepfakeBench reads it: ``frame_num`` frames per video, ``video_mode`` clips.

A video is the group of frames sharing one ``video`` identity (``<dataset>/<label or method
folder>/<video id>``; the adapters set it). Two rules apply to such data:

* **frames per video** (``frame_num``): a video with more frames than ``frame_num`` keeps
  ``frame_num`` of them spread evenly over its length (indices ``floor(i * n / frame_num)``).
  DeepfakeBench means to do the same (``training/dataset/abstract_dataset.py``), but its step is
  computed after ``total_frames`` has been overwritten with ``frame_num``, so the step is always 1
  and it keeps the *first* ``frame_num`` frames. In video mode it instead takes one window of
  ``frame_num`` consecutive frames (random start in train); here the even spread is used in both
  modes, so a clip's frames are consecutive among the kept frames.
* **clips** (``video_mode: true``, ``clip_size: T``): a video of ``n`` kept frames gives
  ``n // T`` clips of ``T`` consecutive frames (a video shorter than ``T`` gives none: left out
  with a warning, as DeepfakeBench, and listed with the skipped files; ``frame_num < T`` is a config error).
  Clip ``k`` lives in the segment ``[k * step, (k + 1) * step)`` with
  ``step = (n - T) // (n // T - 1)`` (one clip: ``step = 0``): in test (and val) it starts at ``k * step``; in train its start is drawn uniformly in the segment on every load, so each
  epoch sees other frames. DeepfakeBench draws the starts once when the dataset is built.

An item in video mode is ``image`` (T, 3, H, W), ``mask`` (T, 1, M, M) or None, ``label``,
``name`` (the first frame's path), ``video`` (the identity) and ``frames`` (all T paths);
:func:`~declip_plugin.data.base.collate_fn` stacks them into (B, T, 3, H, W) and (B, T, 1, M, M).
"""
import logging

import torch

from ..errors import ConfigError

logger = logging.getLogger(__name__)


def select_evenly(items, n):
    """``n`` items spread evenly over ``items`` (all of them when there are at most ``n``)."""
    items = list(items)
    if n is None or len(items) <= n:
        return items
    total = len(items)
    return [items[(i * total) // n] for i in range(n)]


def frame_num_for(frame_num, split, where):
    """A dataset spec's ``frame_num`` for ``split`` (int, or a mapping {train, test}; val uses test);
    None when not set. (The run config's is checked by its schema: ``RunConfig.frames_per_video``.)"""
    value = frame_num
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("train" if split == "train" else "test")
        if value is None:
            return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: frame_num must be a positive integer or {{train: N, test: N}}, got "
                          f"{frame_num!r}")
    return value


def clip_size_of(config, where):
    """``clip_size`` of a video-mode run config (a RunConfig; required there, its bounds the schema's)."""
    if config.clip_size is None:
        raise ConfigError(f"{where}: video_mode: true needs clip_size, a positive integer (frames per clip), "
                          f"got None")
    return config.clip_size


def check_frame_num(frame_num, clip_size, split, key):
    """In video mode the ``frame_num`` frames kept per video must hold a clip; ``key`` names the value
    the user set (``frame_num``, ``frame_num.test``, or a dataset spec's)."""
    if frame_num is not None and clip_size is not None and frame_num < clip_size:
        raise ConfigError(f"{key} is {frame_num}: fewer frames kept per video ({split} split) than clip_size="
                          f"{clip_size}, so no video gives a clip; set {key} >= {clip_size} or clip_size <= "
                          f"{frame_num}")


def clip_segments(n, clip_size):
    """``[(lo, hi), ...]``: clip ``k`` starts in ``range(lo, hi)`` (``hi > lo``), ``n // clip_size`` of
    them; empty when ``n < clip_size``."""
    count = n // clip_size
    if count == 0:
        return []
    step = (n - clip_size) // (count - 1) if count > 1 else 0
    last = n - clip_size  # the latest possible start
    return [(k * step, max(k * step + 1, min((k + 1) * step, last + 1))) for k in range(count)]


def clip_start(segment, train, generator=None):
    """The start of a clip in ``segment``: its first index in test, uniform in train."""
    lo, hi = segment
    if not train or hi - lo <= 1:
        return lo
    return lo + int(torch.randint(0, hi - lo, (), generator=generator).item())


def group_videos(videos, name):
    """``[(video, [sample indices in order]), ...]`` in order of first appearance; every sample
    needs a video identity."""
    order, groups = [], {}
    for i, v in enumerate(videos):
        if v is None:
            raise ConfigError(f"dataset {name} holds images, not frames of videos (no video identity per sample), but "
                              f"video_mode: true (a clip detector's config) reads clips of videos; use a video dataset "
                              f"(deepfakebench_json, or folder with video_dirs: true), or a frame-level detector")
        if v not in groups:
            groups[v] = []
            order.append(v)
        groups[v].append(i)
    return [(v, groups[v]) for v in order]


def limit_frames(samples, n):
    """Keep ``n`` evenly spread frames of every video of ``samples`` (sorted so that each video's
    frames are contiguous and in order); samples without a video are kept."""
    if n is None:
        return samples
    out, i = [], 0
    while i < len(samples):
        j = i
        while j < len(samples) and samples[j].video == samples[i].video:
            j += 1
        block = samples[i:j]
        out.extend(block if samples[i].video is None else select_evenly(block, n))
        i = j
    return out


class ClipIndex:
    """The clips of a dataset in video mode: per clip, its video and the segment of its start."""

    def __init__(self, videos, clip_size, train, name):
        self.clip_size, self.train = clip_size, train
        self.clips = []  # (video, [sample indices of the video], (lo, hi))
        self.short = []  # (video, frames) of the videos shorter than a clip: they give none
        for video, idx in group_videos(videos, name):
            segs = clip_segments(len(idx), clip_size)
            if not segs:
                self.short.append((video, len(idx)))
            self.clips.extend((video, idx, s) for s in segs)

    def __len__(self):
        return len(self.clips)

    def frames(self, k, generator=None):
        """The sample indices of clip ``k`` (random start in train)."""
        video, idx, seg = self.clips[k]
        s = clip_start(seg, self.train, generator)
        return video, idx[s:s + self.clip_size]


__all__ = ["select_evenly", "frame_num_for", "check_frame_num", "clip_size_of", "clip_segments", "clip_start", "group_videos",
           "limit_frames", "ClipIndex"]
