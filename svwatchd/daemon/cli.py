"""The ``svwatchd`` command: ``run``, ``check`` and ``status`` on a YAML config."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point. The daemon itself is being built (issue 4); until then say so plainly."""
    args = sys.argv[1:] if argv is None else argv
    print(
        f"svwatchd {' '.join(args)}: the watch-folder daemon is not yet available in this "
        "version; svserver and the client library are.",
        file=sys.stderr,
    )
    return 2
