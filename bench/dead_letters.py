"""How long a poisoned event takes to reach the dead letters, on the in-process and the Redis Streams bus.

Prints figures; never passes or fails on them. `python -m bench.dead_letters [--max-attempts N]
[--retry-ms MS] [--retry-max-ms MS]` (defaults: the service defaults). crm and tickets run with a local
SMTP server that refuses one recipient: with 550 (permanent: a dead letter at once) and with 452
(transient: retried with backoff while other tickets' mail keeps flowing, then a dead letter). Each
figure is from the CreateTicket answer to the dead letter being listed.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from hydractl.events import list_dead_letters
from services.common.channels import internal_metadata
from testbed.customers import create_customers, open_tickets
from testbed.servers import create_database, postgres_server, redis_server
from testbed.smtp import SmtpSink, smtp_server
from testbed.stack import grpc_processes, stack_env


@contextlib.contextmanager
def bus_env(bus: str, data_dir: Path, smtp: SmtpSink, retries: dict[str, str]) -> Iterator[dict[str, str]]:
    """A stack environment on the in-process bus (SQLite) or on Redis Streams (PostgreSQL)."""
    if bus == "in-process":
        yield stack_env(data_dir, HYDRA_SMTP_URL=smtp.url, **retries)
        return
    with postgres_server() as admin_url, redis_server() as redis_url:
        yield stack_env(
            data_dir,
            database_url=create_database(admin_url, f"dl_{uuid.uuid4().hex[:8]}"),
            redis_url=redis_url,
            HYDRA_SMTP_URL=smtp.url,
            HYDRA_EVENTS_CONSUMERS="separate",
            **retries,
        )


def time_to_dead_letter(env: dict[str, str], smtp: SmtpSink, reply: str, timeout: float) -> float:
    """Seconds from a poisoned ticket's creation to its dead letter; other tickets keep coming meanwhile."""
    tenant = str(uuid.uuid4())
    md = internal_metadata(tenant, ["crm:write", "crm:read", "tickets:write"])
    poisoned = f"poisoned-{uuid.uuid4().hex[:8]}@example.com"
    smtp.refuse[poisoned] = reply
    customers = create_customers(env, md, [poisoned, *(f"o{n}-{poisoned}" for n in range(700))])
    open_tickets(env, md, customers[:1])
    started = next_other = time.monotonic()
    others = iter(customers[1:])
    while time.monotonic() - started < timeout:
        if any(d["status"] == "dead" for d in list_dead_letters(env, services=["tickets"], tenant=tenant)):
            return time.monotonic() - started
        if time.monotonic() >= next_other:
            open_tickets(env, md, [next(others)])  # another ticket's mail, about every second
            next_other += 1.0
        time.sleep(0.02)
    raise TimeoutError(f"no dead letter after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-attempts", help="HYDRA_EVENTS_MAX_ATTEMPTS (default: the service's, 8)")
    parser.add_argument("--retry-ms", help="HYDRA_EVENTS_RETRY_MS (default 1000)")
    parser.add_argument("--retry-max-ms", help="HYDRA_EVENTS_RETRY_MAX_MS (default 60000)")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    retries = {
        name: value
        for name, value in (
            ("HYDRA_EVENTS_MAX_ATTEMPTS", args.max_attempts),
            ("HYDRA_EVENTS_RETRY_MS", args.retry_ms),
            ("HYDRA_EVENTS_RETRY_MAX_MS", args.retry_max_ms),
        )
        if value
    }
    print(f"retry settings: {retries or 'the defaults'}")
    for bus in ("in-process", "redis"):
        with (
            tempfile.TemporaryDirectory() as data_dir,
            smtp_server() as smtp,
            bus_env(bus, Path(data_dir), smtp, retries) as env,
            grpc_processes(env, "crm", "tickets") as stack,
        ):
            if bus == "redis":
                stack.start_process("tickets-delivery")
            for case, reply in (
                ("permanent (550)", "550 5.1.1 No such user"),
                ("transient (452)", "452 4.2.2 Full"),
            ):
                seconds = time_to_dead_letter(env, smtp, reply, args.timeout)
                print(f"{bus:<10} {case:<16} dead letter after {seconds:7.2f} s")


if __name__ == "__main__":
    main()
