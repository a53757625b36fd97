"""The daemon's YAML config: defaults, paths, and every problem reported with file, line and key."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from svwatchd.daemon._config import (
    DEFAULT_IGNORE,
    DaemonConfig,
    EmbeddedServer,
    LogConfig,
    Policy,
    RemoteServer,
    load_config,
    validate_config,
)
from svwatchd.errors import ConfigError, ConfigErrors
from svwatchd.model.contract import AUDIO_EXTENSIONS, OUTPUT_FORMATS
from svwatchd.model.select import FileSelector

ISSUE_EXAMPLE = r"""
server: embedded                 # or: {url: http://host:8750, token_file: ..., timeout: 10s}
state_dir: ./state               # journal lives here
refresh_interval: 5s
rescan_interval: 5m
log: {format: json, level: info}          # json lines or console
metrics: {listen: 127.0.0.1:9750}         # optional; absent = no metrics endpoint
policy:
  max_inflight: 100
  retry_errors: 2
  delete_after: 1h
  close_after: 6h
  pause_windows: []
  timezone: Europe/Berlin
watches:
  - path: ./inbox
    recursive: true
    exts: [wav, raw]
    filters: []
    ignore: [".*", "*.part", "*.tmp", "*~"]
    settle: 2s
    poll: false
    metadata: {channel: sales, samprate: 8k, encoding: ULAW, sampwidth: 1}
    metadata_file: .svwatchd.yaml
    tags_from_path: '(?P<agent>[a-z]+)_(?P<date>\d{8})'
    output: {dir: ./transcripts, formats: [txt, json, srt, vtt]}
    after: keep
"""

MINIMAL = """\
state_dir: state
watches:
  - path: inbox
    output: {dir: out}
