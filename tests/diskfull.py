"""A real full disk for tests: a tiny tmpfs, mounted (root only) and filled to the last byte."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import needs_privilege

__all__ = ["fill", "tiny_fs"]


@contextlib.contextmanager
def tiny_fs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        needs_privilege(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(fs: Path) -> Path:
    """Use up every free byte of ``fs``; returns the filler file (delete it to free space)."""
    filler = fs / "filler"
    for name, step in ((filler, 4096), (fs / "crumbs", 1)):
        with open(name, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * step)
    assert shutil.disk_usage(fs).free < 4096
    return filler
