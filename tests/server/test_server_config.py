"""ServerConfig.check_path: allowed roots, traversal, symlinks, and svserver's own data."""

from __future__ import annotations

from pathlib import Path

import pytest

from svwatchd.errors import PathNotAllowedError
from svwatchd.server._config import ServerConfig


def test_paths_under_roots_only_and_never_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "svserver.db").write_bytes(b"SQLite format 3\0")
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "link.wav").symlink_to(data / "svserver.db")
    config = ServerConfig(data_dir=data, allow_roots=(tmp_path,))
    assert config.check_path(str(tmp_path / "a.wav")) == tmp_path / "a.wav"
    for inside in (data / "svserver.db", tmp_path / "link.wav", tmp_path / "x/../data"):
        with pytest.raises(PathNotAllowedError, match="own data directory"):
            config.check_path(str(inside))
    with pytest.raises(PathNotAllowedError, match="outside the server's allowed roots"):
        config.check_path(str(tmp_path.parent / "elsewhere.wav"))
    with pytest.raises(PathNotAllowedError, match="not absolute"):
        config.check_path("a.wav")
    everything = ServerConfig(data_dir=data, allow_roots=(Path("/"),))
    assert everything.check_path(str(tmp_path / "a.wav")) == tmp_path / "a.wav"  # root "/"
