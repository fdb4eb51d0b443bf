"""Caps on what is held open at once (chat streams, model-server connections), counted in this process."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator


class ConcurrencyLimit:
    """At most `limit` holders of each key at once; a holder beyond it is refused, never queued."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held: dict[Hashable, int] = {}

    @contextlib.contextmanager
    def hold(self, key: Hashable, refusal: Exception) -> Iterator[None]:
        """Holds one place of `key` for the block; raises `refusal` when every place is taken."""
        held = self._held.get(key, 0)
        if held >= self._limit:
            raise refusal
        self._held[key] = held + 1
        try:
            yield
        finally:
            left = self._held[key] - 1
            if left:
                self._held[key] = left
            else:
                del self._held[key]
