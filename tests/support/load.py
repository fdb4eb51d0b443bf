"""A steady stream of writes through the edge, for tests that break things under load."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

LEADS = "/api/v1/leads"


@dataclass
class Writes:
    """A steady stream of lead creations through the edge, in a thread: what each answered, and when."""

    url: str
    headers: dict[str, str]
    per_second: float = 50.0
    answers: list[tuple[float, int, str]] = field(default_factory=list)  # (time, status, lead id)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as http:
            due = time.monotonic()
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    response = http.post(LEADS, json={"name": f"steady {n}"})
                    status = response.status_code
                    lead_id = response.json()["lead"]["id"] if status == 201 else ""
                except httpx.TransportError:
                    status, lead_id = 0, ""  # refused: nothing listens
                self.answers.append((time.monotonic(), status, lead_id))
                due += 1 / self.per_second
                time.sleep(max(due - time.monotonic(), 0))

    @contextlib.contextmanager
    def running(self) -> Iterator[Writes]:
        thread = threading.Thread(target=self.run)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(30)

    def created(self) -> list[str]:
        """The ids of the leads whose creation was answered 201."""
        return [lead_id for _, status, lead_id in self.answers if status == 201]

    def lost(self) -> list[str]:
        """Answered creations that are not there now (checked one by one through the API)."""
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=10) as http:
            return [i for i in self.created() if http.get(f"{LEADS}/{i}").status_code != 200]
