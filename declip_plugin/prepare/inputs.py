"""What ``declip prepare`` reads: the videos and images of SRC, their labels, masks, names and splits.

SRC is a folder or a CSV file:

* a folder with ``real/`` and/or ``fake/`` (any case): the label is the folder's; anything beside
  them is left out (and counted). With ``--label real|fake`` every file under SRC has that label.
* a CSV file, one row per input: ``path,label[,mask]`` (a header row is allowed); ``path`` (a video,
  an image, or with ``--frame_folders`` a folder of frames) and ``mask`` relative to the CSV's
  folder; ``label`` ``real``, ``fake``, ``0`` or ``1``.

Under a label folder every video file (:data:`~declip_plugin.media.VIDEO_EXTENSIONS`) is one video;
every image is a one-frame video, unless ``--frame_folders``: then a folder of images is one video,
its images the frames in the order of their integer file names. Other files are left out (counted).

A video's name in the dataset (its ``frames/<name>/`` folder and JSON key) is its path under its
label folder without the extension, ``/`` replaced by ``_``. DeepfakeBench's video AUC groups frames by
that folder name alone, so a name found under both labels gets the label in front (``real_clip1``,
``fake_clip1``). Two inputs of one label with the same name are an error.

Masks (``--masks DIR``): a fake's mask is the file under DIR at the same path as the fake under its
label folder (any extension), else the one file under DIR with its file name: a mask video for a video
(as FaceForensics++ ships them), a mask image for an image, a folder of mask images (same file names)
for a folder of frames. Every fake needs one and every mask must belong to a fake.

Splits are made per source video, never per frame: ``--split hash`` (default) puts a video in train,
val or test by the md5 of its file name (``split_ratios``, default 0.8 0.1 0.1), so the real and the
fake of one source with the same file name land in the same split; ``--split train|val|test`` puts all
in one split.
"""
import csv
import dataclasses
import os

from ..data.base import SPLITS, hash_split
from ..data.deepfakebench_json import frame_order
from ..data.images import is_image_file
from ..errors import DataError
from .. import deepfakebench_facts as facts
from ..media import VIDEO_EXTENSIONS, is_video_file
from .item import LABEL_WORDS, Item

LABELS = {"real": 0, "fake": 1, "0": 0, "1": 1}
SPLIT_CHOICES = ("hash",) + SPLITS


@dataclasses.dataclass
class Found:
    items: list
    ignored: list  # files that are neither videos nor images, or outside real/ and fake/


def parse_label(value, where):
    key = str(value).strip().lower()
    if key not in LABELS:
        raise DataError(f"{where}: label {value!r}: use real, fake, 0 or 1")
    return LABELS[key]


def _frame_list(folder, where):
    files = sorted((n for n in os.listdir(folder) if is_image_file(n) and not n.startswith(".")), key=frame_order)
    if not files:
        raise DataError(f"{where}: folder {folder} holds no images")
    return tuple(os.path.join(folder, n) for n in files)


def _walk(root, label, frame_folders, found, skip=()):
    """Every input under the label folder ``root`` (not under the folders ``skip``: OUT)."""
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                         os.path.realpath(os.path.join(dirpath, d)) not in skip)
        files = sorted(f for f in files if not f.startswith("."))
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel = (lambda n: n) if rel_dir == "." else (lambda n: f"{rel_dir}/{n}")
        images = [f for f in files if is_image_file(f)]
        if frame_folders and images and rel_dir != ".":
            found.items.append(Item("frames", _frame_list(dirpath, dirpath), label, rel_dir))
            images = []
        for f in files:
            path = os.path.join(dirpath, f)
            if is_video_file(f):
                found.items.append(Item("video", path, label, rel(f)))
            elif f in images:
                found.items.append(Item("image", path, label, rel(f)))
            elif not is_image_file(f):
                found.ignored.append(path)


def _label_roots(src, label):
    if label is not None:
        return [(src, parse_label(label, "--label"))], []
    roots, others = [], []
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if os.path.isdir(path) and entry.lower() in ("real", "fake"):
            roots.append((path, LABELS[entry.lower()]))
        elif not entry.startswith("."):
            others.append(path)
    if not roots:
        raise DataError(f"SRC {src} has no real/ or fake/ folder: put the videos and images there, pass --label real "
                        f"or --label fake for all of SRC, or give a CSV file (path,label[,mask])")
    return roots, others


