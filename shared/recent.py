"""What a process read from its database, kept for a few seconds: per database, since tests run several."""

from __future__ import annotations

import time
from typing import Generic, TypeVar

T = TypeVar("T")


class RecentReads(Generic[T]):
    """A value per database (keyed by its URL), trusted for `seconds` after it was read.

    For data read on every request and changed rarely (classification rules, SLA policies): a change made
    through this process `forget`s it at once; one made through another replica is seen within `seconds`.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[float, T]] = {}

    def get(self, database: object) -> T | None:
        entry = self._entries.get(str(database))
        if entry is not None and time.monotonic() - entry[0] < self.seconds:
            return entry[1]
        return None

    def put(self, database: object, value: T) -> T:
        self._entries[str(database)] = (time.monotonic(), value)
        return value

    def forget(self, database: object) -> None:
        self._entries.pop(str(database), None)
