"""The decode workers' allocator setting (glibc's mmap threshold fixed at 16 MiB), seen in
a fresh process through glibc's own accounting (``mallinfo2``: bytes in mapped chunks),
and every kind of decode worker setting it as it loads."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] == "fixed":
        from svwatchd.server._engines.heap import fix_mmap_threshold
        assert fix_mmap_threshold()
    libc.free(libc.malloc(24 * 2**20))  # glibc's dynamic threshold rises to 24 MiB here
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(20 * 2**20)
    print(libc.mallinfo2().hblkhd - before >= 20 * 2**20)
    """
)


def _mapped(mode: str, env: dict[str, str] | None = None) -> bool:
    """Whether a fresh process's 20 MiB allocation, after a 24 MiB one was freed, is a
    mapping of its own."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True
    )
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_the_fixed_threshold_maps_big_buffers_whatever_was_freed_before() -> None:
    """By default glibc raises its threshold to the size of each mapped block freed (and
    its heap's trim threshold to twice that), so after a 24 MiB block a 20 MiB one comes
    from the heap and stays there when freed: the slack a worker kept. Fixed, a block
    from 16 MiB on that the heap cannot hold is mapped, and unmapped when freed."""
    assert not _mapped("plain")
    assert _mapped("fixed")


def test_every_decode_worker_fixes_it_as_it_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """``load_warm`` is what a pool worker and a Ray actor run first; the setting itself
    is recorded here instead of applied (it would change this test process's allocator)."""
    from svwatchd.server._engines import EngineConfig, worker

    calls: list[bool] = []
    monkeypatch.setattr(worker, "fix_mmap_threshold", lambda: calls.append(True) or True)
    worker.load_warm(EngineConfig(name="pocketsphinx"))
    assert calls == [True]
