"""DeepfakeBench's LMDB of a dataset: the encoded frame and mask files of ``<lmdb_dir>/<name>_lmdb``.

DeepfakeBench's ``preprocessing/dataset2lmdb_test.py`` writes one LMDB per dataset folder: every
file under ``<datasets>/<name>/`` is stored as its bytes under the key ``<name>\\`` + its path
relative to that folder (``os.path.relpath``: "/" separators on Linux, "\\" on Windows). Its loader
(``training/dataset/abstract_dataset.py``) looks a frame up by its JSON path string, with
``./datasets\\`` stripped when the string starts with ".", and opens ``FaceForensics++_lmdb`` for
every FaceForensics++ variant (``facts.FFPP_POOL``).

The JSON and the LMDB are often made on different machines, so the key of a JSON frame path is
found by trying these key styles in order on the first frame of a dataset; the first style under
which the LMDB holds that frame is used for every frame (a frame missing under it is an error that
names its key):

``deepfakebench``  the loader's own rule (the JSON string, ``./datasets\\`` stripped)
``writer``         ``<name>\\`` + the path after the ``<name>`` folder, "/" separators (the writer on Linux)
``windows``        the same with "\\" separators (the writer on Windows)
``posix``          ``<name>/`` + the path after the ``<name>`` folder

The environment is opened read-only, without locking (as DeepfakeBench's loader opens it), lazily in
each process (DataLoader workers open their own); a data.mdb shorter than its header says, or one that
is no LMDB, is refused with the file named (:func:`check_size`), and lmdb's errors while reading name it.
"""
import os
import re

import numpy as np

from ..errors import DataError
from .. import deepfakebench_facts as facts

KEY_STYLES = ("deepfakebench", "writer", "windows", "posix")


def lmdb_name(dataset):
    """The LMDB folder name DeepfakeBench opens for ``dataset`` (a ``_c40`` name as its c23 one)."""
    base = dataset[: -len(facts.C40_SUFFIX)] if dataset.endswith(facts.C40_SUFFIX) else dataset
    return (facts.FFPP_LMDB if base in facts.FFPP_POOL else dataset) + facts.LMDB_SUFFIX


def split_parts(path):
    """A JSON frame path's components, for either separator, without "." components."""
    return [p for p in re.split(r"[\\/]+", str(path)) if p not in ("", ".")]


def writer_skipped(key):
    """A hint when ``key`` lies in a folder DeepfakeBench's LMDB writer skips (else "")."""
    folders = split_parts(key)[:-1]
    if any(facts.LMDB_WRITER_SKIPS in f for f in folders):
        return (f" (DeepfakeBench's dataset2lmdb_test.py skips every folder whose path contains "
                f"{facts.LMDB_WRITER_SKIPS!r}: rename it and rebuild the LMDB, or read with lmdb: false)")
    return ""


def key_for(frame, style, folder):
    """The LMDB key of the JSON frame string ``frame`` in ``style`` (None: the style does not apply)."""
    if style == "deepfakebench":
        return frame.replace(facts.LMDB_KEY_STRIP, "") if frame.startswith(".") else frame
    parts = split_parts(frame)
    if folder not in parts[:-1]:
        return None
    tail = parts[parts.index(folder) + 1:]
    if style == "writer":
        return folder + "\\" + "/".join(tail)
    if style == "windows":
        return folder + "\\" + "\\".join(tail)
    return "/".join([folder] + tail)


_ENVS = {}  # (pid, path) -> environment: an LMDB may be opened once per process


def open_env(path):
    """The read-only environment of ``path`` in this process (opened once, shared by its datasets).

    A forked DataLoader worker inherits its parent's environments, which LMDB forbids using there
    and py-lmdb counts as open: the worker closes its copies first (the parent's stay open)."""
    pid = os.getpid()
    key = (pid, os.path.realpath(path))  # py-lmdb refuses a second open of the same files
    for inherited in [k for k in _ENVS if k[0] != pid]:
        _ENVS.pop(inherited).close()
    if key not in _ENVS:
        import lmdb

        try:
            env = lmdb.open(path, readonly=True, lock=False, subdir=True, readahead=False, create=False)
        except lmdb.Error as e:
            raise DataError(f"LMDB {path} cannot be opened ({e}): it is damaged or not an LMDB; rebuild it with "
                            f"DeepfakeBench's preprocessing/dataset2lmdb_test.py, or read the frames with "
                            f"lmdb: false") from None
        try:
            check_size(env, path)
        except DataError:
            env.close()
            raise
        _ENVS[key] = env
    return _ENVS[key]


