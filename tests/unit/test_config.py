"""Reading HYDRA_* settings: defaults when unset, clear errors for values that mean nothing."""

from __future__ import annotations

import pytest

from services.common.config import ConfigError, env_flag, env_int


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
