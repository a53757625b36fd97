"""Every module's ``__all__`` is complete, exists and is sorted (as httpx checks its own).

Sorted as isort sorts (CONSTANTS, Classes, functions). Complete: each public
class, undecorated function, constant (UPPER_CASE) and type alias (CamelCase)
defined at a module's top level is listed. A module without
``__all__`` must define nothing public. The package's front doors
(``svwatchd``, ``svwatchd.client``) export what their docstrings promise.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import svwatchd

_LEAVES = pkgutil.walk_packages(svwatchd.__path__, prefix="svwatchd.")
_MODULES = [
    *sorted(m.name for m in _LEAVES if not m.ispkg),
    "svwatchd",
    "svwatchd.client",
    "svwatchd.model",
]
_CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ALIAS = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$")


def _isort_key(name: str) -> tuple[int, str]:
    """isort's order (ruff RUF022): CONSTANTS, then Classes, then everything else."""
    if _CONSTANT.match(name):
        return 0, name
    return (1 if name[:1].isupper() else 2), name


def _defined(path: Path) -> set[str]:
    """Public names a module defines at its top level (classes, functions, constants, aliases)."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.decorator_list:  # decorated: registered (a route), not module API
                names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and (_CONSTANT.match(t.id) or _ALIAS.match(t.id)):
                    names.add(t.id)
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize("name", _MODULES)
def test_all_is_complete_and_sorted(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    path = Path(module.__file__ or "")
    if listed is None:
        assert not _defined(path), f"{name} defines public names but has no __all__"
        return
    assert list(listed) == sorted(listed, key=_isort_key), f"{name}.__all__ is not sorted"
    missing = [n for n in listed if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not have: {missing}"
    unlisted = sorted(_defined(path) - set(listed))
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"


def test_front_doors() -> None:
    import svwatchd.client

    assert {"Server", "Stream", "createstreams", "createdirstreams"} <= set(svwatchd.client.__all__)
    for name in ("DecodeStatus", "Encoding", "Endian"):
        assert hasattr(svwatchd.client, name)
    from svwatchd import errors

    assert set(svwatchd.__all__) >= set(errors.__all__)


def test_client_docstring_example_names_exist() -> None:
    """The client package's own example (``from svwatchd.client import Server, Stream``)."""
    from svwatchd.client import Server, Stream

    assert callable(Server) and callable(Stream)


# The library's API; everything else has a private name (``_x``) somewhere in its path.
_PUBLIC = {
    "svwatchd",
    "svwatchd.client",
    "svwatchd.client.server",
    "svwatchd.client.speechdata",
    "svwatchd.client.stream",
    "svwatchd.daemon",
    "svwatchd.errors",
    "svwatchd.model",
    "svwatchd.model.contract",
    "svwatchd.model.enums",
    "svwatchd.model.format",
    "svwatchd.model.languages",
    "svwatchd.model.metadata",
    "svwatchd.model.record",
    "svwatchd.model.select",
    "svwatchd.model.speechdata",
    "svwatchd.server",
}


def test_only_the_api_has_public_names() -> None:
    """Implementation modules are private, as httpx's are: a new module must choose."""
    every = {m.name for m in pkgutil.walk_packages(svwatchd.__path__, prefix="svwatchd.")}
    public = {
        name for name in every | {"svwatchd"} if not any(p.startswith("_") for p in name.split("."))
    }
    assert public == _PUBLIC


def test_applications_export_nothing() -> None:
    """svserver and the daemon are used through their commands, never imported as a library."""
    import svwatchd.daemon
    import svwatchd.server

    for package in (svwatchd.server, svwatchd.daemon):
        assert not [n for n in vars(package) if not n.startswith("_")]
        assert "not a library" in (package.__doc__ or "")


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        # the shared model is pure: no decoder, no numpy, none of the three parts
        ("svwatchd.model", ("numpy", "svwatchd.client", "svwatchd.server", "svwatchd.daemon")),
        ("svwatchd.model.speechdata", ("numpy", "svwatchd.client", "svwatchd.server")),
        ("svwatchd.model.metadata", ("numpy", "svwatchd.client", "svwatchd.server")),
        ("svwatchd.model.select", ("numpy", "svwatchd.client", "svwatchd.server")),
        ("svwatchd.model.format", ("numpy", "svwatchd.client", "svwatchd.server")),
        ("svwatchd.model.languages", ("numpy", "svwatchd.client", "svwatchd.server")),
        # config parsing stays light; svserver never goes through the client
        ("svwatchd.daemon._config", ("numpy", "svwatchd.server", "svwatchd.client")),
        ("svwatchd.server._app", ("svwatchd.client", "svwatchd.daemon")),
        ("svwatchd.client", ("svwatchd.server", "svwatchd.daemon")),
    ],
)
def test_layering(module: str, must_not_load: tuple[str, ...]) -> None:
    """client -> model <- server, daemon: each part imports only what the layering allows."""
    code = (
        f"import sys, {module}\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] == 'numpy' and 'numpy' in "
        f"{must_not_load!r} or any(m == p or m.startswith(p + '.') for p in {must_not_load!r}"
        f" if p != 'numpy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert not out, f"importing {module} loaded {out}"
