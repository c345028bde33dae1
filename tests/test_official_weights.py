"""Official DeCLIP checkpoints by name: catalog, cache, download (from a local server), offline failure."""
import hashlib
import http.server
import json
import os
import threading
import time

import pytest

from declip_plugin import official_weights as ow
from declip_plugin.cli import main as cli_main
from declip_plugin.errors import CheckpointError

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


def test_a_file_in_the_cache_is_recorded_then_checked(cache):
    path = ow.path_of(NAME)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"weights" * 100)
    assert ow.resolve(NAME) == path
    rec = json.loads(open(path + ".json").read())
    assert rec["size"] == 700 and rec["sha256"] == hashlib.sha256(b"weights" * 100).hexdigest()
    with open(path, "r+b") as f:  # same size, other content, later mtime
        f.write(b"X")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    with pytest.raises(CheckpointError, match="sha256"):
        ow.resolve(NAME)
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(CheckpointError, match="704 bytes, but 700 were recorded"):
        ow.resolve(NAME)


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


def test_download_from_a_server_is_atomic_and_recorded(cache, tmp_path, monkeypatch):
    served = tmp_path / "srv" / "backbone_VIT"
    served.mkdir(parents=True)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    (served / "ViT_layer20_conv-20_lama.pth").write_bytes(payload)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path / "srv"), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DECLIP_WEIGHTS_URL", f"http://127.0.0.1:{server.server_address[1]}")
        path = ow.resolve(NAME)
    finally:
        server.shutdown()
    assert open(path, "rb").read() == payload
    rec = json.loads(open(path + ".json").read())
    assert rec["size"] == len(payload) and rec["sha256"] == hashlib.sha256(payload).hexdigest()
    assert [f for f in os.listdir(os.path.dirname(path)) if f.startswith(".tmp-")] == []
    assert ow.resolve(NAME) == path  # second time: from the cache, no server needed


def test_weights_list_cli(cache, capsys):
    assert cli_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("declip:") == 9 and "not downloaded" in out and str(cache) in out
