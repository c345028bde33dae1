"""One atomic writer: complete files only, the user's umask, leftovers of killed writes removed."""
import os
import stat

import pytest

from declip_plugin.atomicio import atomic_write_bytes, remove_stale_tmp


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_keep_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "out.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from declip_plugin.atomicio import atomic_open

    target = tmp_path / "metrics.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["metrics.json"]


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".tmp-abc.pth").write_bytes(b"x")
    (tmp_path / "sub" / ".tmp-def").write_bytes(b"x")
    (tmp_path / "keep.pth").write_bytes(b"x")
    assert remove_stale_tmp(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["keep.pth"]


def test_json_holds_numpy_and_torch_values_and_no_nan(tmp_path):
    """The one JSON writer: numpy / torch scalars as numbers, arrays as lists, NaN and inf as null (JSON has
    neither), anything else as its text; keys sorted only when asked."""
    import json

    import numpy as np
    import torch

    from declip_plugin.atomicio import write_json

    obj = {"b": np.float32(0.5), "a": torch.tensor(2), "nan": np.float32("nan"), "inf": float("inf"),
           "arr": np.array([1, np.nan]), "t": torch.tensor([0.25, 0.5]), "path": tmp_path}
    text = open(write_json(tmp_path / "x.json", obj), encoding="utf-8").read()
    assert json.loads(text) == {"b": 0.5, "a": 2, "nan": None, "inf": None, "arr": [1, None], "t": [0.25, 0.5],
                                "path": str(tmp_path)}
    assert "NaN" not in text and "Infinity" not in text
    assert list(json.loads(open(write_json(tmp_path / "y.json", {"b": 1, "a": 2}, sort_keys=True)).read())) == ["a", "b"]
