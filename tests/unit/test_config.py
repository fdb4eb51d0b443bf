"""Reading HYDRA_* settings: defaults when unset, clear errors for values that mean nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.config import ConfigError, env_choice, env_flag, env_int
from services.common.delivery import DeliverySettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("on", True), (" Yes ", True), ("0", False), ("OFF", False), ("false", False)],
)
def test_flags_read_the_usual_spellings(raw: str, expected: bool) -> None:
    assert env_flag({"HYDRA_X": raw}, "HYDRA_X", not expected) is expected


def test_an_unset_or_empty_flag_takes_its_default() -> None:
    assert env_flag({}, "HYDRA_X", True) is True
    assert env_flag({"HYDRA_X": ""}, "HYDRA_X", False) is False


def test_a_flag_that_is_neither_yes_nor_no_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="HYDRA_X must be 1/0, true/false, yes/no or on/off, got 'maybe'"):
        env_flag({"HYDRA_X": "maybe"}, "HYDRA_X", True)


def test_integers_below_their_minimum_are_refused() -> None:
    with pytest.raises(ConfigError, match="HYDRA_N must be at least 1, got 0"):
        env_int({"HYDRA_N": "0"}, "HYDRA_N", 5, minimum=1)
    with pytest.raises(ConfigError, match="must be an integer"):
        env_int({"HYDRA_N": "five"}, "HYDRA_N", 5)


def test_a_choice_is_one_of_its_values_or_refused_by_name() -> None:
    assert env_choice({}, "HYDRA_C", ("a", "b"), "a") == "a"
    assert env_choice({"HYDRA_C": "b"}, "HYDRA_C", ("a", "b"), "a") == "b"
    with pytest.raises(ConfigError, match="HYDRA_C must be one of a, b, got 'c'"):
        env_choice({"HYDRA_C": "c"}, "HYDRA_C", ("a", "b"), "a")


def test_event_consumers_run_in_the_server_unless_told_to_run_apart_which_needs_redis() -> None:
    assert not DeliverySettings.from_env({}).separate_consumers
    redis = {"HYDRA_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert not DeliverySettings.from_env(redis).separate_consumers
    assert DeliverySettings.from_env({**redis, "HYDRA_EVENTS_CONSUMERS": "separate"}).separate_consumers
    with pytest.raises(ConfigError, match="HYDRA_EVENTS_CONSUMERS=separate needs HYDRA_REDIS_URL"):
        DeliverySettings.from_env({"HYDRA_EVENTS_CONSUMERS": "separate"})


def test_event_records_are_kept_a_week_unless_told_otherwise_and_at_least_an_hour() -> None:
    assert DeliverySettings.from_env({}).retention == dt.timedelta(days=7)
    day_and_a_half = DeliverySettings.from_env({"HYDRA_EVENTS_RETENTION_HOURS": "36"})
    assert day_and_a_half.retention == dt.timedelta(hours=36)
    with pytest.raises(ConfigError, match="HYDRA_EVENTS_RETENTION_HOURS must be at least 1, got 0"):
        DeliverySettings.from_env({"HYDRA_EVENTS_RETENTION_HOURS": "0"})


def test_failed_events_are_retried_eight_times_from_a_second_apart_up_to_a_minute() -> None:
    policy = DeliverySettings.from_env({}).retry
    assert policy.max_attempts == 8
    waits = [policy.delay(n).total_seconds() for n in range(1, 9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60] and sum(waits[:7]) == 123  # dead about two minutes in
    assert policy.delay(10_000) == dt.timedelta(seconds=60)
    tuned = DeliverySettings.from_env(
        {"HYDRA_EVENTS_MAX_ATTEMPTS": "3", "HYDRA_EVENTS_RETRY_MS": "200", "HYDRA_EVENTS_RETRY_MAX_MS": "500"}
    ).retry
    assert (tuned.max_attempts, tuned.delay(1), tuned.delay(3)) == (
        3,
        dt.timedelta(milliseconds=200),
        dt.timedelta(milliseconds=500),
    )
    with pytest.raises(ConfigError, match="HYDRA_EVENTS_MAX_ATTEMPTS must be at least 1, got 0"):
        DeliverySettings.from_env({"HYDRA_EVENTS_MAX_ATTEMPTS": "0"})
    with pytest.raises(
        ConfigError,
        match=r"HYDRA_EVENTS_RETRY_MAX_MS \(1000\) must be at least HYDRA_EVENTS_RETRY_MS \(5000\)",
    ):
        DeliverySettings.from_env({"HYDRA_EVENTS_RETRY_MS": "5000", "HYDRA_EVENTS_RETRY_MAX_MS": "1000"})
