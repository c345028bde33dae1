"""Official DeCLIP checkpoints by name: catalog, cache, download (from a local server), offline failure;
`declip weights fetch` with a bad name or a damaged cached file."""
import base64
import hashlib
import http.server
import json
import os
import threading
import time

import pytest
import torch

from declip_plugin.detectors.declip import official_weights as ow
from declip_plugin.cli import main as cli_main
from declip_plugin.errors import CheckpointError
from tests.conftest import assert_one_line, run_cli

NAME = "declip:vit-l14_layer20_conv-20_lama"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DECLIP_WEIGHTS_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_nine_official_files():
    cat = ow.catalog()
    assert len(cat) == 9
    assert ow.url_of(NAME) == ("https://storage.googleapis.com/bitdefender_ml_artifacts/declip/backbone_VIT/"
                               "ViT_layer20_conv-20_lama.pth")
    assert ow.url_of("declip:vit-l14+rn50_layer20+layer3_conv-20_ldm").endswith(
        "/declip/backbone_VIT%2BRN50/ViT_layer20+RN50_layer3_conv-20_ldm.pth")
    assert {e["detector"] for e in cat.values()} == {"declip", "declip_vit_rn50"}
    with pytest.raises(CheckpointError, match="did you mean 'declip:vit-l14_layer20_conv-20_lama'"):
        ow.entry("declip:vit-l14_layer20_conv-20_lamma")


def checkpoint_bytes(seed=0, n=1000):
    """The bytes of a small PyTorch zip checkpoint (what torch.save writes, as the official files)."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"model": {"fc.weight": torch.randn(n, generator=torch.Generator().manual_seed(seed))}}, buf)
    return buf.getvalue()


def put(path, data, later=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if later:  # a new modification time, as a replaced file has
        os.utime(path, ns=(time.time_ns(), time.time_ns() + later * 10_000_000))


def flip_bit(data, at):
    b = bytearray(data)
    b[at] ^= 0x10
    return bytes(b)


def test_a_good_file_in_the_cache_is_checked_then_recorded(cache):
    path, good = ow.path_of(NAME), checkpoint_bytes()
    put(path, good)
    assert ow.resolve(NAME) == path
    rec = json.loads(open(path + ".json").read())
    assert rec["size"] == len(good) and rec["sha256"] == hashlib.sha256(good).hexdigest()
    assert rec["verified"].startswith("pytorch zip")


@pytest.mark.parametrize("damage", ["bit flip", "truncation", "not a checkpoint"])
def test_a_damaged_file_is_refused_and_never_recorded(cache, damage):
    path, good = ow.path_of(NAME), checkpoint_bytes()
    bad = {"bit flip": flip_bit(good, len(good) // 2), "truncation": good[: len(good) // 2],
           "not a checkpoint": b"<html>403 Forbidden</html>"}[damage]
    put(path, bad)
    with pytest.raises(CheckpointError, match="corrupt") as exc:
        ow.resolve(NAME)
    assert path in str(exc.value) and "fetch it again" in str(exc.value)
    assert not os.path.exists(path + ".json")


def test_a_corrupt_file_replaced_by_a_good_one_is_accepted(cache):
    path, good = ow.path_of(NAME), checkpoint_bytes()
    put(path, flip_bit(good, len(good) // 2))
    with pytest.raises(CheckpointError):
        ow.resolve(NAME)
    put(path, good, later=1)
    assert ow.resolve(NAME) == path
    assert json.loads(open(path + ".json").read())["sha256"] == hashlib.sha256(good).hexdigest()


def test_a_recorded_file_that_changes_is_verified_again(cache):
    path, good = ow.path_of(NAME), checkpoint_bytes()
    put(path, good)
    ow.resolve(NAME)
    put(path, flip_bit(good, len(good) // 2), later=1)  # same size, other content, later mtime
    with pytest.raises(CheckpointError, match="CRC-32"):
        ow.resolve(NAME)
    put(path, good[:-100], later=2)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ow.resolve(NAME)
    put(path, good, later=3)
    assert ow.resolve(NAME) == path


def test_offline_fails_fast_with_url_and_path(cache, monkeypatch):
    monkeypatch.setenv("DECLIP_WEIGHTS_URL", "http://127.0.0.1:9/declip")  # nothing listens on port 9
    t0 = time.time()
    with pytest.raises(CheckpointError) as exc:
        ow.resolve(NAME)
    assert time.time() - t0 < 10
    msg = str(exc.value)
    assert "\n" not in msg and "http://127.0.0.1:9/declip/backbone_VIT/ViT_layer20_conv-20_lama.pth" in msg
    assert ow.path_of(NAME) in msg and not os.path.exists(ow.path_of(NAME))
    # the CLI: one line, exit status 2, wherever --weights_path is taken
    assert cli_main(["test", "--detector_path", "declip_demo", "--weights_path", NAME]) == 2


def serve(tmp_path, monkeypatch, payload, md5_of=None):
    """A local server for the cache's base URL giving ``payload`` as the lama file; with ``md5_of``
    it publishes that content's MD5 in ``x-goog-hash`` as Google Cloud Storage does."""
    served = tmp_path / "srv" / "backbone_VIT"
    served.mkdir(parents=True)
    (served / "ViT_layer20_conv-20_lama.pth").write_bytes(payload)
    header = None if md5_of is None else "crc32c=AAAAAA==,md5=" + base64.b64encode(hashlib.md5(md5_of).digest()).decode()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def end_headers(self):
            if header:
                self.send_header("x-goog-hash", header)
            super().end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DECLIP_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}")
    return server


