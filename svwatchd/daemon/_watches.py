"""The watches the daemon runs now, by identity: their configs and metadata resolvers.

Every part of the daemon names a watch by its `WatchId` (its root path):
the watcher's observers and changes, the settler's entries, ingest, the
journal's rows, the metadata resolvers and the metrics. A reload may reorder
the config's list, drop a watch or add one; `Watches.update` takes the new
list and keeps what did not change (a resolver keeps its cache of metadata
files), so nothing keyed by a watch can ever point at another one.

Owned by the loop thread: only the loop reads it or updates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from svwatchd.daemon._metadata import MetadataResolver
from svwatchd.daemon._watchconfig import WatchConfig, WatchId
from svwatchd.daemon._watcher import WatchSpec

__all__ = ["Watches"]


class Watches:
    """The current watches by id, in config order, each with its `MetadataResolver`.

    ``complete(path)`` tells a resolver that a metadata file was closed or moved
    in (an event), so it need not wait ``settle`` before reading it.
    """

    def __init__(self, configs: Sequence[WatchConfig], *, complete: Callable[[str], bool]) -> None:
        self._complete = complete
        self._by_id: dict[WatchId, WatchConfig] = {}
        self._resolvers: dict[WatchId, MetadataResolver] = {}
        self.update(configs)

    def update(self, configs: Sequence[WatchConfig]) -> set[WatchId]:
        """Take the watches of a (re)loaded config; returns the ids no longer watched."""
        old, resolvers = self._by_id, self._resolvers
        self._by_id = {w.id: w for w in configs}
        self._resolvers = {
            wid: resolvers[wid] if old.get(wid) == w and wid in resolvers else self._resolver(w)
            for wid, w in self._by_id.items()
        }
        return set(old) - set(self._by_id)

    def _resolver(self, w: WatchConfig) -> MetadataResolver:
        return MetadataResolver(
            w.path,
            w.metadata,
            filename=w.metadata_file,
            tags_from_path=w.tags_from_path,
            settle=w.settle,
            complete=self._complete,
        )

    def __iter__(self) -> Iterator[WatchConfig]:
        return iter(self._by_id.values())

    @property
    def ids(self) -> list[WatchId]:
        """The ids of the current watches, in config order."""
        return list(self._by_id)

    def get(self, watch: WatchId) -> WatchConfig | None:
        """The watch with this id, or None when a reload removed it."""
        return self._by_id.get(watch)

    def owner(self, watch: WatchId, path: str) -> WatchConfig | None:
        """The watch ``watch`` when it is still watched and ``path`` is one of its files."""
        config = self._by_id.get(watch)
        return config if config is not None and config.contains(path) else None

    def resolver(self, watch: WatchId) -> MetadataResolver | None:
        """The metadata resolver of the watch, or None when a reload removed it."""
        return self._resolvers.get(watch)

    def specs(self) -> list[WatchSpec]:
        """What the watcher needs of each watch."""
        return [
            WatchSpec(
                w.id,
                w.path,
                w.recursive,
                w.selector,
                w.poll,
                w.excluded_dirs,
                w.metadata_file,
                w.is_own_output if w.output_same else None,
            )
            for w in self
        ]
