"""The marketplace: every user's public workflows, browsed, searched and featured."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import ColumnElement

from services.common.db import Database
from services.common.errors import FieldError, ValidationError
from services.workflows import repository
from services.workflows.models import workflows
from services.workflows.paging import Page, Pager

SORTS = ("popular", "recent", "rating")
MAX_QUERY_CHARS = 200
_MOST_WORDS = 16
_WORD = re.compile(r"\w+")


class MarketplaceService:
    """Public workflows for every signed-in user."""

    def __init__(self, db: Database, pager: Pager) -> None:
        self._db = db
        self._pager = pager

    async def browse(self, *, category: str | None, sort: str, limit: int | None, cursor: str | None) -> Page:
        query = repository.listed_columns().where(workflows.c.visibility == "public")
        if category is not None:
            query = query.where(workflows.c.category == category)
        order: list[ColumnElement[Any]]
        kinds: list[type]
        if sort == "recent":
            order, kinds = [workflows.c.created_at, workflows.c.id], [dt.datetime, str]
        elif sort == "rating":
            order = [repository.RATING_VALUE, workflows.c.rating_count, workflows.c.id]
            kinds = [float, int, str]
        else:
            order, kinds = [workflows.c.subscribers, workflows.c.forks, workflows.c.id], [int, int, str]
        async with self._db.read() as conn:
            return await self._pager.page(conn, query, order, kinds, limit=limit, cursor=cursor)

    async def search(self, q: str | None, *, limit: int | None, cursor: str | None) -> Page:
        """Public workflows with every word of `q`, the most relevant first."""
        words = _WORD.findall(q or "")[:_MOST_WORDS]
        if not q or len(q) > MAX_QUERY_CHARS or not words:
            raise ValidationError(
                FieldError(
                    ("query", "q"),
                    f"Give 1 to {MAX_QUERY_CHARS} characters with at least one word to search for",
                    "value_error",
                )
            )
        async with self._db.read() as conn:
            matches, relevance = repository.search_match(conn.dialect.name, words)
            query = repository.listed_columns().where(workflows.c.visibility == "public", matches)
            return await self._pager.page(
                conn, query, [relevance, workflows.c.id], [float, str], limit=limit, cursor=cursor
            )

    async def featured(self, *, limit: int | None, cursor: str | None) -> Page:
        query = repository.listed_columns().where(
            workflows.c.visibility == "public", workflows.c.featured_at.is_not(None)
        )
        async with self._db.read() as conn:
            return await self._pager.page(
                conn,
                query,
                [workflows.c.featured_at, workflows.c.id],
                [dt.datetime, str],
                limit=limit,
                cursor=cursor,
            )
