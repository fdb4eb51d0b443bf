"""workflows' queries: users, workflows, versions, library entries and search. Never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.workflows.models import library_entries, users, workflow_versions, workflows

# The mean rating, as a float on both backends (a cursor holds it exactly).
RATING_VALUE = func.coalesce(
    cast(workflows.c.rating_total, Float) / func.nullif(workflows.c.rating_count, 0), 0.0
)
RATING = RATING_VALUE.label("rating")


@dataclass(frozen=True)
class Slice:
    """Rows of one page, in order, each with its sort values; one more than asked if more follow."""

    rows: Sequence[Any]
    sort_values: Sequence[Sequence[Any]]


async def fetch_page(
    conn: AsyncConnection,
    query: Select[Any],
    sort: Sequence[ColumnElement[Any]],
    *,
    after: Sequence[Any] | None,
    limit: int,
) -> Slice:
    """`query` sorted by `sort` (each descending), past the row whose sort values are `after`."""
    if after is not None:
        query = query.where(tuple_(*sort) < tuple_(*after))
    query = query.add_columns(*(column.label(f"sort_{i}") for i, column in enumerate(sort)))
    result = await conn.execute(query.order_by(*(column.desc() for column in sort)).limit(limit + 1))
    rows = result.all()
    return Slice(rows, [[getattr(row, f"sort_{i}") for i in range(len(sort))] for row in rows])


# Users


async def user(conn: AsyncConnection, user_id: uuid.UUID) -> Any:
    return (await conn.execute(select(users).where(users.c.id == user_id))).first()


async def user_by_subject(conn: AsyncConnection, subject: str) -> Any:
    return (await conn.execute(select(users).where(users.c.subject == subject))).first()


async def user_by_email(conn: AsyncConnection, email: str) -> Any:
    """The first user seen with this email (emails are not unique across issuers)."""
    query = select(users).where(users.c.email == email).order_by(users.c.created_at, users.c.id).limit(1)
    return (await conn.execute(query)).first()


async def insert_user(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(users).values(**values))


async def update_user(conn: AsyncConnection, user_id: uuid.UUID, values: dict[str, Any]) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def delete_user(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    await conn.execute(delete(users).where(users.c.id == user_id))


# Workflows


def workflow_columns() -> Select[Any]:
    """A workflow's columns with its mean rating."""
    return select(workflows, RATING)


def listed_columns() -> Select[Any]:
    """What a list shows of each workflow: all but its manifest and search text (never printed in lists,
    and the manifest the largest column)."""
    shown = [c for c in workflows.c if c.name not in ("manifest", "search_text")]
    return select(*shown, RATING)


async def workflow(conn: AsyncConnection, workflow_id: str, *, for_update: bool = False) -> Any:
    query = workflow_columns().where(workflows.c.id == workflow_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=workflows)
    return (await conn.execute(query)).first()


async def count(conn: AsyncConnection, query: Select[Any]) -> int:
    return int((await conn.execute(select(func.count()).select_from(query.subquery()))).scalar_one())


async def insert_workflow(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(workflows).values(**values))
    await _index(conn, values["id"], values["search_text"])


async def update_workflow(conn: AsyncConnection, workflow_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(workflows).where(workflows.c.id == workflow_id).values(**values))
    if "search_text" in values:
        await _unindex(conn, [workflow_id])
        await _index(conn, workflow_id, values["search_text"])


async def adjust(conn: AsyncConnection, workflow_id: str | None, **deltas: int) -> None:
    """Adds `deltas` to a workflow's counters (forks, subscribers, rating_total, rating_count)."""
    if workflow_id is None or not any(deltas.values()):
        return
    changes = {name: workflows.c[name] + delta for name, delta in deltas.items()}
    await conn.execute(update(workflows).where(workflows.c.id == workflow_id).values(**changes))


