"""When `hydractl up` restarts a crashed process, and when it gives up."""

from __future__ import annotations

from hydractl.stack import RestartPolicy


def test_fast_crashes_back_off_then_give_up() -> None:
    policy = RestartPolicy(first_delay=0.2, max_delay=1.0, stable_after=30, limit=4)
    assert [policy.delay_after_crash(1.0) for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, None]


def test_a_stable_run_forgives_earlier_crashes() -> None:
    policy = RestartPolicy(first_delay=0.2, stable_after=30, limit=2)
    assert policy.delay_after_crash(1.0) == 0.2
    assert policy.delay_after_crash(1.0) == 0.4
    assert policy.delay_after_crash(3600.0) == 0.2  # ran for an hour: this crash is not part of a loop
    assert policy.delay_after_crash(1.0) == 0.4
    assert policy.delay_after_crash(1.0) is None
