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