"""


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder holding an ``inbox`` to watch."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inbox").mkdir()
    return tmp_path


def write(folder: Path, text: str, name: str = "svwatchd.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> dict[str | None, tuple[int | None, str]]:
    """Key -> (line, message) of every problem, checking load_config agrees with validate."""
    errors = validate_config(path)
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    assert [str(e) for e in info.value.errors] == [str(e) for e in errors]
    assert all(e.file == str(path) for e in errors)
    return {e.key: (e.line, str(e)) for e in errors}


def test_issue_example_loads(cwd: Path) -> None:
    cfg = load_config(write(cwd, ISSUE_EXAMPLE))
    assert cfg.server == EmbeddedServer()
    assert cfg.state_dir == cwd / "state"
    assert (cfg.refresh_interval, cfg.rescan_interval) == (5.0, 300.0)
    assert cfg.log == LogConfig("json", "info")
    assert cfg.metrics is not None and (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9750)
    p = cfg.policy
    assert (p.max_inflight, p.retry_errors, p.delete_after, p.close_after) == (100, 2, 3600, 21600)
    assert not p.pause_windows and p.pause_windows.zone == ZoneInfo("Europe/Berlin")
    (w,) = cfg.watches
    assert w.path == cwd / "inbox" and w.recursive and not w.poll and w.settle == 2.0
    assert w.selector == FileSelector.create(["wav", "raw"], [], [".*", "*.part", "*.tmp", "*~"])
    assert w.metadata == {"channel": "sales", "samprate": "8k", "encoding": "ULAW", "sampwidth": 1}
    assert w.metadata_file == ".svwatchd.yaml"
    assert w.tags_from_path is not None and set(w.tags_from_path.groupindex) == {"agent", "date"}
    assert w.output_dir == cwd / "transcripts" and w.formats == OUTPUT_FORMATS
    assert w.after == "keep" and w.excluded_dirs == ()
    assert validate_config(cwd / "svwatchd.yaml") == []


def test_every_default(cwd: Path) -> None:
    cfg = load_config(write(cwd, MINIMAL))
    assert isinstance(cfg, DaemonConfig)
    assert cfg.server == EmbeddedServer()
    assert (cfg.refresh_interval, cfg.rescan_interval) == (5.0, 300.0)
    assert cfg.log == LogConfig(format="json", level="info")
    assert cfg.metrics is None
    assert cfg.policy == Policy(max_inflight=100, retry_errors=2)
    assert cfg.policy.delete_after is None and cfg.policy.close_after is None
    assert not cfg.policy.pause_windows and cfg.policy.pause_windows.timezone is None
    (w,) = cfg.watches
    assert w.recursive is True and w.poll is False and w.settle == 2.0
    assert w.selector == FileSelector.create(AUDIO_EXTENSIONS, [], DEFAULT_IGNORE)
    assert ".mp3" in w.selector.exts and ".m4a" in w.selector.exts and w.selector.filters == ()
    assert DEFAULT_IGNORE == (".*", "*.part", "*.tmp", "*~")
    assert w.metadata == {} and w.metadata_file == ".svwatchd.yaml" and w.tags_from_path is None
    assert w.formats == ("txt", "json", "srt", "vtt") and w.after == "keep"


def test_relative_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf, work = tmp_path / "etc", tmp_path / "work"
    for d in (conf, work / "inbox"):
        d.mkdir(parents=True)
    monkeypatch.chdir(work)
    path = write(conf, MINIMAL + "    after: move:done\n")
    cfg = load_config(path)
    assert cfg.state_dir == work / "state"
    assert cfg.watches[0].path == work / "inbox"
    assert cfg.watches[0].output_dir == work / "out"
    assert cfg.watches[0].after == ("move", work / "done")
    assert all(p.is_absolute() for p in (cfg.state_dir, cfg.watches[0].path))


def test_home_is_expanded(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(cwd))
    cfg = load_config(write(cwd, MINIMAL.replace("path: inbox", "path: ~/inbox")))
    assert cfg.watches[0].path == cwd / "inbox"


def test_output_move_and_state_folders_inside_a_watch_are_excluded(cwd: Path) -> None:
    (cwd / "other").mkdir()
    cfg = load_config(
        write(
            cwd,
            """\
            state_dir: inbox/.state
            watches:
              - path: inbox
                output: {dir: inbox/transcripts}
                after: move:inbox/done
              - path: other
                output: {dir: inbox/from-other}
            """,
        )
    )
    inbox, other = cfg.watches
    assert inbox.excluded_dirs == tuple(
        sorted(cwd / "inbox" / d for d in (".state", "done", "from-other", "transcripts"))
    )
    assert other.excluded_dirs == ()


def test_remote_server_reads_its_token_file(cwd: Path) -> None:
    (cwd / "token").write_text("s3cret\n")
    cfg = load_config(
        write(cwd, "server: {url: 'https://asr.example:8750/', token_file: token}\n" + MINIMAL)
    )
    assert cfg.server == RemoteServer("https://asr.example:8750", cwd / "token", "s3cret", 10.0)
    cfg = load_config(write(cwd, "server: {url: http://h, timeout: 1m30s}\n" + MINIMAL))
    assert cfg.server == RemoteServer("http://h", None, None, 90.0)


def test_embedded_models_by_name_or_directory(cwd: Path) -> None:
    """``model:`` takes a bundled model's name, a directory, or a list of them (routed by
    language), each passed to svserver as one ``--model``; anything else names the key."""
    (cwd / "mine").mkdir()
    cfg = load_config(write(cwd, "server: {embedded: {model: [tiny.en, base, mine]}}\n" + MINIMAL))
    assert isinstance(cfg.server, EmbeddedServer)
    assert cfg.server.models == ("tiny.en", "base", str(cwd / "mine"))
    args = cfg.server.args()
    assert [args[i + 1] for i, a in enumerate(args) if a == "--model"] == list(cfg.server.models)
    cfg = load_config(write(cwd, "server: {embedded: {model: base}}\n" + MINIMAL))
    assert isinstance(cfg.server, EmbeddedServer) and cfg.server.models == ("base",)
    found = problems(write(cwd, "server: {embedded: {model: [base, large]}}\n" + MINIMAL))
    assert list(found) == ["server.embedded.model[1]"]
    assert (
        "'large' is neither a model svserver ships (tiny.en, base)"
        in found["server.embedded.model[1]"][1]
    )


def test_other_forms(cwd: Path) -> None:
    text = """\
        state_dir: state
        log: {format: console, level: WARN}
        metrics: {listen: '[::1]:9750'}
        policy:
          delete_after: 0
          close_after: null
          pause_windows: mon-fri 09:00-17:00
          timezone: Europe/Berlin
        watches:
          - &base
            path: inbox
            output: {dir: out, formats: [json, txt, json]}
            exts: wav
            ignore: []
            metadata: {recorded_at: 2026-11-24, "on": yes, ratio: 0.5}
            after: delete
          - <<: *base
            path: inbox2
            recursive: false
            ignore: [yes]
        """
    (cwd / "inbox2").mkdir()
    cfg = load_config(write(cwd, text))
    assert cfg.log == LogConfig("console", "warning")
    assert cfg.metrics is not None and (cfg.metrics.host, cfg.metrics.port) == ("::1", 9750)
    assert cfg.policy.delete_after == 0.0 and cfg.policy.close_after is None
    assert [w.spec for w in cfg.policy.pause_windows.windows] == ["mon-fri 09:00-17:00"]
    a, b = cfg.watches
    assert a.selector.exts == (".wav",) and a.selector.ignore == ()
    assert a.formats == ("json", "txt") and a.after == "delete"
    assert a.metadata == {"recorded_at": "2026-11-24", "on": True, "ratio": 0.5}
    assert b.path == cwd / "inbox2" and not b.recursive and b.output_dir == cwd / "out"
    assert b.selector.ignore == ("yes",) and b.after == "delete"


# --- problems: each with its line and key ----------------------------------------

BAD_WATCH = """\
state_dir: state
watches:
  - path: inbox
    output: {{dir: out}}
    {line}
