"""Atomic file writes: a temporary file in the target's folder, fsync, then ``os.replace``.

A process killed mid-write leaves the previous file (or none), never a half-written one.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_open(path, suffix=""):
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears only once ``f`` is complete."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
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
