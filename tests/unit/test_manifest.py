"""Workflow manifests: the published schema's checks, and versions bumped by what changed."""

from __future__ import annotations

import json

import pytest

from services.common.config import ConfigError
from services.common.errors import ValidationError
from services.workflows import manifest
from services.workflows.billing import StripeSettings


def steps(*ids: str) -> dict:
    return {
        "manifest_version": "1.0",
        "name": "W",
        "steps": [{"id": i, "name": i, "instructions": f"do {i}"} for i in ids],
    }


def test_versions_bump_major_for_removals_minor_for_additions_patch_for_the_rest() -> None:
    base = steps("a", "b")
    assert manifest.next_version("1.2.3", base, json.loads(json.dumps(base))) == "1.2.3"
    assert manifest.next_version("1.2.3", base, steps("a", "b", "c")) == "1.3.0"
    assert manifest.next_version("1.2.3", base, steps("a")) == "2.0.0"
    assert manifest.next_version("1.2.3", base, steps("a", "c")) == "2.0.0"  # b went, c came
    reworded = steps("a", "b")
    reworded["steps"][0]["instructions"] = "do it better"
    assert manifest.next_version("1.2.3", base, reworded) == "1.2.4"
    with_input = {**base, "inputs": [{"name": "repo"}]}
    assert manifest.next_version("1.2.3", base, with_input) == "1.3.0"


def test_dependencies_must_name_earlier_steps() -> None:
    later = steps("a", "b")
    later["steps"][0]["depends_on"] = ["b"]
    with pytest.raises(ValidationError) as refused:
        manifest.check(later)
    assert [e.loc for e in refused.value.field_errors] == [("body", "manifest", "steps", 0, "depends_on")]
    fine = steps("a", "b")
    fine["steps"][1]["depends_on"] = ["a"]
    manifest.check(fine)


def test_the_published_schema_is_the_one_checked() -> None:
    schema = json.loads(manifest.SCHEMA_PATH.read_text())
    assert schema["$id"] == manifest.SCHEMA_URL
    with pytest.raises(ValidationError):
        manifest.check({**steps("a"), "unexpected": True})


def test_stripe_settings_are_all_or_nothing() -> None:
    assert StripeSettings.from_env({}) is None
    with pytest.raises(ConfigError):
        StripeSettings.from_env({"HYDRA_STRIPE_SECRET_KEY": "sk"})
    with pytest.raises(ConfigError):
        StripeSettings.from_env(
            {
                "HYDRA_STRIPE_SECRET_KEY": "sk",
                "HYDRA_STRIPE_WEBHOOK_SECRET": "w",
                "HYDRA_STRIPE_PRICES": "gold=price_1",
            }
        )
    settings = StripeSettings.from_env(
        {
            "HYDRA_STRIPE_SECRET_KEY": "sk",
            "HYDRA_STRIPE_WEBHOOK_SECRET": "w",
            "HYDRA_STRIPE_PRICES": "team_annual=price_t",
        }
    )
    assert (
        settings is not None and settings.plan_of("price_t") == "team" and settings.plan_of("price_x") is None
    )
