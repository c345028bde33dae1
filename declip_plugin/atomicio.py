"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

A process killed mid-write leaves the previous file (or none), never a half-written one; such a
leftover ``.tmp-*`` file is removed by :func:`remove_stale_tmp`. Every output file of the package
goes through here, and comes out with the permissions the user's umask gives a new file (mkstemp
alone would make it 0600). The writers of the formats the package writes (bytes, text, JSON, YAML,
CSV, pickle, PNG) are all here, and nowhere else.
"""
import contextlib
import csv
import io
import json
import math
import os
import pickle
import tempfile
import threading

TMP_PREFIX = ".tmp-"
_UMASK_LOCK = threading.Lock()


def _umask():
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path, suffix="", durable=True):
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears only once ``f`` is complete.
    ``durable=False`` skips the fsync: for files that may be lost in a crash of the machine, never seen
    half-written (a cache entry, which is recomputed when it is missing)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path, data):
    with atomic_open(path) as f:
        f.write(data)
    return os.fspath(path)


def atomic_write_text(path, text):
    return atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj):
    """What ``json`` cannot write itself: numpy / torch scalars as numbers (NaN and infinite ones as null),
    arrays as lists, anything else as its text."""
    size = getattr(obj, "size", None)
    if callable(size):  # a torch tensor: size() is its shape
        size = obj.numel()
    if hasattr(obj, "item") and size in (None, 1):
        obj = obj.item()
    elif hasattr(obj, "tolist"):
        return _finite(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj if isinstance(obj, (int, str)) else str(obj)


def _finite(obj):
    """``obj`` with every NaN or infinite float (in dicts, lists, tuples) as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path, obj, sort_keys=False):
    """``obj`` as indented JSON, valid JSON always: NaN and infinite numbers as null, and what JSON has no type
    for as :func:`_jsonable` says."""
    return atomic_write_text(path, json.dumps(_finite(obj), indent=2, sort_keys=sort_keys, default=_jsonable,
                                              allow_nan=False) + "\n")


def write_yaml(path, obj):
    import yaml

    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=None))


def write_pickle(path, obj):
    return atomic_write_bytes(path, pickle.dumps(obj))


def write_csv(path, rows, fieldnames):
    """Dict ``rows`` under the header ``fieldnames`` (other keys left out, None as an empty cell)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames})
    return atomic_write_text(path, buf.getvalue())


def write_csv_rows(path, rows):
    """List ``rows`` (the header first) as CSV."""
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return atomic_write_text(path, buf.getvalue())


def remove_stale_tmp(folder, recursive=True):
    """Remove the ``.tmp-*`` files a killed write left under ``folder``; returns how many."""
    n = 0
    if not os.path.isdir(folder):
        return 0
    for root, dirs, files in os.walk(folder):
        for name in files:
            if name.startswith(TMP_PREFIX):
                try:
                    os.unlink(os.path.join(root, name))
                    n += 1
                except OSError:
                    pass
        if not recursive:
            break
    return n


def staging_dir(parent, name):
    """A fresh folder ``parent/.tmp-<name>-XXXX`` to build a whole output in before :func:`swap_in`
    puts it in place; the staging folders a killed run of the same ``name`` left are removed first."""
    import glob
    import shutil

    os.makedirs(parent, exist_ok=True)
    prefix = f"{TMP_PREFIX}{name}-"
    for old in glob.glob(os.path.join(glob.escape(os.fspath(parent)), prefix + "*")):
        shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=prefix, dir=parent)


def swap_in(stage, out, finals):
    """Move each item of ``stage`` to its final place ``final`` (the same path relative to ``out``);
    an existing one is moved aside first and removed only once the new one is in place, so every
    final path holds either the old item or the new one, never a mix of both."""
    import shutil

    for final in finals:
        src = os.path.join(stage, os.path.relpath(final, out))
        if not os.path.lexists(src):
            continue
        os.makedirs(os.path.dirname(final), exist_ok=True)
        aside = None
        if os.path.lexists(final):
            aside = os.path.join(stage, ".old-" + os.path.basename(final))
            os.replace(final, aside)
        os.replace(src, final)
        if aside is not None:
            shutil.rmtree(aside) if os.path.isdir(aside) and not os.path.islink(aside) else os.unlink(aside)


def write_png(path, array, params=()):
    """Encode ``array`` (H, W[, 3] uint8, BGR) as PNG and write it atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", array, list(params))
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    return atomic_write_bytes(path, buf.tobytes())


def check_output_dir(path, what):
    """Fail before any work when ``path`` cannot become a folder we write into: it is a file, or
    its nearest existing parent is not writable. ``what`` names the option for the message."""
    from .errors import ConfigError

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{what} {path!r} is a file, not a folder: give a folder path")
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"{what} {path!r}: {probe!r} is a file, so the folder cannot be created")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path!r}: {probe!r} is not writable: choose another folder")
    return path


def check_output_file(path, what):
    """Fail before any work when the file ``path`` cannot be written (a folder, or no writable parent)."""
    from .errors import ConfigError

    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ConfigError(f"{what} {path!r} is a folder: give a file path")
    probe = os.path.dirname(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"{what} {path!r}: {probe!r} is a file, so nothing can be written under it: give another path")
    check_output_dir(os.path.dirname(path), what)
    return path
