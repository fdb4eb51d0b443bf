"""Log lines never carry exception messages: they can hold bound SQL parameters or a request's text."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from sqlalchemy import Column, MetaData, String, Table, create_engine, insert
from sqlalchemy.exc import IntegrityError

from services.common.logging import JsonFormatter, bind_request, log_loop_exception

MARKER = "secret-person@example.com"


def json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    """A logger writing JSON lines into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return logger, stream


def logged(record_error: BaseException) -> dict:
    logger, stream = json_logger("test.safe")
    try:
        raise record_error
    except BaseException as error:
        logger.error("unhandled error", exc_info=error, extra={"request_id": "r-1"})
    return json.loads(stream.getvalue())


def raise_chained() -> None:
    try:
        raise KeyError(MARKER)
    except KeyError as cause:
        raise ValueError(f"bad value {MARKER}") from cause


def test_the_traceback_names_classes_and_frames_but_not_messages() -> None:
    try:
        raise_chained()
    except ValueError as error:
        entry = logged(error)
    assert MARKER not in json.dumps(entry)
    assert entry["request_id"] == "r-1"
    assert "builtins.ValueError" in entry["exc"] and "builtins.KeyError" in entry["exc"]
    assert "raise_chained" in entry["exc"] and "test_logging.py" in entry["exc"]


def test_sql_errors_carry_no_bound_values(tmp_path) -> None:  # type: ignore[no-untyped-def]
    metadata = MetaData()
    people = Table("people", metadata, Column("email", String, primary_key=True))
    engine = create_engine(f"sqlite:///{tmp_path / 'db'}", hide_parameters=True)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(people).values(email=MARKER))
    try:
        with engine.begin() as conn:
            conn.execute(insert(people).values(email=MARKER))
    except IntegrityError as error:
        assert MARKER not in str(error)
        assert MARKER not in json.dumps(logged(error))
    engine.dispose()


def test_asyncio_background_failures_are_logged_without_their_message() -> None:
    logger, stream = json_logger("test.loop")

    async def fail() -> None:
        raise RuntimeError(MARKER)

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(log_loop_exception(logger))
        task = asyncio.create_task(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_exception_handler(
            {"message": "failed", "exception": task.exception()}
        )

    asyncio.run(run())
    assert MARKER not in stream.getvalue()
    assert "RuntimeError" in stream.getvalue()


def test_every_line_logged_for_a_request_names_it_until_it_is_done() -> None:
    logger, stream = json_logger("test.named")

    async def request(request_id: str) -> None:
        unbind = bind_request(request_id)
        try:
            await asyncio.sleep(0)  # another request's lines interleave here
            logger.warning("deep inside")
            logger.warning("access", extra={"request_id": "given"})  # a line's own id wins
        finally:
            unbind()

    async def both() -> None:
        await asyncio.gather(request("r-1"), request("r-2"))

    asyncio.run(both())
    logger.warning("after")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line.get("request_id") for line in lines if line["msg"] == "deep inside") == ["r-1", "r-2"]
    assert {line["request_id"] for line in lines if line["msg"] == "access"} == {"given"}
    assert "request_id" not in lines[-1] and "trace_id" not in lines[-1]  # no tracing here: no trace id
