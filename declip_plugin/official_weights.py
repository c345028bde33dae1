"""The official DeCLIP checkpoints by name: ``declip:vit-l14_layer20_conv-20_lama`` and the other eight.

The authors publish nine files (bit-ml/DeCLIP README) in a public Google Cloud Storage bucket:

* ``declip:vit-l14_layer20_conv-20_<set>``, set in pluralistic, lama, repaint-p2-9k, ldm, cocosd:
  ``backbone_VIT/ViT_layer20_conv-20_<set>.pth`` (detector config ``declip``);
* ``declip:vit-l14+rn50_layer20+layer3_conv-20_<set>``, set in pluralistic, lama, repaint-p2-9k, ldm:
  ``backbone_VIT+RN50/ViT_layer20+RN50_layer3_conv-20_<set>.pth`` (detector config ``declip_vit_rn50``).

A name resolves to ``<cache>/<folder>/<file>`` (cache: ``$DECLIP_WEIGHTS_DIR``, default
``~/.cache/declip/weights``). A missing file is downloaded with a progress bar and written
atomically; its size and sha256 are recorded beside it (``<file>.json``; no checksums are
published) and checked on every later use (the hash is recomputed only when the file's size or
modification time changed). Offline, the download fails within seconds with one line giving the
URL and the path to put the file at.
"""
import hashlib
import json
import logging
import os
import urllib.error
import urllib.request

from .atomicio import atomic_open, atomic_write_bytes
from .errors import CheckpointError

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
        from .registry import closest

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
    from .engine.feature_cache import file_digest  # the package's one file hash (memoized per stat)

    return file_digest(path)


def _write_record(path, size, sha256, url):
    st = os.stat(path)
    atomic_write_bytes(_record_path(path), (json.dumps(
        {"file": os.path.basename(path), "size": size, "sha256": sha256, "url": url, "mtime_ns": st.st_mtime_ns},
        indent=2) + "\n").encode("utf-8"))


def verify(name, path):
    """Check ``path`` against its record (size, sha256); record it first if it has none."""
    size = os.path.getsize(path)
    rec_path = _record_path(path)
    if not os.path.isfile(rec_path):
        logger.info("%s: no record yet; recording its size and sha256", path)
        _write_record(path, size, _sha256(path), url_of(name))
        return path
    with open(rec_path, encoding="utf-8") as f:
        rec = json.load(f)
    if size != rec.get("size"):
        raise CheckpointError(f"{path}: {size} bytes, but {rec.get('size')} were recorded when it was first "
                              f"fetched; delete it and its .json to download it again from {url_of(name)}")
    if os.stat(path).st_mtime_ns != rec.get("mtime_ns"):
        digest = _sha256(path)
        if digest != rec.get("sha256"):
            raise CheckpointError(f"{path}: sha256 {digest} differs from the recorded {rec.get('sha256')}; delete it "
                                  f"and its .json to download it again from {url_of(name)}")
        _write_record(path, size, digest, rec.get("url") or url_of(name))  # same content, new mtime
    return path


def download(name, progress=True):
    """Fetch ``name`` into the cache (atomic write, progress bar); returns its path."""
    url, path = url_of(name), path_of(name)
    try:
        resp = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CheckpointError(f"cannot download {name} ({reason}): fetch {url} and put it at {path}") from None
    from tqdm import tqdm

    total = int(resp.headers.get("Content-Length") or 0) or None
    h, size = hashlib.sha256(), 0
    try:
        with resp, atomic_open(path, suffix=".part") as f, tqdm(
                total=total, unit="B", unit_scale=True, desc=os.path.basename(path), disable=not progress) as bar:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
                bar.update(len(chunk))
            if total is not None and size != total:
                raise CheckpointError(f"download of {url} ended after {size} of {total} bytes; run it again")
    except (urllib.error.URLError, OSError) as exc:
        raise CheckpointError(f"download of {name} failed ({exc}): fetch {url} and put it at {path}") from None
    _write_record(path, size, h.hexdigest(), url)
    logger.info("downloaded %s to %s (%d bytes, sha256 %s)", name, path, size, h.hexdigest())
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
