"""``declip datasets --check``: what would make a dataset's numbers wrong, found before a run.

Every split (train, val, test) of every named dataset is listed by its own adapter in inspection
mode (the run config's ``inspect``, data/base.py: an adapter's problems are listed, not raised; nothing is decoded at
construction), then every frame and mask file is read once (shared files once for all datasets and
splits), hashed from those bytes (digests.py) and checked from them (read_files), on a thread pool.
A dataset named only as a test dataset is read in its test split alone (its other splits are never
used); every other one in all three.

The checks, one table row per check and dataset (status ``ok``, ``FAIL`` or ``n/a``, a count and a
few examples):

``video_split_leak``       a source video in two splits of the dataset. The source is what the adapter
                           knows (``ManipulationDataset.source_of``): the folder of a video's frames for
                           DeepfakeBench-format data (its LMDB key's folder when read from the LMDB) and
                           for ``folder`` with ``video_dirs``; image adapters know none (``n/a``).
``frame_split_leak``       a byte-identical frame (sha256 of the file) in two splits of the dataset.
``video_train_test_leak``  with train and test datasets named: a source video of a train dataset's
``frame_train_test_leak``  train or val split in a test dataset's test split; byte-identical frames
                           likewise (rows on the test dataset).
``label_dict``             labels of the dataset's JSON missing from its label_dict (adapters with a
                           label_dict; the others take labels from their layout: ``n/a``).
``masks``                  manipulated frames without a mask, where masks are needed: the dataset has
                           masks (``with_mask``, or mask files found), or the detector named produces
                           masks and its config has ``with_mask: true`` (then a dataset without masks
                           fails for every manipulated frame).
``decode``                 frames and masks that are missing, cannot be read or do not decode
                           (truncated, corrupt, not an image; a mask that is not binary or does not fit
                           its frame), and JSON entries that list no frames.
"""
import collections
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, NamedTuple, Optional

from ..digests import bytes_digest
from ..errors import DataError
from . import images
from ..config import RunConfig
from .base import SPLITS

CHECKS = ("video_split_leak", "frame_split_leak", "video_train_test_leak", "frame_train_test_leak", "label_dict",
          "masks", "decode")
EXAMPLES = 3
#: the splits of a train dataset a training run reads (model selection included)
TRAIN_SPLITS = ("train", "val")


class Row(NamedTuple):
    dataset: str
    check: str
    status: str           # ok | FAIL | n/a
    count: int
    examples: List[str]


class FileResult(NamedTuple):
    digest: Optional[str]
    size: Optional[tuple]     # (w, h)
    error: Optional[str]


@dataclasses.dataclass
class Inspected:
    """One dataset's splits as its adapter lists them in inspection mode."""

    name: str
    adapter: str
    splits: dict  # split -> dataset (splits without samples included)

    def samples(self, split):
        ds = self.splits[split]
        return [(img, label, mask, src) for (img, label, mask), src in zip(ds.samples, ds.sources)]


@dataclasses.dataclass
class Report:
    rows: List[Row]
    inspected: List[Inspected]
    files: int
    seconds: float

    @property
    def failed(self):
        return [r for r in self.rows if r.status == "FAIL"]


def inspect_dataset(name, config, splits=SPLITS):
    """:class:`Inspected` of the ``splits`` of dataset ``name`` (DataError / ConfigError for what keeps it from
    being read)."""
    from . import build_dataset

    cfg = RunConfig.of(config).replace(inspect=True, include_real=True, video_mode=False, max_samples=None,
                                       skip_bad_files=False)
    built = {split: build_dataset(name, split, cfg) for split in splits}
    return Inspected(name, next(iter(built.values())).adapter, built)


def _read_frame(ds, path):
    digest = None
    try:
        data = ds.read_bytes(path, "image")
        digest = bytes_digest(data)
        return FileResult(digest, images.probe_bytes(data, path), None)
    except DataError as e:
        return FileResult(digest, None, str(e))


def _read_mask(ds, path):
    try:
        mask = ds.read_mask(path)
        return FileResult(None, (mask.shape[1], mask.shape[0]), None)
    except DataError as e:
        return FileResult(None, None, str(e))


