"""``folder`` adapter: any directory of manipulated images with a directory of masks.

Spec keys (paths relative to ``root``, which is relative to the data root unless absolute)::

    adapter: folder
    root: my_data                 # optional base directory (default: the data root)
    images: fake                  # manipulated images (required)
    masks: masks                  # their masks; leave out for detection-only data (mask None)
    real: real                    # optional real images (used when include_real is on)
    mask_polarity: normal         # normal: white = manipulated | inverted: white = untouched
    mask_match: same_stem         # same_stem | suffix | strip_last_underscore
    mask_suffix: _mask            # for suffix / strip_last_underscore
    split_dirs: false             # true: each directory has train/ val (or valid)/ test/ subdirs
    split: all                    # without split_dirs: all (every split is the whole folder)
                                  #   | hash (stable md5 of the file stem, split_ratios)
    split_ratios: [0.8, 0.1, 0.1]
    recursive: false              # also list subdirectories (mirrored under masks/)
    video_dirs: false             # true: every subdirectory of images/ (and real/) is one video, its
                                  #   files the frames (ordered by integer stem); masks/<video>/ mirrors it

With ``video_dirs`` each sample's ``video`` is ``<dataset name>/<images or real folder name>/<video
dir>``, the split rule (``split: hash``) keys on the video directory so a video's frames stay in one
split, and ``frame_num`` / ``video_mode`` (data/video.py) apply.
"""
import os

from .base import ManipulationDataset, MaskFinder, file_stem, split_dir


class FolderAdapter(ManipulationDataset):
    adapter = "folder"
    default_polarity = "normal"

    def _split_dir(self, directory):
        """The directory holding this split's files (``<dir>/<split>`` with split_dirs)."""
        return split_dir(directory, self.split) if self.spec.get("split_dirs") else directory

    def collect(self):
        base = self.resolve(self.spec.get("root") or ".")
        recursive = bool(self.spec.get("recursive", False))
        videos = bool(self.spec.get("video_dirs", False))
        key_of = (lambda p: os.path.basename(os.path.dirname(p))) if videos else file_stem
        recursive = recursive or videos
        keep = None if self.spec.get("split_dirs") else self.split_filter(key_of)
        images_dir = self._split_dir(self.resolve(self.require("images"), base))
        paths = self.list_manipulated(images_dir, recursive, keep)
        finder = None
        if self.spec.get("masks"):
            finder = MaskFinder(
                self._split_dir(self.resolve(self.spec["masks"], base)),
                self.spec.get("mask_match", "same_stem"),
                self.spec.get("mask_suffix", "_mask"),
            )
        else:
            self.has_masks = False
        samples = self.manipulated_samples(paths, finder, images_dir)
        if self.include_real and self.spec.get("real"):
            real_dir = self._split_dir(self.resolve(self.spec["real"], base))
            samples += self.real_samples(real_dir, recursive, keep)
        if videos:
            folder = {1: _folder_name(self.spec["images"]), 0: _folder_name(self.spec.get("real") or "real")}
            samples = [s._replace(video=f"{self.name}/{folder[s.label]}/{os.path.basename(os.path.dirname(s.image))}")
                       for s in samples]
        return samples

    def sort_key(self, sample):
        if sample.video is None:
            return (sample.image,)
        from .deepfakebench_json import frame_order

        return (sample.video, frame_order(sample.image), sample.image)


def _folder_name(path):
    return os.path.basename(os.path.normpath(str(path)))