async def uncount_entry(conn: AsyncConnection, entry: Any) -> None:
    """A library entry leaving: its workflow loses the subscription and the rating it counted."""
    await adjust(
        conn,
        entry.workflow_id,
        subscribers=-1 if entry.source_type == "subscribed" else 0,
        rating_total=-(entry.rating or 0),
        rating_count=-1 if entry.rating else 0,
    )


async def delete_workflows(conn: AsyncConnection, workflow_ids: Sequence[str]) -> None:
    """Deletes workflows with their versions and every library entry of them (cascades)."""
    if workflow_ids:
        await _unindex(conn, workflow_ids)
        await conn.execute(delete(workflows).where(workflows.c.id.in_(workflow_ids)))


async def _index(conn: AsyncConnection, workflow_id: str, body: str) -> None:
    # PostgreSQL keeps its tsvector itself (a generated column); SQLite's FTS5 table is kept here.
    if conn.dialect.name != "postgresql":
        await conn.execute(
            text("INSERT INTO workflow_search (workflow_id, body) VALUES (:id, :body)"),
            {"id": workflow_id, "body": body},
        )


async def _unindex(conn: AsyncConnection, workflow_ids: Sequence[str]) -> None:
    if conn.dialect.name != "postgresql":
        for workflow_id in workflow_ids:
            await conn.execute(
                text("DELETE FROM workflow_search WHERE workflow_id = :id"), {"id": workflow_id}
            )


def search_match(dialect: str, words: Sequence[str]) -> tuple[Any, ColumnElement[Any]]:
    """A FROM target (or None), a WHERE clause and the relevance of public workflows matching every word."""
    if dialect == "postgresql":
        query = func.websearch_to_tsquery(literal_column("'english'"), " ".join(words))
        vector: ColumnElement[Any] = literal_column("workflows.search_vector")
        return vector.op("@@")(query), func.ts_rank(vector, query)
    # FTS5 query syntax from plain words: each a quoted string, so no word is ever an operator.
    phrase = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    matching: Select[Any] = (
        select(literal_column("workflow_id"))
        .select_from(text("workflow_search"))
        .where(literal_column("workflow_search").op("MATCH")(phrase))
    )
    rank = (
        select(-func.bm25(literal_column("workflow_search")))
        .select_from(text("workflow_search"))
        .where(literal_column("workflow_search").op("MATCH")(phrase))
        .where(literal_column("workflow_search.workflow_id") == workflows.c.id)
        .scalar_subquery()
    )
    return workflows.c.id.in_(matching), rank


# Versions


async def add_version(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(workflow_versions).values(**values))


async def versions(conn: AsyncConnection, workflow_id: str) -> Sequence[Any]:
    query = (
        select(workflow_versions)
        .where(workflow_versions.c.workflow_id == workflow_id)
        .order_by(workflow_versions.c.created_at.desc(), workflow_versions.c.version.desc())
    )
    return (await conn.execute(query)).all()


# Library entries


def entry_columns() -> Select[Any]:
    return select(
        library_entries,
        workflows.c.name.label("workflow_name"),
        func.coalesce(library_entries.c.pinned_version, workflows.c.current_version).label(
            "workflow_version"
        ),
    ).join(workflows, workflows.c.id == library_entries.c.workflow_id)


async def entry(conn: AsyncConnection, user_id: uuid.UUID, workflow_id: str) -> Any:
    query = entry_columns().where(
        library_entries.c.user_id == user_id, library_entries.c.workflow_id == workflow_id
    )
    return (await conn.execute(query)).first()


async def insert_entry(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(library_entries).values(**values))


async def update_entry(conn: AsyncConnection, entry_id: str, values: dict[str, Any]) -> None:
    await conn.execute(update(library_entries).where(library_entries.c.id == entry_id).values(**values))


async def delete_entry(conn: AsyncConnection, entry_id: str) -> None:
    await conn.execute(delete(library_entries).where(library_entries.c.id == entry_id))