def read_files(inspected, workers=None):
    """``(frames, masks)``: ``{path: FileResult}`` of every frame and mask of the datasets, each file read once,
    hashed and checked from those bytes (frames by the integrity check of skip_bad_files, ``images.probe_bytes``;
    masks decoded in full, as a sample loads them)."""
    from ..progress import progress

    frames, masks = {}, {}
    for item in inspected:
        for ds in item.splits.values():
            for image, _, mask in ds.samples:
                frames.setdefault(image, ds)
                if mask is not None:
                    masks.setdefault(mask, ds)
    jobs = [(_read_frame, ds, path) for path, ds in frames.items()] + [(_read_mask, ds, path) for path, ds in masks.items()]
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # hashlib and OpenCV work without the GIL
        results = list(progress(pool.map(lambda job: job[0](job[1], job[2]), jobs), "reading files", unit="file",
                                summary=False))
    return dict(zip(frames, results[:len(frames)])), dict(zip(masks, results[len(frames):]))


def _row(dataset, check, found, na=None):
    """A row from ``found`` (a list of example strings, one per finding); ``na``: not applicable (its reason)."""
    if na is not None:
        return Row(dataset, check, "n/a", 0, [na])
    return Row(dataset, check, "FAIL" if found else "ok", len(found), found[:EXAMPLES])


def split_leaks(item, frames):
    """The two within-dataset leak rows of ``item``."""
    if list(item.splits) == ["test"]:
        why = "a test dataset only: its test split alone is read"
        return [_row(item.name, "video_split_leak", [], why), _row(item.name, "frame_split_leak", [], why)]
    sources, digests = collections.defaultdict(dict), collections.defaultdict(dict)
    known = False
    for split in item.splits:
        for image, _, _, source in item.samples(split):
            if source is not None:
                known = True
                sources[source].setdefault(split, image)
            digest = frames[image].digest
            if digest is not None:
                digests[digest].setdefault(split, image)
    videos = [f"{source} in {', '.join(where)}" for source, where in sorted(sources.items()) if len(where) > 1]
    same = [_same_bytes(list(where.items())) for where in digests.values() if len(where) > 1]
    return [_row(item.name, "video_split_leak", videos,
                 None if known else f"adapter {item.adapter} knows no source video of its images"),
            _row(item.name, "frame_split_leak", sorted(same))]


def _same_bytes(places):
    """``[(where, path)]`` of one frame's bytes as an example: the file once when it is the same file."""
    if len({path for _, path in places}) == 1:
        return f"{places[0][1]} in {', '.join(where for where, _ in places)}"
    return " = ".join(f"{where} {path}" for where, path in places)


def train_test_leaks(test, trains, frames):
    """The two train/test leak rows of the test dataset ``test`` against the train datasets ``trains``."""
    sources, digests = {}, {}
    for train in trains:
        if train.name == test.name:
            continue  # its own splits: split_leaks
        for split in TRAIN_SPLITS:
            for image, _, _, source in train.samples(split):
                if source is not None:
                    sources.setdefault(source, f"{train.name}/{split}")
                digest = frames[image].digest
                if digest is not None:
                    digests.setdefault(digest, (f"{train.name}/{split}", image))
    videos, same = [], []
    for image, _, _, source in test.samples("test"):
        if source is not None and source in sources:
            videos.append(f"{source} in {sources[source]}, {test.name}/test")
        digest = frames[image].digest
        if digest is not None and digest in digests:
            same.append(_same_bytes([digests[digest], (f"{test.name}/test", image)]))
    return [_row(test.name, "video_train_test_leak", sorted(set(videos))),
            _row(test.name, "frame_train_test_leak", same)]


def label_row(item):
    if not any(hasattr(ds, "label_dict") for ds in item.splits.values()):
        return _row(item.name, "label_dict", [], f"adapter {item.adapter} takes labels from its folder layout")
    found = [f"{split}: {path}" for split, ds in item.splits.items() for kind, path, _ in ds.problems
             if kind == "label"]
    return _row(item.name, "label_dict", found)