def find_inputs(src, label=None, frame_folders=False, skip=()):
    """:class:`Found` of SRC (a folder or a CSV file, see the module docstring); folders in ``skip``
    (OUT, when it lies inside SRC) are not looked into."""
    src = os.path.abspath(os.path.expanduser(str(src)))
    if os.path.isfile(src) and src.lower().endswith(".csv"):
        return read_csv(src, frame_folders)
    if not os.path.isdir(src):
        raise DataError(f"SRC {src} " + ("does not exist" if not os.path.exists(src) else
                                         "is neither a folder nor a CSV file (path,label[,mask])"))
    roots, others = _label_roots(src, label)
    found = Found([], list(others))
    skip = {os.path.realpath(p) for p in skip}
    found.ignored = [p for p in found.ignored if os.path.realpath(p) not in skip]
    for root, lab in roots:
        _walk(root, lab, frame_folders, found, skip)
    if not found.items:
        raise DataError(f"SRC {src}: no videos ({', '.join(e[1:] for e in VIDEO_EXTENSIONS)}) or images found under "
                        f"{', '.join(r for r, _ in roots)}")
    return found


def _csv_item(row, base, where, frame_folders):
    path = os.path.normpath(os.path.join(base, row[0].strip()))
    label = parse_label(row[1], where)
    if os.path.isdir(path) and frame_folders:
        kind, target = "frames", _frame_list(path, where)
    elif os.path.isfile(path) and (is_video_file(path) or is_image_file(path)):
        kind, target = ("video" if is_video_file(path) else "image"), path
    elif not os.path.exists(path):
        raise DataError(f"{where}: {path} does not exist")
    else:
        raise DataError(f"{where}: {path} is not a video or image file" +
                        ("" if not os.path.isdir(path) else " (a folder: pass --frame_folders to read it as frames)"))
    mask = os.path.normpath(os.path.join(base, row[2].strip())) if len(row) > 2 and row[2].strip() else None
    if mask is not None and not os.path.exists(mask):
        raise DataError(f"{where}: mask {mask} does not exist")
    if mask is not None and label == 0:
        raise DataError(f"{where}: a mask for a real input; masks mark the manipulated pixels of fakes")
    if mask is not None and kind == "frames":
        mask = _mask_frames(target, mask, where)
    rel = os.path.relpath(path, base).replace(os.sep, "/")
    return Item(kind, target, label, rel, mask=mask)


def read_csv(path, frame_folders=False):
    """:class:`Found` of a CSV file ``path,label[,mask]`` (paths relative to its folder)."""
    base = os.path.dirname(path)
    items = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read CSV {path}: {e}") from None
    for number, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if number == 1 and len(row) > 1 and row[1].strip().lower() == "label":
            continue  # a header row
        where = f"CSV {path} line {number}"
        if len(row) < 2 or len(row) > 3:
            raise DataError(f"{where}: expected path,label[,mask], got {len(row)} field(s)")
        items.append(_csv_item(row, base, where, frame_folders))
    if not items:
        raise DataError(f"CSV {path} lists no inputs (rows path,label[,mask])")
    return Found(items, [])


