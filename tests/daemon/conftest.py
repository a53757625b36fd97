"""Fixtures for the daemon's end-to-end tests: one pocketsphinx svserver per module."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import speech_file
from tests.svserver import SvServer


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvServer, Path]]:
    """A real svserver allowed to read ``work`` (the second item), where tests make folders."""
    speech_file("001.wav")
    base = tmp_path_factory.mktemp("daemon")
    (base / "work").mkdir()
    srv = SvServer(base / "svdata", args=["--allow-root", str(base / "work")]).start()
    yield srv, base / "work"
    srv.stop()


@pytest.fixture
def work(area: tuple[SvServer, Path], request: pytest.FixtureRequest) -> Path:
    """A fresh folder for one test under the server's root, with an empty ``inbox``."""
    name = request.node.name
    path = area[1] / f"{name[:32]}-{zlib.crc32(name.encode()):08x}"
    (path / "inbox").mkdir(parents=True)
    return path