def test_download_from_a_server_is_atomic_and_recorded(cache, tmp_path, monkeypatch):
    payload = checkpoint_bytes(n=800_000)  # ~3 MB
    server = serve(tmp_path, monkeypatch, payload, md5_of=payload)
    try:
        path = ow.resolve(NAME)
    finally:
        server.shutdown()
    assert open(path, "rb").read() == payload
    rec = json.loads(open(path + ".json").read())
    assert rec["size"] == len(payload) and rec["sha256"] == hashlib.sha256(payload).hexdigest()
    assert rec["md5"] == base64.b64encode(hashlib.md5(payload).digest()).decode()
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")] == []
    assert ow.resolve(NAME) == path  # second time: from the cache, no server needed
    other = checkpoint_bytes(seed=1, n=800_000)  # intact, same size, but not the published file
    put(path, other, later=1)
    with pytest.raises(CheckpointError, match="not the published file"):
        ow.resolve(NAME)
    put(path, payload, later=2)
    assert ow.resolve(NAME) == path


@pytest.mark.parametrize("served", ["corrupt", "md5 mismatch"])
def test_a_bad_download_never_enters_the_cache(cache, tmp_path, monkeypatch, served):
    good = checkpoint_bytes(n=10_000)
    if served == "corrupt":
        server = serve(tmp_path, monkeypatch, flip_bit(good, len(good) // 2))
    else:
        server = serve(tmp_path, monkeypatch, good, md5_of=b"something else")
    try:
        with pytest.raises(CheckpointError, match="corrupt|differs from the published"):
            ow.resolve(NAME)
    finally:
        server.shutdown()
    folder = os.path.dirname(ow.path_of(NAME))
    assert not os.path.isdir(folder) or os.listdir(folder) == []


def test_weights_list_cli(cache, capsys):
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("declip:") == 9 and "not downloaded" in out and str(cache) in out


# --- `declip weights fetch`: a bad name, and a damaged file in the cache refused and never remembered ------
def test_unknown_official_weights_name(capsys):
    code, _, err = run_cli(["weights", "fetch", "declip:vit-l14_layer20_conv-20_lamma"], capsys)
    assert code == 2
    assert_one_line(err, "lamma")


def _weights_bytes():
    import io

    buf = io.BytesIO()
    torch.save({"model": {"fc.weight": torch.arange(4000, dtype=torch.float32)}}, buf)
    return buf.getvalue()


@pytest.fixture
def weights_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DECLIP_WEIGHTS_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DECLIP_WEIGHTS_URL", "http://127.0.0.1:9/declip")  # nothing listens: no download
    path = ow.path_of(NAME)
    os.makedirs(os.path.dirname(path))
    return path


@pytest.mark.parametrize("damage", ["bit flip", "truncation"])
def test_damaged_official_weights_are_refused(weights_cache, capsys, damage):
    good = _weights_bytes()
    bad = bytearray(good)
    if damage == "bit flip":
        bad[len(good) // 2] ^= 0x01
    else:
        del bad[len(good) - 300:]
    with open(weights_cache, "wb") as f:
        f.write(bad)
    code, _, err = run_cli(["weights", "fetch", NAME], capsys)
    assert code == 2
    assert_one_line(err, weights_cache, "corrupt")
    assert not os.path.exists(weights_cache + ".json")


def test_a_corrupt_cached_file_replaced_by_a_good_one_is_accepted(weights_cache, capsys):
    good = _weights_bytes()
    with open(weights_cache, "wb") as f:
        f.write(good[:-10])
    assert run_cli(["weights", "fetch", NAME], capsys)[0] == 2
    with open(weights_cache, "wb") as f:
        f.write(good)
    code, _, err = run_cli(["weights", "fetch", NAME], capsys)
    assert code == 0, err
    assert json.loads(open(weights_cache + ".json").read())["size"] == len(good)