"""


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ("setle: 2s", "watches[0].setle", "unknown key (did you mean 'settle'?); valid keys: a"),
        ("settle: soon", "watches[0].settle", "'soon' is not a duration"),
        ("settle: -1", "watches[0].settle", "negative"),
        ("recursive: maybe", "watches[0].recursive", "expected true or false, got 'maybe'"),
        ("poll: 1", "watches[0].poll", "expected true or false"),
        ("exts: [wav, '']", "watches[0].exts[1]", "extension '' is empty"),
        ("exts: {a: 1}", "watches[0].exts", "expected a list"),
        ("filters: ['(']", "watches[0].filters[0]", "not a valid regular expression"),
        ("ignore: [[a]]", "watches[0].ignore[0]", "expected a text value"),
        ("metadata: {samprate: 3k}", "watches[0].metadata.samprate", "3000 Hz is outside"),
        ("metadata: {encoding: MP3}", "watches[0].metadata.encoding", "encoding"),
        ("metadata: {sampwidth: 9}", "watches[0].metadata.sampwidth", "outside 1..4"),
        ("metadata: {'bad key': 1}", "watches[0].metadata.bad key", "is not valid"),
        ("metadata: {recorded_at: soon}", "watches[0].metadata.recorded_at", "ISO 8601"),
        ("metadata: {tag: [1]}", "watches[0].metadata.tag", "a tag must be"),
        ("metadata: [a]", "watches[0].metadata", "expected a mapping"),
        ("metadata_file: a/b.yaml", "watches[0].metadata_file", "not a plain file name"),
        ("tags_from_path: '[a-z]+'", "watches[0].tags_from_path", "has no named group"),
        ("tags_from_path: '(?P<a>'", "watches[0].tags_from_path", "not a valid regular"),
        ("after: move", "watches[0].after", "not an action: keep, delete or move:DIR"),
        ("after: 'move:'", "watches[0].after", "not an action"),
        ("after: archive", "watches[0].after", "not an action"),
        ("after: move:inbox", "watches[0].after", "is or contains watches[0].path"),
        ("after: move:.", "watches[0].after", "is or contains watches[0].path"),
    ],
)
def test_watch_problems(cwd: Path, line: str, key: str, words: str) -> None:
    found = problems(write(cwd, BAD_WATCH.format(line=line)))
    assert list(found) == [key]
    assert found[key][0] == 5
    assert words in found[key][1]
    assert found[key][1].startswith(f"{cwd / 'svwatchd.yaml'}:5: {key}: ")


@pytest.mark.parametrize(
    ("text", "key", "line", "words"),
    [
        ("refresh_intervl: 5s", "refresh_intervl", 1, "did you mean 'refresh_interval'"),
        ("refresh_interval: 0s", "refresh_interval", 1, "must be more than 0"),
        ("rescan_interval: 5 min", "rescan_interval", 1, "is not a duration"),
        ("log: {format: xml}", "log.format", 1, "'xml' is not a log format"),
        ("log: {level: loud}", "log.level", 1, "'loud' is not a level"),
        ("log: json", "log", 1, "expected a mapping with keys format, level"),
        ("metrics: {listen: nohost}", "metrics.listen", 1, "has no port"),
        ("metrics: {listen: 'h:99999'}", "metrics.listen", 1, "no valid port"),
        ("metrics: {}", "metrics.listen", 1, "is required"),
        ("server: local", "server", 1, "'local' is not a server"),
        ("server: {url: 'ftp://h'}", "server.url", 1, "not an http:// or https:// URL"),
        ("server: {url: 'http://'}", "server.url", 1, "not an http:// or https:// URL"),
        ("server: {timeout: 5s}", "server.url", 1, "is required"),
        ("server:\n  url: http://h\n  timeout: 0", "server.timeout", 3, "more than 0"),
        ("server: {url: 'http://h', token_file: nope}", "server.token_file", 1, "cannot read"),
        ("server: {url: 'http://h', tokenfile: t}", "server.tokenfile", 1, "'token_file'"),
        ("policy: {max_inflight: 0}", "policy.max_inflight", 1, ">= 1, got 0"),
        ("policy: {max_inflight: true}", "policy.max_inflight", 1, "whole number"),
        ("policy: {retry_errors: -1}", "policy.retry_errors", 1, ">= 0, got -1"),
        ("policy: {delete_after: later}", "policy.delete_after", 1, "not a duration"),
        ("policy: {close_after: 0s}", "policy.close_after", 1, "more than 0"),
        ("policy:\n  timezone: Mars/Olympus", "policy.timezone", 2, "'Mars/Olympus'"),
        (
            "policy:\n  pause_windows:\n    - mon 09:00-10:00\n    - xyz 1:00-2:00",
            "policy.pause_windows[1]",
            4,
            "'xyz' is not a day",
        ),
    ],
)
def test_top_level_problems(cwd: Path, text: str, key: str, line: int, words: str) -> None:
    found = problems(write(cwd, text + "\n" + MINIMAL))
    assert list(found) == [key]
    assert found[key][0] == line and words in found[key][1]


def test_empty_token_file_and_both_token_forms(cwd: Path) -> None:
    (cwd / "token").write_text("  \n")
    found = problems(write(cwd, "server: {url: 'http://h', token_file: token}\n" + MINIMAL))
    assert "is empty" in found["server.token_file"][1]
    (cwd / "token").write_text("t")
    found = problems(
        write(cwd, "server: {url: 'http://h', token_file: token, token: t}\n" + MINIMAL)
    )
    assert "not both" in found["server.token"][1]


def test_several_problems_at_once(cwd: Path) -> None:
    path = write(
        cwd,
        """\
        state_dir: state
        refresh_interval: never
        policy: {max_inflight: 0, retry_errors: 1}
        watches:
          - path: inbox
            settle: soon
            output: {dir: out, formats: [pdf]}
            colour: blue
          - path: missing
            output: {dir: out2}
        """,
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    err = info.value
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)
    assert [(e.line, e.key) for e in err.errors] == [
        (2, "refresh_interval"),
        (3, "policy.max_inflight"),
        (6, "watches[0].settle"),
        (7, "watches[0].output.formats[0]"),
        (8, "watches[0].colour"),
        (9, "watches[1].path"),
    ]
    lines = str(err).splitlines()
    assert lines[0] == f"{path}: 6 problem(s):"
    assert lines[1:] == [f"  {e}" for e in err.errors]
    assert "does not exist; create it" in lines[-1]


def test_required_keys(cwd: Path) -> None:
    found = problems(write(cwd, "refresh_interval: 5s\n"))
    assert set(found) == {"state_dir", "watches"}
    found = problems(write(cwd, "state_dir: s\nwatches:\n  - recursive: true\n    settle: x\n"))
    assert set(found) == {"watches[0].path", "watches[0].output", "watches[0].settle"}
    assert found["watches[0].path"][0] == 3 and found["watches[0].settle"][0] == 4
    found = problems(write(cwd, "state_dir: s\nwatches:\n  - path: inbox\n    output: {}\n"))
    assert set(found) == {"watches[0].output.dir"} and found["watches[0].output.dir"][0] == 4
    found = problems(write(cwd, "state_dir: s\nwatches: []\n"))
    assert "one or more watches" in found["watches"][1]


def test_duplicate_keys(cwd: Path) -> None:
    found = problems(write(cwd, MINIMAL + "    poll: true\n    poll: false\n"))
    assert found == {"watches[0].poll": (6, found["watches[0].poll"][1])}
    assert "duplicate key" in found["watches[0].poll"][1]


def test_watch_folders(cwd: Path) -> None:
    (cwd / "inbox" / "sub").mkdir()
    (cwd / "afile").write_text("")
    found = problems(
        write(
            cwd,
            """\
            state_dir: inbox
            watches:
              - path: inbox
                output: {dir: out}
              - path: ./inbox/
                output: {dir: out}
              - path: inbox/sub
                output: {dir: out}
              - path: afile
                output: {dir: out}
              - path: nowhere
                output: {dir: out}
            """,
        )
    )
    assert found["state_dir"][0] == 1 and "is or contains watches[0].path" in found["state_dir"][1]
    assert "is the same folder as watches[0].path" in found["watches[1].path"][1]
    assert found["watches[2].path"][0] == 7
    assert "is nested with watches[0].path" in found["watches[2].path"][1]
    assert "is not a directory" in found["watches[3].path"][1]
    assert found["watches[4].path"][0] == 11
    assert re.search(r"nowhere' does not exist; create it$", found["watches[4].path"][1])


def test_output_folder_may_not_hold_a_watch(cwd: Path) -> None:
    found = problems(write(cwd, MINIMAL.replace("dir: out", "dir: .")))
    assert "is or contains watches[0].path" in found["watches[0].output.dir"][1]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "the file is empty"),
        ("# nothing here\n", None, "the file is empty"),
        ("- a\n- b\n", 1, "the top level must be a mapping"),
        ("just words\n", 1, "the top level must be a mapping"),
        ("state_dir: s\nwatches: [a\nb: 1\n", 3, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 2, "invalid YAML: expected a single document"),
        ("a: 1\n\tb: 2\n", 2, "invalid YAML"),
    ],
)
def test_file_level_problems(cwd: Path, text: str, line: int | None, words: str) -> None:
    path = write(cwd, text)
    (err,) = validate_config(path)
    assert (err.file, err.line, err.key) == (str(path), line, None)
    assert words in str(err)


def test_unsafe_tags_are_refused(cwd: Path) -> None:
    found = problems(write(cwd, MINIMAL + "    metadata: !!python/object:os.system x\n"))
    assert "cannot read this value" in found["watches[0].metadata"][1]


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    (err,) = validate_config(path)
    assert "cannot read the config file" in str(err) and err.file == str(path)
    with pytest.raises(ConfigErrors):
        load_config(path)