def _mask_frames(frames, mask_dir, where):
    """The mask images of a folder of frames: the files of ``mask_dir`` with the frames' file stems."""
    if not os.path.isdir(mask_dir):
        raise DataError(f"{where}: the mask of a folder of frames is a folder of mask images; {mask_dir} is not one")
    by_stem = {os.path.splitext(n)[0]: os.path.join(mask_dir, n) for n in os.listdir(mask_dir) if is_image_file(n)}
    missing = [f for f in frames if os.path.splitext(os.path.basename(f))[0] not in by_stem]
    if missing:
        raise DataError(f"{where}: mask folder {mask_dir} has no mask for frame {missing[0]}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    return tuple(by_stem[os.path.splitext(os.path.basename(f))[0]] for f in frames)


def name_inputs(items):
    """The items with their dataset names (see the module docstring); DataError on a clash."""
    base = {id(it): os.path.splitext(it.rel)[0].replace("/", "_") if it.kind != "frames" else it.rel.replace("/", "_")
            for it in items}
    seen = {}
    for it in items:
        key = (it.label, base[id(it)])
        if key in seen:
            raise DataError(f"{seen[key].shown} and {it.shown} would both be video {base[id(it)]!r} of label "
                            f"{LABEL_WORDS[it.label]}: rename one (names come from the path without the extension)")
        seen[key] = it
    labels_of = {}
    for (label, name) in seen:
        labels_of.setdefault(name, set()).add(label)
    out = []
    for it in items:
        name = base[id(it)]
        if len(labels_of[name]) > 1:
            name = f"{LABEL_WORDS[it.label]}_{name}"
        if facts.FRAMES_DIR in name:
            raise DataError(f"{it.shown}: its dataset name {name!r} contains 'frames', which DeepfakeBench replaces by "
                            f"'masks' and 'landmarks' in every path: rename the file or folder")
        out.append(dataclasses.replace(it, name=name))
    return out


def split_inputs(items, split="hash", ratios=(0.8, 0.1, 0.1)):
    """The items with their split: per source video (its file name's md5), or all in one split."""
    if split not in SPLIT_CHOICES:
        raise DataError(f"--split {split!r}: use one of {', '.join(SPLIT_CHOICES)}")
    return [dataclasses.replace(it, split=hash_split(it.stem, ratios) if split == "hash" else split) for it in items]


def _mask_index(masks_dir):
    """Every candidate mask under ``masks_dir``: {path without extension relative to it: path}."""
    index = {}
    for dirpath, dirs, files in os.walk(masks_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, masks_dir).replace(os.sep, "/")
        if rel_dir != "." and any(is_image_file(f) for f in files):
            index[rel_dir] = dirpath  # a folder of per-frame masks
        for f in sorted(files):
            if is_video_file(f) or is_image_file(f):
                rel = f if rel_dir == "." else f"{rel_dir}/{f}"
                index[os.path.splitext(rel)[0]] = os.path.join(dirpath, f)
    return index


def _mask_for(item, index, by_name):
    key = os.path.splitext(item.rel)[0] if item.kind != "frames" else item.rel
    found = index.get(key)
    if found is None:
        candidates = by_name.get(key.rsplit("/", 1)[-1], [])
        found = candidates[0] if len(candidates) == 1 else None
    return found


def match_masks(items, masks_dir):
    """The items with their masks from ``masks_dir`` (see the module docstring); DataError naming the
    first fake without a mask or mask without a fake."""
    masks_dir = os.path.abspath(os.path.expanduser(str(masks_dir)))
    if not os.path.isdir(masks_dir):
        raise DataError(f"--masks {masks_dir} is not a folder")
    index = _mask_index(masks_dir)
    by_name = {}
    for key, path in index.items():
        by_name.setdefault(key.rsplit("/", 1)[-1], []).append(path)
    out, used, lacking = [], set(), []
    for it in items:
        if it.label == 0:
            out.append(it)
            continue
        mask = _mask_for(it, index, by_name)
        if mask is None:
            lacking.append(it)
            out.append(it)
            continue
        used.add(mask)
        out.append(dataclasses.replace(it, mask=_check_mask_kind(it, mask)))
    if lacking:
        raise DataError(f"--masks {masks_dir}: no mask for {lacking[0].shown}" +
                        (f" (and {len(lacking) - 1} more fakes)" if len(lacking) > 1 else "") +
                        ": a mask has the path of its fake under fake/ (any extension), or the same file name")
    unused = sorted(p for p in set(index.values()) - used if not _covered(p, used))
    if unused:
        raise DataError(f"--masks {masks_dir}: {unused[0]} is the mask of no fake input" +
                        (f" (and {len(unused) - 1} more)" if len(unused) > 1 else "") +
                        " (masks are matched by the fake's path under fake/, or by file name)")
    return out


def _covered(path, used):
    """A mask file inside a used mask folder, or a folder holding a used mask file, is in use."""
    return any(path.startswith(u + os.sep) or u.startswith(path + os.sep) for u in used)


def _check_mask_kind(item, mask):
    expected = {"video": is_video_file, "image": is_image_file, "frames": os.path.isdir}[item.kind]
    if not expected(mask):
        kinds = {"video": "a mask video", "image": "a mask image", "frames": "a folder of mask images"}
        raise DataError(f"mask {mask} of {item.shown}: expected {kinds[item.kind]}")
    return _mask_frames(item.path, mask, f"mask of {item.shown}") if item.kind == "frames" else mask


__all__ = ["Item", "Found", "find_inputs", "read_csv", "name_inputs", "split_inputs", "match_masks", "parse_label",
           "SPLIT_CHOICES", "LABEL_WORDS"]

