"""hydractl: start the stack, migrate, and administer tenants, API keys, sites and dead letters."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from hydra.gatekeeper.v1 import admin_pb2, admin_pb2_grpc
from hydra.public.v1 import sites_pb2, sites_pb2_grpc
from hydra.workflows.v1 import users_pb2, users_pb2_grpc

from edge.gatekeeper.issuer import OidcSettings
from hydractl import k8s, replicas
from hydractl.events import (
    SERVICES,
    DeadLettersUnavailable,
    drop_dead_letters,
    list_dead_letters,
    retry_dead_letters,
)
from hydractl.stack import Stack, StackError, migrate_all
from services.common import config, tracing
from services.common.channels import internal_metadata, token_metadata
from services.common.identity import admin_metadata

KINDS = {
    "hmcp": admin_pb2.KEY_KIND_HMCP,
    "hc_live": admin_pb2.KEY_KIND_HC_LIVE,
    "widget": admin_pb2.KEY_KIND_WIDGET,
}
KIND_NAMES = {v: k for k, v in KINDS.items()}
DEMO_SCOPES = [
    "crm:read",
    "crm:write",
    "conversations:read",
    "conversations:write",
    "tickets:read",
    "tickets:write",
    "mcp-log:read",
]
DEMO_CORE_SCOPES = [
    "instances:read",
    "instances:write",
    "instances:delete",
    "sites:read",
    "sites:write",
    "analytics:read",
    "forms:read",
    "mcp-log:read",
]


class CliError(Exception):
    """A failure to report in one line, exit status 1."""


def _call(env: dict[str, str], method: str, request: Any, *, process: str = "gatekeeper") -> Any:
    """An admin RPC of `process` (the gatekeeper's key admin, or workflows' user admin)."""
    channel = grpc.insecure_channel(config.peer_address(env, process))
    stub: Any = (
        admin_pb2_grpc.KeyAdminServiceStub(channel)
        if process == "gatekeeper"
        else users_pb2_grpc.UserAdminServiceStub(channel)
    )
    # The stack writes its admin token into the data dir when HYDRA_ADMIN_TOKEN is not set.
    token = config.admin_token(env, create=False)
    metadata = (*admin_metadata(token), *token_metadata(config.internal_token(env)))
    try:
        return getattr(stub, method)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            raise CliError(f"{process} is not reachable: start the stack with `hydractl up`") from None
        if error.code() == grpc.StatusCode.NOT_FOUND:
            raise CliError(error.details()) from None
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise CliError(
                f"{error.details()} Set HYDRA_ADMIN_TOKEN (and HYDRA_INTERNAL_TOKEN) as the stack has them, "
                f"or run hydractl with the stack's HYDRA_DATA_DIR ({config.data_dir(env)} now)."
            ) from None
        raise CliError(error.details()) from None


def key_dict(key: admin_pb2.ApiKey) -> dict[str, Any]:
    data = json_format.MessageToDict(
        key, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    data["kind"] = KIND_NAMES.get(key.kind, "unknown")
    return data


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    sys.stdout.write((json.dumps(data) if args.json else text) + "\n")


def cmd_migrate(args: argparse.Namespace, env: dict[str, str]) -> None:
    migrate_all(env)
    _emit(args, {"migrated": True}, "migrations applied")


def create_tenant(env: dict[str, str], name: str) -> str:
    """Creates a tenant through the gatekeeper; returns its id."""
    return str(_call(env, "CreateTenant", admin_pb2.CreateTenantRequest(name=name)).tenant.id)


def revoke_key(env: dict[str, str], key_id: str) -> dict[str, Any]:
    """Revokes a key through the gatekeeper; returns its record."""
    return key_dict(_call(env, "RevokeKey", admin_pb2.RevokeKeyRequest(id=key_id)).key)


def cmd_tenants_create(args: argparse.Namespace, env: dict[str, str]) -> None:
    tenant_id = create_tenant(env, args.name)
    _emit(args, {"id": tenant_id, "name": args.name}, tenant_id)


def cmd_tenants_list(args: argparse.Namespace, env: dict[str, str]) -> None:
    tenants = _call(env, "ListTenants", admin_pb2.ListTenantsRequest()).tenants
    _emit(
        args, [{"id": t.id, "name": t.name} for t in tenants], "\n".join(f"{t.id}  {t.name}" for t in tenants)
    )


def mint(
    env: dict[str, str],
    *,
    tenant: str,
    scopes: Sequence[str],
    kind: str = "hmcp",
    instance: str = "",
    rate_limit: int = 0,
    name: str = "",
) -> dict[str, Any]:
    """Mints a key through the gatekeeper; returns its record plus "key" (the secret)."""
    response = _call(
        env,
        "MintKey",
        admin_pb2.MintKeyRequest(
            tenant_id=tenant,
            kind=KINDS[kind],
            scopes=list(scopes),
            instance_id=instance,
            rate_limit_per_minute=rate_limit,
            name=name,
        ),
    )
    return {**key_dict(response.key), "key": response.secret}


def _scopes(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def cmd_keys_mint(args: argparse.Namespace, env: dict[str, str]) -> None:
    data = mint(
        env,
        tenant=args.tenant,
        scopes=_scopes(args.scopes),
        kind=args.kind,
        instance=args.instance or "",
        rate_limit=args.rate_limit or 0,
        name=args.name or "",
    )
    _emit(args, data, f"{data['key']}\n(id {data['id']}; the key is shown only once)")


def cmd_keys_list(args: argparse.Namespace, env: dict[str, str]) -> None:
    keys = [
        key_dict(k)
        for k in _call(env, "ListKeys", admin_pb2.ListKeysRequest(tenant_id=args.tenant or "")).keys
    ]
    lines = [
        f"{k['id']}  {k['kind']:<7} {k['prefix']}…  {' '.join(k['scopes'])}  {k['rate_limit_per_minute']}/min"
        + ("  revoked" if k.get("revoked_at") else "")
        for k in keys
    ]
    _emit(args, keys, "\n".join(lines))


def cmd_keys_revoke(args: argparse.Namespace, env: dict[str, str]) -> None:
    key = revoke_key(env, args.id)
    _emit(args, key, f"revoked {key['id']}")


def cmd_keys_set_limit(args: argparse.Namespace, env: dict[str, str]) -> None:
    key = _call(
        env, "SetKeyLimit", admin_pb2.SetKeyLimitRequest(id=args.id, rate_limit_per_minute=args.limit)
    ).key
    _emit(args, key_dict(key), f"{key.id}: {key.rate_limit_per_minute}/min")


def _sites_call(env: dict[str, str], tenant: str, method: str, request: Any) -> Any:
    """Calls the public service's SiteService for a tenant, as an internal caller."""
    address = config.peer_address(env, "public")
    stub = sites_pb2_grpc.SiteServiceStub(grpc.insecure_channel(address))
    metadata = internal_metadata(
        tenant, ["sites:read", "sites:write"], key_id="hydractl", internal_token=config.internal_token(env)
    )
    try:
        return getattr(stub, method)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            raise CliError(
                "the public service is not reachable: start the stack with `hydractl up`"
            ) from None
        trailers = {item.key: item.value for item in error.trailing_metadata() or ()}
        raise CliError(trailers.get("x-error-body") or error.details()) from None


