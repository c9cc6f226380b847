"""Per-process indexes of a site's knowledge (retrieval, curated answers), each kept with the
version of the rows it was built from."""

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class VersionedIndexes(Generic[T]):
    """One index per site; an index counts only for the version it was built for."""

    def __init__(self) -> None:
        self._entries: dict[int, tuple[tuple, T]] = {}
        self._lock = threading.Lock()

    def get(self, site_id: int, version: tuple) -> T | None:
        """The site's index if built for `version`; else None."""
        with self._lock:
            entry = self._entries.get(site_id)
        return entry[1] if entry is not None and entry[0] == version else None

    def put(self, site_id: int, version: tuple, index: T) -> None:
        with self._lock:
            self._entries[site_id] = (version, index)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
