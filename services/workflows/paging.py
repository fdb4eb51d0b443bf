"""The marketplace's pages: a signed cursor past the last row, limit 1 to 100 (20 when absent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.fields import parse_limit
from services.common.paging import decode_cursor, encode_cursor
from services.workflows import repository

DEFAULT_LIMIT, MAX_LIMIT = 20, 100


@dataclass(frozen=True)
class Page:
    """The rows of one page, and the cursor to the next when more follow."""

    rows: Sequence[Any]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


class Pager:
    """Reads pages of a query in a fixed descending order; its cursors are signed with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    async def page(
        self,
        conn: AsyncConnection,
        query: Select[Any],
        sort: Sequence[ColumnElement[Any]],
        kinds: Sequence[type],
        *,
        limit: int | None,
        cursor: str | None,
    ) -> Page:
        """One page of `query`, sorted by `sort` (values of `kinds`), starting after `cursor`."""
        size = parse_limit(limit, default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
        after = decode_cursor(cursor, kinds, self._key) if cursor is not None else None
        found = await repository.fetch_page(conn, query, sort, after=after, limit=size)
        if len(found.rows) <= size:
            return Page(found.rows, None)
        return Page(found.rows[:size], encode_cursor(found.sort_values[size - 1], self._key))
