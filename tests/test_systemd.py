"""The systemd units in systemd/: valid, hardened, and consistent with the example config.

``systemd-analyze`` works on unit files without a running systemd (containers,
CI). Two checks:

- ``systemd-analyze verify``: the unit parses, every directive is known, every
  command exists. The units start ``/opt/svwatchd/bin/...``, where the package
  is installed in production but not here, and verify rightly reports a
  missing ExecStart binary. So the test verifies a *copy* whose
  ``/opt/svwatchd/bin/`` prefix points at the bin folder of the Python running
  the tests, which holds the same console scripts (``svwatchd``, ``svserver``);
  every argument is unchanged. Nothing else is edited.
- ``systemd-analyze security --offline=true``: the overall exposure must be
  2.0 or lower for each unit.

Both are skipped, with the reason, when systemd-analyze is not installed
(``apt-get install systemd``; scripts/test installs it when it runs as root).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from svwatchd.daemon._config import load_config

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
NAMES = ("svwatchd.service", "svserver.service")
RAY_NAMES = ("svserver-ray-head.service", "svserver-ray-worker.service")  # docs/ray.md
INSTALL_BIN = "/opt/svwatchd/bin/"
MAX_EXPOSURE = 2.0

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (apt-get install -y systemd); "
    "the unit files were not verified",
)


def directives(name: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file (all sections), continuation lines joined."""
    out: dict[str, list[str]] = {}
    text = (UNITS / name).read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, _, val = line.partition("=")
        out.setdefault(key.strip(), []).append(" ".join(val.split()))
    return out


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    env = {**os.environ, "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def runnable_copy(name: str, folder: Path) -> Path:
    """The unit with /opt/svwatchd/bin/ pointing at this Python's bin folder (see above)."""
    bindir = Path(sys.executable).parent
    for script in ("svwatchd", "svserver"):
        assert (bindir / script).is_file(), f"{bindir / script} missing: install the package"
    text = (UNITS / name).read_text()
    assert INSTALL_BIN in text
    copy = folder / name
    copy.write_text(text.replace(INSTALL_BIN, f"{bindir}/"))
    return copy


@needs_analyze
@pytest.mark.parametrize("name", NAMES + RAY_NAMES)
def test_verify(name: str, tmp_path: Path) -> None:
    copy = runnable_copy(name, tmp_path)
    result = analyze("verify", "--man=no", str(copy))
    output = result.stdout + result.stderr
    # warnings (unknown keys, bad values) do not change the exit status: read them too
    ours = [line for line in output.splitlines() if name in line or str(tmp_path) in line]
    assert result.returncode == 0, output
    assert ours == [], output


@needs_analyze
def test_verify_would_catch_a_mistake(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt directive is reported."""
    copy = runnable_copy("svwatchd.service", tmp_path)
    copy.write_text(copy.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    result = analyze("verify", "--man=no", str(copy))
    assert "ProtectSytem" in result.stdout + result.stderr


@needs_analyze
@pytest.mark.parametrize("name", NAMES + RAY_NAMES)
def test_security_exposure(name: str) -> None:
    result = analyze("security", "--offline=true", "--no-pager", str(UNITS / name))
    output = result.stdout + result.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    assert m is not None, output
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, f"{name}: exposure {exposure} > {MAX_EXPOSURE}\n{output}"


# -- what the issue asks of the units (no systemd needed) --------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_units_have_the_required_directives(name: str) -> None:
    d = directives(name)
    assert d["Type"] == ["notify"]
    assert d["NotifyAccess"] == ["main"]
    assert d["Restart"] == ["on-failure"]
    assert len(d["WatchdogSec"]) == 1
    assert d["ProtectSystem"] == ["strict"]
    assert d["User"] == ["svwatchd"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["CapabilityBoundingSet"] == [""]
    assert d["KillMode"] == ["mixed"]
    assert "MemoryDenyWriteExecute" not in d  # breaks cffi/JIT: left out, with a comment
    assert "Not MemoryDenyWriteExecute=yes" in (UNITS / name).read_text()
    assert d["ExecStart"][0].startswith(INSTALL_BIN)


def test_svwatchd_unit() -> None:
    d = directives("svwatchd.service")
    assert d["ExecStart"] == [f"{INSTALL_BIN}svwatchd run --config /etc/svwatchd/svwatchd.yaml"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["StateDirectory"] == ["svwatchd"]
    assert d["ConfigurationDirectory"] == ["svwatchd"]
    assert d["ReadWritePaths"] == ["/srv/audio"]


def test_svserver_unit() -> None:
    d = directives("svserver.service")
    (cmd,) = d["ExecStart"]
    assert cmd.startswith(f"{INSTALL_BIN}svserver serve ")
    for option in (
        "--data-dir /var/lib/svserver",
        "--listen 127.0.0.1:8750",
        "--metrics 127.0.0.1:9751",
        "--allow-root /srv/audio",
        "--token-file /etc/svwatchd/token",
    ):
        assert option in cmd
    assert d["StateDirectory"] == ["svserver"]
    assert "ReadWritePaths" not in d  # it reads the audio, never writes it
    assert "ExecReload" not in d


def test_ray_units() -> None:
    """The head and worker Ray nodes: light settings, in the foreground, restarted, the
    head where svserver's example joins it."""
    head, worker = (directives(name) for name in RAY_NAMES)
    (head_cmd,) = head["ExecStart"]
    (worker_cmd,) = worker["ExecStart"]
    assert head_cmd.startswith(f"{INSTALL_BIN}ray start --head --block ")
    assert "--port 6379" in head_cmd and "--include-dashboard=false" in head_cmd
    assert worker_cmd.startswith(f"{INSTALL_BIN}ray start --block --address ${{RAY_HEAD}}")
    for d, cmd in ((head, head_cmd), (worker, worker_cmd)):
        assert "--disable-usage-stats" in cmd and "--object-store-memory" in cmd
        assert d["User"] == ["svwatchd"] and d["NoNewPrivileges"] == ["yes"]
        assert d["Restart"] in (["on-failure"], ["always"])
    assert "--ray-address 127.0.0.1:6379" in (UNITS / RAY_NAMES[0]).read_text()


def test_example_config_is_valid(tmp_path: Path) -> None:
    """systemd/svwatchd.yaml loads (its /srv, /etc and /var paths moved under tmp_path),
    talks to svserver.service's address, and keeps every folder where the unit may write."""
    text = (UNITS / "svwatchd.yaml").read_text()
    moved = (
        text.replace("/srv/audio", str(tmp_path / "srv/audio"))
        .replace("/etc/svwatchd", str(tmp_path / "etc/svwatchd"))
        .replace("/var/lib/svwatchd", str(tmp_path / "var/lib/svwatchd"))
    )
    (tmp_path / "etc/svwatchd").mkdir(parents=True)
    (tmp_path / "etc/svwatchd/token").write_text("example-token\n")
    for m in re.finditer(r"^\s*- path: (\S+)", moved, re.MULTILINE):
        Path(m.group(1)).mkdir(parents=True)
    config_file = tmp_path / "etc/svwatchd/svwatchd.yaml"
    config_file.write_text(moved)
    config = load_config(config_file)

    assert config.state_dir == tmp_path / "var/lib/svwatchd"
    assert config.metrics is not None
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9750)
    assert getattr(config.server, "url", None) == "http://127.0.0.1:8750"
    assert getattr(config.server, "token", None) == "example-token"
    assert config.log.format == "json"
    audio = tmp_path / "srv/audio"
    for w in config.watches:
        assert audio in w.path.parents
        assert audio in w.output_dir.parents
        if isinstance(w.after, tuple):
            assert audio in w.after[1].parents
