"""Model files: proving they are the ones we tested, and digests to compare servers by.

A server that loads a truncated or altered model would decode garbage
quietly, so the files of a model with recorded digests (the bundled ones,
:mod:`~svwatchd.server._engines.bundles`, or an operator's pinned by a
manifest) are hashed once per worker start and a mismatch stops the start
with :class:`ModelIntegrityError`.

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

from svwatchd.errors import ModelIntegrityError

__all__ = [
    "combined_digest",
    "digest_model_dir",
    "read_sha256_manifest",
    "sha256_file",
    "verify_model",
]


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
