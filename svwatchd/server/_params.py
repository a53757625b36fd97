"""svserver's tunable parameters: validated, persisted, read by the scheduler at each decision.

``maxactive`` and ``pack_max`` can be set (integers 1..1024, kept in the
store across restarts); ``engine`` and ``workers`` are read-only facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from svwatchd.errors import ParameterError, UnknownParameterError
from svwatchd.server._store import Store

__all__ = ["Params"]


class Params:
    """The parameters; ``on_change`` is called after a set (the scheduler looks again)."""

    def __init__(
        self,
        store: Store,
        *,
        fixed: Mapping[str, object],
        defaults: Mapping[str, int],
        on_change: Callable[[], None],
    ) -> None:
        self._store = store
        self._fixed = dict(fixed)
        self._values = dict(defaults)
        self._values.update(
            {k: v for k, v in store.params().items() if k in defaults and isinstance(v, int)}
        )
        self._on_change = on_change

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def get(self, names: Iterable[str]) -> dict[str, object]:
        """The named parameters (all when none are named).

        Raises :class:`UnknownParameterError` naming an unknown one.
        """
        everything = {**self._fixed, **self._values}
        names = list(names)
        for n in names:
            if n not in everything:
                raise UnknownParameterError(
                    f"unknown parameter {n!r}; known: {', '.join(sorted(everything))}", name=n
                )
        return {n: everything[n] for n in names} if names else everything

    def set(self, values: Mapping[str, object]) -> None:
        """Validate every value first, then store them all (nothing changes on error).

        Every problem, an unknown name included, is a :class:`ParameterError`.
        """
        for name, value in values.items():
            if name in self._fixed:
                raise ParameterError(
                    f"parameter {name!r} is read-only (set it when starting svserver)", name=name
                )
            if name not in self._values:
                known = ", ".join(sorted({*self._fixed, *self._values}))
                raise ParameterError(f"unknown parameter {name!r}; known: {known}", name=name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise ParameterError(
                    f"parameter {name!r} must be an integer 1..1024, not {value!r}", name=name
                )
        self._store.set_params(values)
        self._values.update({k: v for k, v in values.items() if isinstance(v, int)})
        self._on_change()
