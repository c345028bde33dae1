"""File digests: the package's one way to hash a file's bytes (feature cache keys, the official weights' checks,
the byte-identical frames of ``declip datasets --check``)."""
import hashlib
import os
import stat
import threading

_FILE_DIGESTS = {}
_FILE_LOCK = threading.Lock()


def hash_file(path, algorithm="sha256"):
    """The ``hashlib`` object of ``algorithm`` over the bytes of ``path`` (read in 1 MiB chunks)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def bytes_digest(data):
    """sha256 hex of a bytes-like object (bytes, a uint8 array): a file's digest when its bytes are already read
    (``declip datasets --check`` hashes and decodes each file from one read)."""
    return hashlib.sha256(memoryview(data)).hexdigest()


def file_digest(path):
    """sha256 hex of the bytes of ``path``, memoized by (path, size, mtime_ns, inode); None when
    ``path`` is not a readable regular file."""
    try:
        st = os.stat(path)
    except (OSError, TypeError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    with _FILE_LOCK:
        hit = _FILE_DIGESTS.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        digest = hash_file(path).hexdigest()
    except OSError:
        return None
    with _FILE_LOCK:
        _FILE_DIGESTS[path] = (stamp, digest)
    return digest
