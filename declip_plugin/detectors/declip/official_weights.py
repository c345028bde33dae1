"""The official DeCLIP checkpoints by name: ``declip:vit-l14_layer20_conv-20_lama`` and the other eight.

The authors publish nine files (bit-ml/DeCLIP README) in a public Google Cloud Storage bucket:

* ``declip:vit-l14_layer20_conv-20_<set>``, set in pluralistic, lama, repaint-p2-9k, ldm, cocosd:
  ``backbone_VIT/ViT_layer20_conv-20_<set>.pth`` (detector config ``declip``);
* ``declip:vit-l14+rn50_layer20+layer3_conv-20_<set>``, set in pluralistic, lama, repaint-p2-9k, ldm:
  ``backbone_VIT+RN50/ViT_layer20+RN50_layer3_conv-20_<set>.pth`` (detector config ``declip_vit_rn50``).

A name resolves to ``<cache>/<folder>/<file>`` (cache: ``$DECLIP_WEIGHTS_DIR``, default
``~/.cache/declip/weights``). A missing file is downloaded with ``torch.hub.download_url_to_file``
(progress bar) to a temporary file beside its place, checked, then moved into place. No checksums
are published in the README; what the server publishes with each file (its size,
``Content-Length``, and Google Cloud Storage's MD5, the ``x-goog-hash`` header, read with a HEAD
request first) is checked against the bytes received. Every file is also checked as a PyTorch checkpoint (the zip
archive ``torch.save`` writes: its directory is read and the CRC-32 of every member recomputed), so
a truncated or bit-flipped file is refused, whether downloaded or put in the cache by hand.

Only a file that passed those checks is recorded (``<file>.json``: size, sha256, the published
MD5 when known, modification time); a later use trusts the record while the file's size and
modification time are unchanged, and verifies the file again from scratch when they changed (a
replaced file is checked, not compared with a memory of a corrupt one). Offline, the download fails
within seconds with one line giving the URL and the path to put the file at.
"""
import base64
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zipfile

from ...atomicio import TMP_PREFIX, atomic_write_bytes
from ...digests import file_digest, hash_file
from ...errors import CheckpointError

logger = logging.getLogger(__name__)

PREFIX = "declip:"
BASE_URL = "https://storage.googleapis.com/bitdefender_ml_artifacts/declip"
TIMEOUT_S = 10
_VIT_SETS = ("pluralistic", "lama", "repaint-p2-9k", "ldm", "cocosd")
_FUSION_SETS = ("pluralistic", "lama", "repaint-p2-9k", "ldm")


def catalog():
    """{name: {"folder", "file", "detector", "train_set"}} of the nine official checkpoints."""
    out = {}
    for s in _VIT_SETS:
        out[f"{PREFIX}vit-l14_layer20_conv-20_{s}"] = {
            "folder": "backbone_VIT", "file": f"ViT_layer20_conv-20_{s}.pth", "detector": "declip", "train_set": s}
    for s in _FUSION_SETS:
        out[f"{PREFIX}vit-l14+rn50_layer20+layer3_conv-20_{s}"] = {
            "folder": "backbone_VIT+RN50", "file": f"ViT_layer20+RN50_layer3_conv-20_{s}.pth",
            "detector": "declip_vit_rn50", "train_set": s}
    return out


def cache_dir():
    return os.environ.get("DECLIP_WEIGHTS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "declip", "weights")


def base_url():
    return os.environ.get("DECLIP_WEIGHTS_URL") or BASE_URL


def is_name(value):
    return isinstance(value, str) and value.startswith(PREFIX)


def entry(name):
    cat = catalog()
    if name not in cat:
        from ...registry import closest

        hint = closest(name, list(cat))
        raise CheckpointError(f"unknown checkpoint name {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")
                              + "; `declip weights list` shows the nine official ones")
    return cat[name]


def url_of(name):
    e = entry(name)
    return f"{base_url()}/{urllib.request.quote(e['folder'])}/{e['file']}"


def path_of(name):
    e = entry(name)
    return os.path.join(cache_dir(), e["folder"], e["file"])


def _record_path(path):
    return path + ".json"


def _sha256(path):
    return file_digest(path)


def _write_record(path, size, sha256, url, md5=None):
    st = os.stat(path)
    rec = {"file": os.path.basename(path), "size": size, "sha256": sha256, "url": url, "mtime_ns": st.st_mtime_ns,
           "verified": "pytorch zip CRC-32" + (" + published md5" if md5 else "")}
    if md5:
        rec["md5"] = md5
    atomic_write_bytes(_record_path(path), (json.dumps(rec, indent=2) + "\n").encode("utf-8"))


