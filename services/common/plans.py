"""The marketplace's plans, declared once: the gatekeeper limits requests by them, workflows the rest."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """What a user on one plan may do: requests per minute and per hour, and how much they may own."""

    name: str
    requests_per_minute: int
    requests_per_hour: int
    workflows: int | None  # None: no limit
    deployments: int | None
    connections_per_month: int | None


PLANS = {
    plan.name: plan
    for plan in (
        Plan("free", 30, 500, workflows=10, deployments=2, connections_per_month=500),
        Plan("pro", 100, 5_000, workflows=100, deployments=10, connections_per_month=10_000),
        Plan("team", 300, 20_000, workflows=1_000, deployments=50, connections_per_month=100_000),
        Plan("enterprise", 1_000, 100_000, workflows=None, deployments=None, connections_per_month=None),
    )
}
DEFAULT_PLAN = "free"


def plan_named(name: str) -> Plan:
    """The plan called `name`; the default plan for a name no plan has (never more than it paid for)."""
    return PLANS.get(name) or PLANS[DEFAULT_PLAN]