def check_size(env, path):
    """Refuse an LMDB whose data.mdb is shorter than the part of its map that its header says is in use:
    reading a page past the file's end through the memory map kills the process (SIGBUS), not with an
    exception. The header (the meta pages) is read with read(), before anything is mapped."""
    used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    data = os.path.join(path, "data.mdb")
    have = os.path.getsize(data)
    if have < used:
        raise DataError(f"LMDB {data} is truncated: {have} bytes, but its header says {used} are in use; copy it "
                        f"again or rebuild it with DeepfakeBench's preprocessing/dataset2lmdb_test.py, or read the "
                        f"frames with lmdb: false")


class LmdbStore:
    """Read-only access to one DeepfakeBench LMDB; ``name`` is the folder its keys start with."""

    def __init__(self, path, folder=None):
        self.path = os.path.abspath(os.path.expanduser(str(path)))
        base = os.path.basename(self.path)
        self.folder = folder or (base[: -len(facts.LMDB_SUFFIX)] if base.endswith(facts.LMDB_SUFFIX) else base)
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise DataError(f"LMDB {self.path} does not exist (no data.mdb in it); DeepfakeBench's "
                            f"preprocessing/dataset2lmdb_test.py writes it, or read the frames with lmdb: false")
        self.style = None
        self._env, self._pid = None, None

    def __getstate__(self):  # DataLoader workers (spawn) open their own environment
        return {**self.__dict__, "_env": None, "_pid": None}

    def _txn_env(self):
        if self._env is None or self._pid != os.getpid():
            self._env, self._pid = open_env(self.path), os.getpid()
        return self._env

    def _reading(self, what):
        """``what(txn)`` in a read transaction; lmdb's errors (a damaged page) as a DataError naming the file."""
        import lmdb

        try:
            with self._txn_env().begin(write=False, buffers=False) as txn:
                return what(txn)
        except lmdb.Error as e:
            raise DataError(f"LMDB {self.path} is damaged ({type(e).__name__}: {e}); rebuild it with DeepfakeBench's "
                            f"preprocessing/dataset2lmdb_test.py, or read the frames with lmdb: false") from None

    def get(self, key):
        """The bytes stored under ``key`` (str), or None."""
        return self._reading(lambda txn: txn.get(key.encode("utf-8")))

    def has(self, key):
        return self._reading(lambda txn: txn.cursor().set_key(key.encode("utf-8")))

    def first_key(self):
        def first(txn):
            cur = txn.cursor()
            return cur.key().decode("utf-8", "replace") if cur.first() else None

        return self._reading(first)

    def detect_style(self, frame, where):
        """The key style under which the LMDB holds the JSON frame ``frame`` (kept for every frame)."""
        tried = []
        for style in KEY_STYLES:
            key = key_for(frame, style, self.folder)
            if key is None or key in tried:
                continue
            tried.append(key)
            if self.has(key):
                self.style = style
                return style
        raise DataError(
            f"{where}: LMDB {self.path} has no entry for frame {frame!r} (tried the keys "
            f"{', '.join(repr(k) for k in tried)}; its first key is {self.first_key()!r}): check lmdb_dir, or read "
            f"the frames from rgb_dir with lmdb: false{writer_skipped(frame)}")

    def key(self, frame):
        """The key of JSON frame string ``frame`` in the detected style (None if it has no such key)."""
        return key_for(frame, self.style, self.folder)

    def label(self, key):
        """How a sample read from here is named (in logs, errors and per-image outputs)."""
        return f"{self.path}[{key}]"

    def key_of_label(self, label):
        prefix = self.path + "["
        if not (label.startswith(prefix) and label.endswith("]")):
            raise DataError(f"{label} is not an entry of LMDB {self.path}")
        return label[len(prefix):-1]

    def read(self, label, what):
        """The bytes of the sample named ``label`` as a uint8 array; DataError naming it if absent."""
        data = self.get(self.key_of_label(label))
        if data is None:
            raise DataError(f"{what} {label} is not in the LMDB{writer_skipped(self.key_of_label(label))}")
        if not data:
            raise DataError(f"{what} {label} is empty (0 bytes)")
        return np.frombuffer(data, dtype=np.uint8)


__all__ = ["LmdbStore", "KEY_STYLES", "key_for", "lmdb_name", "split_parts"]
