"""svserver test fixtures: a real svserver with its default engine (Whisper) per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import speech_file
from tests.svserver import SvServer


@pytest.fixture(scope="module")
def whisper(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SvServer, Path]]:
    """A Whisper svserver reading ``root`` (the second item) and allowed 127.0.0.1 sockets."""
    speech_file("001.wav")
    base = tmp_path_factory.mktemp("whisper")
    root = base / "root"
    root.mkdir()
    srv = SvServer(
        base / "data",
        engine="whisper",
        args=["--allow-root", str(root), "--allow-socket", "127.0.0.1"],
    ).start()
    yield srv, root
    srv.stop()
