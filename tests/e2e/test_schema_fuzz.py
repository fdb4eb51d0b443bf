"""Property-based requests from the published OpenAPI document (schemathesis), on both surfaces:
no answer is a server error, and every answer's status, content type and body match the document."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from hydractl.cli import DEMO_SCOPES, add_membership, mint, parser
from tests.e2e.conftest import CORE_SCOPES, Edge, core_key, create_instance, create_site

# Per operation and generation mode (valid and invalid data): bounded, and the same on every run.
EXAMPLES = 6
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]


@dataclass
class Findings:
    """What a fuzzing run sent and what failed, by operation."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    failures: dict[str, list[str]] = field(default_factory=dict)

    def fail(self, label: str, problem: str, reproduce: str) -> None:
        self.failures.setdefault(label, []).append(f"{problem}\n    {reproduce[:600]}")


def describe(error: BaseException) -> str:
    """The failure's own lines, without schemathesis's reproduction hints."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " | ".join(line for line in lines if not line.startswith(("curl", "Reproduce")))[:400]


def fuzz(edge: Edge, operation: Any, strategy: Any, headers: dict[str, str], findings: Findings) -> None:
    """Sends the strategy's requests (a fixed number, the same on every run) and collects failures."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=edge.stack.edge_url, headers=headers, timeout=30)
        findings.statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseException as error:  # a FailureGroup: schemathesis's findings, collected
            if isinstance(error, KeyboardInterrupt):
                raise
            findings.fail(operation.label, describe(error), case.as_curl_command(headers))

    run()


def test_generated_requests_get_documented_answers_and_no_server_error(edge: Edge) -> None:
    support = edge.key(scopes=DEMO_SCOPES, rate_limit=1_000_000)
    core = core_key(edge, support.tenant, scopes=CORE_SCOPES, rate_limit=1_000_000)
    instance = create_instance(edge, core, knowledge=[{"title": "Refunds", "content": "Within 30 days."}])
    site = create_site(edge, core)
    widget = mint(edge.env, tenant=core.tenant, kind="widget", scopes=[], instance=instance["id"])["key"]
    known_ids = {"instance_id": instance["id"], "site_id": site["id"]}
    schema = schemathesis.openapi.from_url(f"{edge.stack.edge_url}/openapi.json")
    findings = Findings()

    user = edge.user()
    args = parser().parse_args(["users", "set-plan", user.email, "enterprise"])  # room for every example
    args.handler(args, edge.env)
    add_membership(edge.env, user.email, core.tenant, "admin")
    for operation in (result.ok() for result in schema.get_all_operations()):
        security = {name for item in operation.definition.raw.get("security", []) for name in item}
        if operation.path.startswith("/api/"):
            headers = support.bearer
        elif security == {"IdToken"}:  # the marketplace, and a HydraCore user's own routes
            headers = user.bearer
        elif "/widget/" in operation.path:
            headers = {"X-Widget-Token": widget}
        else:
            # Both ways a HydraCore key travels: a generated Authorization header must not replace it.
            headers = {**core.api_key, "Authorization": f"Bearer {core.secret}"}
        ids = {name: value for name, value in known_ids.items() if f"{{{name}}}" in operation.path}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(edge, operation, operation.as_strategy(mode, path_parameters=ids or None), headers, findings)

    sent = sum(findings.statuses.values())
    print(f"\n{sent} generated requests; statuses {sorted(findings.statuses.items())}")
    report = "\n".join(
        f"{label}: {problems[0]} ({len(problems)} in all)" for label, problems in findings.failures.items()
    )
    assert not findings.failures, f"{sum(map(len, findings.failures.values()))} failing answers:\n{report}"
