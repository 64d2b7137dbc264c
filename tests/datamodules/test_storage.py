"""Atomic writes and the cache folder (datamodules.storage)."""

from __future__ import annotations

import os

import pytest

from datamodules.storage import atomic_path, resolve_cache_dir


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "cache" / "array.npy"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half of it")
            raise RuntimeError("disk full")
    assert list(final.parent.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"all of it")
    assert final.read_bytes() == b"all of it"
    assert [p.name for p in final.parent.iterdir()] == ["array.npy"]


def test_cache_dir_explicit_writable_and_read_only(tmp_path, monkeypatch):
    assert resolve_cache_dir(tmp_path / "mine", tmp_path) == tmp_path / "mine"
    assert resolve_cache_dir(None, tmp_path) == tmp_path / "cache"
    read_only = tmp_path / "ro"
    read_only.mkdir()
    os.chmod(read_only, 0o555)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    try:
        assert resolve_cache_dir(None, read_only) == tmp_path / "xdg" / "sparse-repro"
    finally:
        os.chmod(read_only, 0o755)
