"""Waiting for something the stack does in the background."""

from __future__ import annotations

import time
from typing import Any


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """Polls `predicate` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