def mask_row(item, needs_masks, detector):
    has_masks = any(ds.has_masks for ds in item.splits.values() if ds.samples)
    if has_masks:
        found = [f"{split}: {path}" for split, ds in item.splits.items() for kind, path, _ in ds.problems
                 if kind == "mask"]
        return _row(item.name, "masks", found)
    if not needs_masks:
        return _row(item.name, "masks", [], "no masks (detection data) and no localization detector named")
    fakes = [f"{split}: {img}" for split in item.splits for img, label, _, _ in item.samples(split) if label == 1]
    why = f"the dataset has no masks, and detector {detector} trains and is tested on masks"
    return Row(item.name, "masks", "FAIL" if fakes else "ok", len(fakes), ([why] + fakes)[:EXAMPLES] if fakes else [])


def decode_row(item, frames, masks):
    found, seen = [], set()
    for split, ds in item.splits.items():
        found += [f"{split}: {reason}" for kind, _, reason in ds.problems if kind == "file"]
        for image, _, mask in ds.samples:
            if image in seen:
                continue
            seen.add(image)
            frame = frames[image]
            if frame.error:
                found.append(f"{split}: {frame.error}")
            elif mask is not None:
                found += [f"{split}: {e}" for e in _mask_errors(masks[mask], mask, frame, image)]
    return _row(item.name, "decode", found)


def _mask_errors(result, mask, frame, image):
    if result.error:
        return [result.error]
    try:
        images.check_mask_fits(result.size, frame.size, mask, image)
    except DataError as e:
        return [str(e)]
    return []


def check_datasets(names, config, train=(), test=(), needs_masks=False, detector=None, workers=None):
    """The :class:`Report` of the checks of the module docstring on the datasets ``names`` and those of ``train``
    and ``test``: all three splits of each, but only the test split of a dataset named in ``test`` alone (a
    test dataset's other splits are never read: DeepfakeBench's rearrange.py lists every UADFV video in
    all three splits, and the Celeb-DF test videos in train and val too). DataError / ConfigError before
    anything is read for a name that cannot be read."""
    from .catalog import dataset_spec

    test_only = set(test) - set(train) - set(names)
    names = list(dict.fromkeys([*names, *train, *test]))
    for name in names:  # every name known before any file is read
        dataset_spec(name, config)
    start = time.perf_counter()
    inspected = {name: inspect_dataset(name, config, ("test",) if name in test_only else SPLITS) for name in names}
    frames, masks = read_files(inspected.values(), workers)
    rows = []
    for name in names:
        item = inspected[name]
        rows += split_leaks(item, frames)
        if name in test and train:
            rows += train_test_leaks(item, [inspected[t] for t in train], frames)
        rows += [label_row(item), mask_row(item, needs_masks, detector), decode_row(item, frames, masks)]
    return Report(rows, list(inspected.values()), len(frames) + len(masks), time.perf_counter() - start)


def format_report(report):
    """The lines ``declip datasets --check`` prints: what was read per dataset, then the table."""
    lines = []
    for item in report.inspected:
        counts = ", ".join(f"{split} {len(ds.samples)}" for split, ds in item.splits.items())
        lines.append(f"{item.name} ({item.adapter}): frames per split: {counts}")
    lines.append(f"{report.files} files read, hashed and decoded in {report.seconds:.1f} s")
    width = max([len("dataset")] + [len(r.dataset) for r in report.rows])
    lines.append(f"{'dataset':{width}s}  {'check':21s}  {'status':6s}  {'count':>6s}  examples")
    for r in report.rows:
        lines.append(f"{r.dataset:{width}s}  {r.check:21s}  {r.status:6s}  {r.count:6d}  {' | '.join(r.examples)}".rstrip())
    failed = report.failed
    lines.append(f"{len(failed)} of {len(report.rows)} checks failed" if failed
                 else f"all {len(report.rows)} checks passed")
    return lines


__all__ = ["CHECKS", "Row", "Report", "check_datasets", "format_report", "inspect_dataset", "read_files"]