def site_dict(site: sites_pb2.Site) -> dict[str, Any]:
    return json_format.MessageToDict(
        site, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def create_site(env: dict[str, str], *, tenant: str, name: str, domain: str | None = None) -> dict[str, Any]:
    """Publishes a site for a tenant; returns its record (config id and tracking token)."""
    body = struct_pb2.Struct()
    body.update({"name": name, **({"domain": domain} if domain else {})})
    return site_dict(_sites_call(env, tenant, "CreateSite", sites_pb2.CreateSiteRequest(site=body)))


def cmd_sites_create(args: argparse.Namespace, env: dict[str, str]) -> None:
    site = create_site(env, tenant=args.tenant, name=args.name, domain=args.domain)
    _emit(
        args,
        site,
        f"site {site['id']} (config id, for forms)\ntracking token {site['tracking_token']} (for analytics)",
    )


def cmd_sites_list(args: argparse.Namespace, env: dict[str, str]) -> None:
    sites: list[dict[str, Any]] = []
    request = sites_pb2.ListSitesRequest()
    while True:  # every page
        page = _sites_call(env, args.tenant, "ListSites", request)
        sites.extend(site_dict(s) for s in page.sites)
        if not page.HasField("next_cursor"):
            break
        request = sites_pb2.ListSitesRequest(cursor=page.next_cursor)
    lines = [f"{s['id']}  token {s['tracking_token']}  {s['name']}" for s in sites]
    _emit(args, sites, "\n".join(lines))


def _dead_letter_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The services and row filters the dead-letter commands were given (ids checked)."""
    ids = getattr(args, "event_ids", None) or []
    for value in [*ids, *([args.tenant] if args.tenant else [])]:
        try:
            uuid.UUID(value)
        except ValueError:
            raise CliError(f"not an id: {value!r}") from None
    return {
        "services": args.service or [],
        "consumer": args.consumer,
        "tenant": args.tenant,
        "event_ids": ids,
        "retrying": args.retrying,
    }


def _chosen_dead_letters(args: argparse.Namespace) -> dict[str, Any]:
    """Filters for retry and drop, which act on named events or, with --all, on every match."""
    if not args.event_ids and not args.all:
        raise CliError("name the events (their ids), or pass --all for every dead letter that matches")
    return _dead_letter_filters(args)


def cmd_dead_letters_list(args: argparse.Namespace, env: dict[str, str]) -> None:
    try:
        letters = list_dead_letters(env, limit=args.limit, **_dead_letter_filters(args))
    except DeadLettersUnavailable as error:
        raise CliError(str(error)) from None
    lines = [
        f"{d['event_id']}  {d['service']}/{d['consumer']}  {d['topic']}  tenant {d['tenant_id']}  "
        f"{d['error']}  {d['attempts']} attempt(s)  "
        + (f"dead since {d['dead_at']}" if d["dead_at"] else f"retrying at {d['next_attempt_at']}")
        for d in letters
    ]
    _emit(args, letters, "\n".join(lines) if lines else "no dead letters")


def cmd_dead_letters_retry(args: argparse.Namespace, env: dict[str, str]) -> None:
    try:
        count = retry_dead_letters(env, **_chosen_dead_letters(args))
    except DeadLettersUnavailable as error:
        raise CliError(str(error)) from None
    _emit(
        args, {"retried": count}, f"{count} marked for retry: each goes back to the consumer that failed it"
    )


def cmd_dead_letters_drop(args: argparse.Namespace, env: dict[str, str]) -> None:
    try:
        count = drop_dead_letters(env, **_chosen_dead_letters(args))
    except DeadLettersUnavailable as error:
        raise CliError(str(error)) from None
    _emit(args, {"dropped": count}, f"{count} dropped")


def user_dict(user: users_pb2.AdminUser) -> dict[str, Any]:
    return json_format.MessageToDict(user, preserving_proto_field_name=True)


def create_user(env: dict[str, str], email: str) -> dict[str, Any]:
    """A user of the platform's own issuer (made unless one with this email exists)."""
    return user_dict(_call(env, "CreateUser", users_pb2.CreateUserRequest(email=email), process="workflows"))


def id_token(env: dict[str, str], email: str, ttl: dt.timedelta) -> str:
    """An ID token for the user with this email, signed by the platform's own issuer."""
    oidc = OidcSettings.from_env(env)
    if not oidc.embedded:
        raise CliError("ID tokens come from the configured issuer (HYDRA_OIDC_ISSUER), not from hydractl")
    user = _call(env, "FindUser", users_pb2.FindUserRequest(email=email), process="workflows")
    if not user.subject.startswith("hydra|"):
        raise CliError(f"{email} signs in with another issuer; hydractl mints tokens for its own users only")
    return oidc.issuer_here().mint(subject=user.subject, email=user.email, ttl=ttl)


def cmd_users_create(args: argparse.Namespace, env: dict[str, str]) -> None:
    user = create_user(env, args.email)
    _emit(args, user, f"{user['user_id']}  {user['email']}  {user['plan']}")


def cmd_users_token(args: argparse.Namespace, env: dict[str, str]) -> None:
    if args.ttl < 1:
        raise CliError("--ttl must be at least 1 second")
    token = id_token(env, args.email, dt.timedelta(seconds=args.ttl))
    _emit(args, {"id_token": token, "expires_in": args.ttl}, token)


def cmd_users_set_plan(args: argparse.Namespace, env: dict[str, str]) -> None:
    user = user_dict(
        _call(
            env,
            "SetPlan",
            users_pb2.SetPlanRequest(email=args.email, plan=args.plan),
            process="workflows",
        )
    )
    _emit(args, user, f"{user['email']}: {user['plan']} (rate limits follow within 30 s)")


def add_membership(env: dict[str, str], email: str, tenant: str, role: str) -> dict[str, Any]:
    """Makes the user with this email a member of a tenant (HydraCore accepts their ID token there)."""
    user = _call(env, "FindUser", users_pb2.FindUserRequest(email=email), process="workflows")
    request = admin_pb2.AddMembershipRequest(user_id=user.user_id, tenant_id=tenant, role=role)
    answer = _call(env, "AddMembership", request)
    return {"user_id": answer.user_id, "tenant_id": answer.tenant_id, "role": answer.role, "email": email}


def cmd_users_add_membership(args: argparse.Namespace, env: dict[str, str]) -> None:
    membership = add_membership(env, args.email, args.tenant, args.role)
    _emit(args, membership, f"{args.email} is {args.role} of tenant {args.tenant}")


def cmd_users_rotate_key(args: argparse.Namespace, env: dict[str, str]) -> None:
    oidc = OidcSettings.from_env(env)
    if not oidc.embedded:
        raise CliError("the configured issuer (HYDRA_OIDC_ISSUER) keeps its own keys")
    kid = oidc.issuer_here().rotate()
    _emit(args, {"kid": kid}, f"new signing key {kid}; tokens signed before stay valid until they expire")


def cmd_workflows_feature(args: argparse.Namespace, env: dict[str, str]) -> None:
    request = users_pb2.SetFeaturedRequest(workflow_id=args.workflow_id, featured=not args.off)
    _call(env, "SetFeatured", request, process="workflows")
    _emit(args, {"workflow_id": args.workflow_id, "featured": not args.off}, "done")


def demo_keys(env: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh Support (hmcp_) and HydraCore (hc_live_) keys for the demo tenant (created on first use)."""
    tenants = _call(env, "ListTenants", admin_pb2.ListTenantsRequest()).tenants
    demo = next((t for t in tenants if t.name == "demo"), None)
    tenant_id = demo.id if demo else create_tenant(env, "demo")
    support = mint(env, tenant=tenant_id, scopes=DEMO_SCOPES, name="demo")
    core = mint(env, tenant=tenant_id, kind="hc_live", scopes=DEMO_CORE_SCOPES, name="demo")
    return support, core


DEMO_USER = "demo@example.com"


def demo_user_lines(env: dict[str, str], edge_url: str, tenant_id: str) -> str:
    """The demo marketplace user (admin of the demo tenant too), an ID token for them and curl lines."""
    create_user(env, DEMO_USER)
    add_membership(env, DEMO_USER, tenant_id, "admin")
    if not OidcSettings.from_env(env).embedded:
        return f"Marketplace: sign in {DEMO_USER} with your OpenID provider for an ID token.\n\n"
    token = id_token(env, DEMO_USER, dt.timedelta(hours=24))
    auth = f"-H 'Authorization: Bearer {token}'"
    workflow = (
        '{"name": "Bug Fix", "visibility": "public", "manifest": {"manifest_version": "1.0", '
        '"name": "Bug Fix", "steps": [{"id": "find", "name": "Find", "instructions": "Find the bug."}]}}'
    )
    return (
        f"Demo ID token for {DEMO_USER} (24 h; the workflow marketplace, and HydraCore as the demo "
        "tenant's admin):\n"
        f"  {token}\n\n"
        f"Try:\n  curl -s -X POST {edge_url}/v1/workflows {auth} -H 'Content-Type: application/json' "
        f"-d '{workflow}'\n"
        f"  curl -s {edge_url}/v1/users/me {auth}\n\n"
    )


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _supervisor_log(path: Path) -> Callable[[str], None]:
    """Where `hydractl up` tells what it does to processes: stderr and `path`, each line timestamped."""

    def note(message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} hydractl: {message}\n"
        sys.stderr.write(line)
        sys.stderr.flush()
        with path.open("a") as log:
            log.write(line)

    return note


def cmd_k8s(args: argparse.Namespace, env: dict[str, str]) -> None:
    for path in k8s.write(args.out):
        sys.stdout.write(f"{path}\n")


def cmd_up(args: argparse.Namespace, env: dict[str, str]) -> None:
    if args.replicas is not None:
        env[replicas.REPLICAS_ENV] = args.replicas
    elif replicas.REPLICAS_ENV not in env:
        env[replicas.REPLICAS_ENV] = ",".join(f"{n}={c}" for n, c in replicas.sensible(env).items())
    stack = Stack(env=env, log_dir=config.data_dir(env) / "logs")
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop means the same as Ctrl-C
    try:
        stack.start()
        sys.stdout.write(f"Hydra is up at {stack.edge_url} (logs in {stack.log_dir})\n")
        several = {server: n for server, n in stack.replica_counts().items() if n > 1}
        if several:
            sys.stdout.write("Replicas: " + ", ".join(f"{s} x{n}" for s, n in several.items()) + "\n")
        sys.stdout.write(
            "Metrics (Prometheus; each Python process also answers /livez and /readyz beside /metrics):\n"
            + "".join(f"  {n:<20} {u}\n" for n, u in stack.metrics_urls().items())
        )
        collector = tracing.endpoint(env)
        if collector:
            sys.stdout.write(f"Traces: to {collector} (OTLP); a request's trace id is its x-request-id\n")
        if args.demo:
            key, core = demo_keys(env)
            site = create_site(env, tenant=key["tenant_id"], name="Demo site")
            auth = f"-H 'Authorization: Bearer {key['key']}'"
            json_body = "-H 'Content-Type: application/json' -d"
            lead = f'{json_body} \'{{"email": "alice@example.com", "name": "Alice"}}\''
            instance = f'{json_body} \'{{"name": "Support bot"}}\''
            sys.stdout.write(
                f"\nDemo API key (tenant {key['tenant_id']}, scopes {', '.join(key['scopes'])}):\n"
                f"  {key['key']}\n"
                f"Demo HydraCore key (scopes {', '.join(core['scopes'])}):\n  {core['key']}\n\n"
                f"Try:\n  curl -s -X POST {stack.edge_url}/api/v1/leads {auth} {lead}\n"
                f"  curl -s {stack.edge_url}/api/v1/leads {auth}\n"
                f"  curl -s -X POST {stack.edge_url}/v1/instances -H 'X-Api-Key: {core['key']}' {instance}\n"
                f"  curl -s -X POST {stack.edge_url}/v1/public/analytics/track {json_body} "
                f'\'{{"site_id": "{site["tracking_token"]}", "page_path": "/"}}\'\n'
                f"  curl -s {stack.edge_url}/v1/sites/{site['id']}/analytics -H 'X-Api-Key: {core['key']}'\n"
                f"API reference: {stack.edge_url}/docs (Swagger UI), {stack.edge_url}/redoc, "
                f"{stack.edge_url}/openapi.json\n"
                f"MCP for AI agents (README: MCP): {stack.edge_url}/api/mcp/v1 with the demo API key, "
                f"{stack.edge_url}/v1/mcp with the HydraCore key\n\n"
            )
            sys.stdout.write(demo_user_lines(env, stack.edge_url, key["tenant_id"]))
            sys.stdout.write("Ctrl-C stops everything.\n")
        sys.stdout.flush()
        note = _supervisor_log(stack.log_dir / "hydractl.log")
        note("supervising " + ", ".join(f"{n} (pid {p.pid})" for n, p in stack.processes.items()))
        stack.supervise(note=note)
    except StackError as error:
        raise CliError(str(error)) from None
    except KeyboardInterrupt:
        sys.stdout.write("\nstopping…\n")
    finally:
        # A second Ctrl-C or SIGTERM must not interrupt the stop and orphan the remaining processes.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


def _marketplace_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """users and workflows: the marketplace's operator commands."""
    users = sub.add_parser("users", help="marketplace users").add_subparsers(dest="action", required=True)
    command(users, "create", cmd_users_create, "create a user of the platform's own issuer").add_argument(
        "email"
    )
    token_p = command(users, "token", cmd_users_token, "print an ID token for a user (own issuer only)")
    token_p.add_argument("email")
    token_p.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (default 3600)")
    plan_p = command(users, "set-plan", cmd_users_set_plan, "set a user's plan (without billing)")
    plan_p.add_argument("email")
    plan_p.add_argument("plan", choices=["free", "pro", "team", "enterprise"])
    member_p = command(
        users, "add-membership", cmd_users_add_membership, "make a user a member of a tenant (HydraCore)"
    )
    member_p.add_argument("email")
    member_p.add_argument("--tenant", required=True, help="tenant id")
    member_p.add_argument("--role", choices=["admin", "member", "viewer"], default="member")
    command(users, "rotate-key", cmd_users_rotate_key, "sign new ID tokens with a new key")

    flows = sub.add_parser("workflows", help="marketplace workflows").add_subparsers(
        dest="action", required=True
    )
    feature_p = command(
        flows, "feature", cmd_workflows_feature, "feature a public workflow in the marketplace"
    )
    feature_p.add_argument("workflow_id")
    feature_p.add_argument("--off", action="store_true", help="stop featuring it")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="hydractl", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    def command(
        parent: Any, name: str, handler: Callable[..., None], help_text: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(handler=handler)
        return p

    up = command(sub, "up", cmd_up, "start every process, health-gated; Ctrl-C stops all")
    up.add_argument("--demo", action="store_true", help="mint a demo key and print a curl line")
    up.add_argument(
        "--replicas",
        metavar="NAME=N,…",
        help="processes per server, e.g. crm=2,gatekeeper=2 (HYDRA_REPLICAS); needs PostgreSQL, and Redis "
        "for the gatekeeper; default: two of crm, tickets and the gatekeeper on 4+ cores with PostgreSQL",
    )
    command(sub, "migrate", cmd_migrate, "apply every service's database migrations")
    command(sub, "k8s", cmd_k8s, "write the Kubernetes base manifests").add_argument(
        "--out", type=Path, default=Path("deploy/k8s/base"), help="the directory (deploy/k8s/base)"
    )

    tenants = sub.add_parser("tenants", help="tenants").add_subparsers(dest="action", required=True)
    command(tenants, "create", cmd_tenants_create, "create a tenant").add_argument("name")
    command(tenants, "list", cmd_tenants_list, "list tenants")

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    mint_p = command(keys, "mint", cmd_keys_mint, "mint a key (shown once)")
    mint_p.add_argument("--tenant", required=True, help="tenant id")
    mint_p.add_argument("--scopes", required=True, help="comma-separated, e.g. crm:read,crm:write")
    mint_p.add_argument("--kind", choices=sorted(KINDS), default="hmcp")
    mint_p.add_argument("--instance", help="instance id (widget tokens)")
    mint_p.add_argument("--rate-limit", type=int, help="requests per minute (default 60)")
    mint_p.add_argument("--name", help="a label")
    command(keys, "list", cmd_keys_list, "list keys (never their secrets)").add_argument("--tenant")
    command(keys, "revoke", cmd_keys_revoke, "revoke a key").add_argument("id")
    limit_p = command(keys, "set-limit", cmd_keys_set_limit, "change a key's requests per minute")
    limit_p.add_argument("id")
    limit_p.add_argument("limit", type=int)

    _marketplace_commands(sub, command)

    sites = sub.add_parser("sites", help="published websites").add_subparsers(dest="action", required=True)
    site_p = command(sites, "create", cmd_sites_create, "publish a site (prints its config id and token)")
    site_p.add_argument("--tenant", required=True, help="tenant id")
    site_p.add_argument("--name", required=True, help="display name")
    site_p.add_argument("--domain", help="the domain it is published on")
    command(sites, "list", cmd_sites_list, "list a tenant's sites").add_argument("--tenant", required=True)

    events = sub.add_parser("events", help="event delivery").add_subparsers(dest="area", required=True)
    dead = events.add_parser("dead-letters", help="events a consumer gave up on").add_subparsers(
        dest="action", required=True
    )

    def dead_letter_command(
        name: str, handler: Callable[..., None], help_text: str
    ) -> argparse.ArgumentParser:
        p = command(dead, name, handler, help_text)
        p.add_argument("--service", action="append", choices=sorted(SERVICES), help="only this service's")
        p.add_argument("--consumer", help="only this consumer's, e.g. tickets-confirmation")
        p.add_argument("--tenant", help="only this tenant's")
        p.add_argument(
            "--retrying", action="store_true", help="also failed events still retried on their own"
        )
        return p

    dead_letter_command(
        "list", cmd_dead_letters_list, "list dead letters, newest failure first"
    ).add_argument("--limit", type=int, default=100, help="at most this many per service (default 100)")
    for name, handler, help_text in (
        ("retry", cmd_dead_letters_retry, "deliver again, to the consumer that failed each one only"),
        ("drop", cmd_dead_letters_drop, "delete: never deliver them"),
    ):
        p = dead_letter_command(name, handler, help_text)
        p.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
        p.add_argument("--all", action="store_true", help="every dead letter the other options match")
    return root


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.handler(args, dict(os.environ))
    except (CliError, config.ConfigError) as error:
        sys.stderr.write(f"hydractl: {error}\n")
        sys.exit(1)