def _refetch(name, path):
    return f"delete it and fetch it again (`declip weights fetch {name}`, or {url_of(name)} put at {path})"


def check_intact(name, path, what=None, hint=None):
    """``path`` is a whole PyTorch zip checkpoint: its directory reads and every member's CRC-32 matches."""
    what, hint = what or path, hint or _refetch(name, path)
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"{what} is truncated or corrupt (not a readable PyTorch zip checkpoint: {exc}); "
                              f"{hint}") from None
    if bad is not None:
        raise CheckpointError(f"{what} is corrupt (member {bad} fails its CRC-32 check); {hint}")


def _md5_b64(path):
    return base64.b64encode(hash_file(path, "md5").digest()).decode("ascii")


def _read_record(path):
    try:
        with open(_record_path(path), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # no record, or an unreadable one: the file is verified from scratch
    return rec if isinstance(rec, dict) else None


def verify(name, path):
    """``path`` as checked: unchanged since its record, or verified again (and then recorded)."""
    st = os.stat(path)
    rec = _read_record(path) or {}
    if rec.get("verified") and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        return path
    if rec.get("verified"):
        logger.info("%s changed since it was checked: verifying it again", path)
    check_intact(name, path)
    digest, md5 = _sha256(path), rec.get("md5") if rec.get("verified") else None
    if md5 and (st.st_size != rec.get("size") or _md5_b64(path) != md5):
        raise CheckpointError(f"{path}: {st.st_size} bytes with sha256 {digest} is not the published file "
                              f"({rec.get('size')} bytes, md5 {md5}); {_refetch(name, path)}")
    _write_record(path, st.st_size, digest, url_of(name), md5)
    return path


def _published_md5(headers):
    """The MD5 (base64) Google Cloud Storage publishes in ``x-goog-hash: crc32c=...,md5=...``; None if absent."""
    for part in (headers.get("x-goog-hash") or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "md5" and value:
            return value
    return None


def _published(name, url, path):
    """``(size, md5)`` the server publishes for ``url`` (``Content-Length``, GCS's ``x-goog-hash``; None when
    absent), from a HEAD request: offline, this fails within ``TIMEOUT_S`` with one line."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=TIMEOUT_S) as resp:
            return int(resp.headers.get("Content-Length") or 0) or None, _published_md5(resp.headers)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"cannot download {name} ({reason}): fetch {url} and put it at {path}") from None


def _check_download(name, url, staged, total, published):
    """The downloaded file ``staged`` is the published one (size, MD5) and a whole PyTorch checkpoint."""
    size = os.path.getsize(staged)
    if total is not None and size != total:
        raise CheckpointError(f"download of {url} ended after {size} of {total} bytes; run it again")
    got = _md5_b64(staged) if published else None
    if published and got != published:
        raise CheckpointError(f"download of {url}: md5 {got} differs from the published {published}; run it again")
    check_intact(name, staged, what=f"the download of {url}", hint="run it again")
    return size


def download(name, progress=True):
    """Fetch ``name`` into the cache with ``torch.hub.download_url_to_file`` (progress bar), check it,
    then move it into place: only a checked file ever appears at its cache path. Returns the path."""
    import torch.hub

    url, path = url_of(name), path_of(name)
    total, published = _published(name, url, path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, staged = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".part", dir=folder)  # a leftover is a .tmp-* file
    os.close(fd)
    try:
        try:
            torch.hub.download_url_to_file(url, staged, progress=progress)
        except (urllib.error.URLError, OSError) as exc:
            raise CheckpointError(f"download of {name} failed ({exc}): fetch {url} and put it at {path}") from None
        size = _check_download(name, url, staged, total, published)
        with open(staged, "rb") as f:
            os.fsync(f.fileno())
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)  # never left in the cache
    digest = _sha256(path)
    _write_record(path, size, digest, url, published)
    logger.info("downloaded %s to %s (%d bytes, sha256 %s)", name, path, size, digest)
    return path


def resolve(value, download_missing=True):
    """A ``declip:...`` name -> the local file (fetched if missing); any other value unchanged."""
    if not is_name(value):
        return value
    path = path_of(value)
    if os.path.isfile(path):
        return verify(value, path)
    if not download_missing:
        raise CheckpointError(f"{value} is not in the cache: fetch {url_of(value)} and put it at {path}")
    return download(value)


def listing():
    """Rows (name, detector config, status, path) for `declip weights list`."""
    rows = []
    for name, e in catalog().items():
        path = path_of(name)
        status = f"cached ({os.path.getsize(path) / 1e6:.0f} MB)" if os.path.isfile(path) else "not downloaded"
        rows.append((name, e["detector"], status, path))
    return rows
