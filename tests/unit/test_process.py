"""Processes as their composition roots declare them: the roles `python -m` offers, the settings every
process reads alike, and the app assembled on a real (SQLite) database."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.gatekeeper.server import PROCESS as GATEKEEPER
from hydractl import processes
from hydractl.events import SERVICES as DEAD_LETTER_SERVICES
from hydractl.stack import DELIVERING, PROCESSES
from services.common.process import Process, every
from services.crm.server import PROCESS as CRM
from testbed.stack import stack_env


def test_a_process_without_events_offers_no_delivery_role(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "edge.gatekeeper", "deliver"],
        env=stack_env(tmp_path),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert finished.returncode == 1
    assert finished.stderr.decode().strip() == "usage: python -m edge.gatekeeper"


@pytest.mark.parametrize("process", processes.ALL, ids=lambda p: p.name)
def test_an_unknown_role_is_refused_with_the_roles_on_offer(process: Process[Any]) -> None:
    roles = " [deliver]" if process.events is not None else ""
    with pytest.raises(SystemExit, match=f"^{re.escape(f'usage: python -m {process.module}{roles}')}$"):
        process.main(["serve", "--now"])


def test_the_stack_runs_every_declared_process_and_a_delivery_role_for_those_with_events() -> None:
    assert PROCESSES == {
        "gatekeeper": "edge.gatekeeper",
        "crm": "services.crm",
        "tickets": "services.tickets",
        "instances": "services.instances",
        "public": "services.public",
        "workflows": "services.workflows",
    }
    assert DELIVERING == ("crm", "tickets", "instances", "public")
    assert list(DEAD_LETTER_SERVICES) == list(DELIVERING)


def test_every_process_reads_where_it_listens_its_database_and_log_level_alike(tmp_path: Path) -> None:
    env = {
        "HYDRA_DATA_DIR": str(tmp_path),
        "HYDRA_HOST": "10.0.0.5",
        "HYDRA_LOG_LEVEL": "DEBUG",
        "HYDRA_CRM_ADDR": "crm:6000",
        "HYDRA_GATEKEEPER_ADDR": "gatekeeper:6001",
        "HYDRA_INSTANCES_ADDR": "instances:6002",
        "HYDRA_PUBLIC_DATABASE_URL": "postgresql://h/db",
    }
    settings = {process.name: process.settings.from_env(env) for process in processes.ALL}
    assert {name: s.log_level for name, s in settings.items()} == dict.fromkeys(settings, "DEBUG")
    assert settings["tickets"].address == "10.0.0.5:50052"
    assert settings["gatekeeper"].check_address == "10.0.0.5:50049"
    assert settings["crm"].database_url == f"sqlite:///{tmp_path / 'crm.sqlite3'}"
    assert settings["public"].database_url == "postgresql://h/db"
    assert settings["tickets"].crm_address == settings["public"].crm_address == "crm:6000"
    assert settings["public"].gatekeeper_address == "gatekeeper:6001"
    assert settings["instances"].gatekeeper_address == "gatekeeper:6001"
    assert settings["gatekeeper"].instances_address == "instances:6002"
    assert settings["public"].instances_address == "instances:6002"


def test_services_read_their_pool_size_and_the_gatekeeper_keeps_its_own(tmp_path: Path) -> None:
    env = {"HYDRA_DATA_DIR": str(tmp_path)}
    defaults = {process.name: process.settings.from_env(env).pool_size for process in processes.ALL}
    assert defaults == {
        "gatekeeper": 10,
        "crm": 20,
        "tickets": 20,
        "instances": 10,
        "public": 10,
        "workflows": 10,
    }
    env["HYDRA_DB_POOL_SIZE"] = "7"
    sized = {process.name: process.settings.from_env(env).pool_size for process in processes.ALL}
    assert sized == {"gatekeeper": 10, "crm": 7, "tickets": 7, "instances": 7, "public": 7, "workflows": 7}


def test_a_service_app_runs_its_outbox_and_consumers_and_closes(tmp_path: Path) -> None:
    settings = CRM.settings.from_env({"HYDRA_DATA_DIR": str(tmp_path)})
    CRM.migrate(settings)

    async def main() -> None:
        app = CRM.app(settings, logging.getLogger("test"))
        assert (app.name, app.address) == ("crm", settings.address)
        assert [s.full_name for s in app.services] == [s.full_name for s in CRM.services]
        # The group commits, the idempotency key purge, the metrics refresh, the outbox dispatcher and
        # the records purge.
        assert len(app.background) == 5 and app.idempotency is not None
        assert len(app.consumers) == 3  # the bus, the CSAT email consumer and the event hub forwarder
        assert not app.separate_consumers and app.start is None
        assert [d.name for d in app.dependencies] == ["database"]
        await asyncio.gather(*(d.check() for d in app.dependencies))
        await app.close()

    asyncio.run(main())


def test_the_gatekeeper_app_has_its_listeners_its_jobs_and_no_consumers(tmp_path: Path) -> None:
    settings = GATEKEEPER.settings.from_env({"HYDRA_DATA_DIR": str(tmp_path)})
    GATEKEEPER.migrate(settings)

    async def main() -> None:
        app = GATEKEEPER.app(settings, logging.getLogger("test"))
        # The purges of MCP records and Idempotency-Keys, and the metrics refresh.
        assert [job.__qualname__ for job in app.background] == ["every.<locals>.job"] * 4
        assert (list(app.consumers), app.separate_consumers) == ([], False)
        assert app.start is not None
        assert [d.name for d in app.dependencies] == ["database"]
        await asyncio.gather(*(d.check() for d in app.dependencies))
        await app.close()

    asyncio.run(main())


def test_a_periodic_job_logs_a_failure_and_runs_again(caplog: pytest.LogCaptureFixture) -> None:
    rounds: list[int] = []

    async def main() -> None:
        third = asyncio.Event()

        async def task() -> None:
            rounds.append(len(rounds))
            if len(rounds) == 1:
                raise RuntimeError("row 42 of tenant acme")
            if len(rounds) == 3:
                third.set()

        running = asyncio.create_task(every(0.01, task, logging.getLogger("test"), "tidying")())
        await asyncio.wait_for(third.wait(), 5)
        running.cancel()

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    (failure,) = [r for r in caplog.records if r.getMessage() == "tidying failed"]
    assert failure.error == "RuntimeError" and "acme" not in caplog.text  # type: ignore[attr-defined]
