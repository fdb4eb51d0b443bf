"""gRPC server bootstrap shared by every process: identity, error mapping, logs, health, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeAlias

import grpc
import uvloop
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from services.common import config, deadlines, tracing
from services.common import identity as ident
from services.common.access import MethodAccess, service_access
from services.common.channels import HTTP2_OPTIONS, MAX_MESSAGE_BYTES
from services.common.conditional import refuse_unkept_match
from services.common.db import is_connection_loss
from services.common.errors import (
    DeadlineExceeded,
    HydraError,
    InternalError,
    Unauthenticated,
    Unavailable,
)
from services.common.exchange import HTTP_STATUS_HEADER, Exchange, bind
from services.common.fields import refuse_control_characters
from services.common.health import Dependency, Health, serve_operations
from services.common.idempotency import REPLAYED, Answer, IdempotencyKeys, fingerprint, read_key
from services.common.logging import bind_request, log_loop_exception
from services.common.metrics import MetricsSettings, RpcMetrics, metrics_settings
from services.common.servicing import Context
from services.common.surfaces import REQUEST_ID_HEADER, identified, render

ERROR_BODY_HEADER = "x-error-body"


_DATABASE_LOST_READ = "The database is unavailable. Retry safe."
_DATABASE_LOST_WRITE = "The database is unavailable; the request may have been applied."
_HEALTH_METHODS = "/grpc.health.v1.Health/"  # open to every health checker, token or not
_NOT_VOUCHED = "Missing or invalid internal token."

# The interceptor sees the calls of every method, whatever their messages.
_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]]"


class HydraInterceptor(grpc.aio.ServerInterceptor):
    """Binds the caller's identity, re-checks the RPC's scope, maps errors, logs one line per call.

    With an internal token, every call but health checks must carry it (UNAUTHENTICATED otherwise):
    identity metadata counts only from Envoy and internal callers.
    """

    def __init__(
        self,
        policies: dict[str, MethodAccess],
        logger: logging.Logger,
        *,
        internal_token: str | None = None,
        idempotency: IdempotencyKeys | None = None,
    ) -> None:
        unkept = [p.full_method for p in policies.values() if p.idempotent and idempotency is None]
        if unkept:
            raise TypeError(f"{unkept[0]} takes an Idempotency-Key: its process must keep them")
        self._policies = policies
        self._log = logger
        self._token = internal_token.encode() if internal_token else None
        self._keys = idempotency
        self._wrapped: dict[str, _Handler] = {}
        self._refusals: dict[str, _Handler] = {}

    async def intercept_service(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        method = handler_call_details.method
        if (
            self._token is not None
            and not method.startswith(_HEALTH_METHODS)
            and not ident.vouched(handler_call_details.invocation_metadata or (), self._token)
        ):
            return await self._refusal(continuation, handler_call_details)
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        policy = self._policies.get(method)
        if handler is None or policy is None:
            return handler  # health, reflection
        self._wrapped[method] = self._wrap(handler, policy)
        return self._wrapped[method]

    async def _refusal(
        self, continuation: _Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> _Handler | None:
        """A handler of the method's own kind that answers UNAUTHENTICATED (built once per method)."""
        method = handler_call_details.method
        refusal = self._refusals.get(method)
        if refusal is not None:
            return refusal
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        policy = self._policies.get(method)
        trailers: tuple[tuple[str, str], ...] = ()
        if policy is not None:
            rendered = render(Unauthenticated(_NOT_VOUCHED), policy.surface)
            trailers = ((ERROR_BODY_HEADER, rendered.body), (HTTP_STATUS_HEADER, str(rendered.http_status)))

        async def refuse(_request: Any, context: Context) -> NoReturn:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, _NOT_VOUCHED, trailing_metadata=trailers)
            raise AssertionError("abort returned")

        async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            await refuse(request, context)
            yield  # pragma: no cover - a generator, for a streaming method

        make = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        kind = next(k for k in make if getattr(handler, k) is not None)
        behavior = refuse_stream if kind.endswith("_stream") else refuse
        refusal = self._refusals[method] = make[kind](behavior)
        return refusal

    def _wrap(self, handler: _Handler, policy: MethodAccess) -> _Handler:
        """The handler with identity, error mapping and logging around it (built once per method)."""
        if handler.unary_unary:
            serialize = handler.response_serializer
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(
                    handler.unary_unary, policy, serialize, RpcMetrics(policy.full_method, "unary")
                ),
                request_deserializer=handler.request_deserializer,
                response_serializer=_passing_replays(serialize) if policy.idempotent else serialize,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(
                    handler.unary_stream, policy, RpcMetrics(policy.full_method, "server_stream")
                ),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{policy.full_method}: only unary and server-streaming RPCs are supported")

    def _wrap_unary(
        self,
        behavior: Callable[..., Awaitable[Any]],
        policy: MethodAccess,
        serialize: Callable[[Any], bytes] | None,
        metrics: RpcMetrics,
    ) -> Callable[..., Any]:
        async def wrapped(request: Any, context: Context) -> Any:
            async with self._guard(policy, context, metrics) as call:
                if policy.reads_raw_fields:
                    refuse_control_characters(request)
                if policy.http_write:
                    refuse_unkept_match()
                if policy.idempotent:
                    first = await self._hold_key(call, request)
                    if first is not None:
                        return await _replay(context, call, first)
                if call.remaining is None:
                    response = await behavior(request, context)
                else:
                    response = await _within(call.remaining, behavior(request, context))
                headers = tuple(call.exchange.answer_headers.items())
                if call.held_key is not None and serialize is not None:
                    await self._keep(call, Answer(grpc.StatusCode.OK, serialize(response), headers=headers))
                # Only on success: an error must stay trailers-only for its body to reach the edge.
                if headers:
                    await context.send_initial_metadata(headers)
                return response

        return wrapped

    async def _hold_key(self, call: _Call, request: Any) -> Answer | None:
        """Claims the request's Idempotency-Key for it (None: run it), or the key's first answer."""
        key = read_key(call.metadata)
        if key is None or self._keys is None:
            return None
        print_ = fingerprint(call.policy.full_method, request.SerializeToString(deterministic=True))
        wait_until = None
        if call.remaining is not None:
            wait_until = asyncio.get_running_loop().time() + call.remaining - 2 * _DEADLINE_MARGIN
        first = await self._keys.claim(call.tenant, key, print_, wait_until=wait_until)
        if first is None:
            call.held_key = key
        return first

    async def _keep(self, call: _Call, answer: Answer) -> None:
        """Records the answer under the request's key (an error's: kept or released), once."""
        key, call.held_key = call.held_key, None
        if key is None or self._keys is None:
            return
        try:
            await self._keys.keep(call.tenant, key, answer)
        except Exception as error:  # the answer still goes out; the key's lease ends the hold
            self._log.warning(
                "idempotency key not recorded",
                extra={
                    "rpc": call.policy.full_method,
                    "request_id": call.request_id,
                    "error": type(error).__name__,
                },
            )

    def _wrap_stream(
        self, behavior: Callable[..., Any], policy: MethodAccess, metrics: RpcMetrics
    ) -> Callable[..., Any]:
        async def wrapped(request: Any, context: Context) -> Any:
            async with self._guard(policy, context, metrics):
                async for message in behavior(request, context):
                    yield message

        return wrapped

    @contextlib.asynccontextmanager
    async def _guard(
        self, policy: MethodAccess, context: Context, metrics: RpcMetrics
    ) -> AsyncIterator[_Call]:
        """Binds identity for one call, turns any failure into a status, and logs and counts the call."""
        call = _Call(
            policy, ident.text_metadata(context.invocation_metadata()), remaining=context.time_remaining()
        )
        metrics.start()
        unbind = None
        unbind_exchange = bind(call.exchange)
        unbind_request = bind_request(call.metadata.get(REQUEST_ID_HEADER))
        try:
            unbind = call.bind()
            yield call
        except Exception as error:  # every failure becomes a well-formed status, never a stack trace
            await self._abort(context, call, error)
        finally:
            if unbind is not None:
                unbind()
            unbind_exchange()
            self._log_call(call)
            unbind_request()
            metrics.end(call.code, call.started)

    async def _abort(self, context: Context, call: _Call, error: Exception) -> None:
        if isinstance(error, grpc.aio.AbortError):
            if call.code is grpc.StatusCode.OK:  # aborted by the handler itself, with a code not seen here
                call.code = grpc.StatusCode.UNKNOWN
            raise error
        if is_connection_loss(error):
            self._log.warning(
                "database unavailable: %s",
                error.__class__.__name__,
                extra={"rpc": call.policy.full_method, "request_id": call.request_id},
            )
            # A read changed nothing; a write may have been committed just before the connection went.
            reads = call.policy.scope.endswith(":read")
            error = Unavailable(_DATABASE_LOST_READ if reads else _DATABASE_LOST_WRITE)
        if not isinstance(error, HydraError):
            self._log.error(
                "unhandled error",
                exc_info=error,
                extra={"rpc": call.policy.full_method, "request_id": call.request_id},
            )
            error = InternalError("Internal server error.")
        call.status = error.code
        rendered = render(error, call.policy.surface, call.metadata.get(REQUEST_ID_HEADER))
        call.code = rendered.grpc_status
        trailers = (
            (ERROR_BODY_HEADER, rendered.body),
            (HTTP_STATUS_HEADER, str(rendered.http_status)),
        )
        if call.held_key is not None:  # kept without the request's id: a replay names its own request
            bare = ((ERROR_BODY_HEADER, render(error, call.policy.surface).body), trailers[1])
            await self._keep(call, Answer(rendered.grpc_status, message=rendered.message, headers=bare))
        await context.abort(rendered.grpc_status, rendered.message, trailing_metadata=trailers)

    def _log_call(self, call: _Call) -> None:
        extra = {
            "rpc": call.policy.full_method,
            "status": call.status,
            "duration_ms": round((time.perf_counter() - call.started) * 1000, 2),
            "request_id": call.request_id,
            "tenant": call.tenant,
        }
        if call.remaining is not None:
            extra["deadline_ms"] = round(call.remaining * 1000)  # what the caller allowed, on arrival
        self._log.info("rpc", extra=extra)


# Our own answer must leave before gRPC cancels the call at the deadline and answers for us (with no
# surface envelope); and work that begins (a group commit) must have time to tell its caller it did not.
_DEADLINE_MARGIN = 0.05


@dataclass(frozen=True)
class _Replayed:
    """A response kept from the first request with an Idempotency-Key, as serialized then."""

    data: bytes


def _passing_replays(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    """The method's serializer, passing a kept response's bytes through as they are."""

    def serialized(response: Any) -> bytes:
        if isinstance(response, _Replayed):
            return response.data
        return serialize(response) if serialize is not None else response

    return serialized


async def _replay(context: Context, call: _Call, first: Answer) -> Any:
    """Answers as the first request with the key was answered, saying so in a header."""
    call.status = "replayed"
    call.code = first.status
    replayed = (REPLAYED, "true")
    if first.status is not grpc.StatusCode.OK:
        trailers = [
            (
                name,
                _naming(value, call.metadata.get(REQUEST_ID_HEADER)) if name == ERROR_BODY_HEADER else value,
            )
            for name, value in first.headers
        ]
        await context.abort(first.status, first.message, trailing_metadata=(*trailers, replayed))
    await context.send_initial_metadata((*first.headers, replayed))
    return _Replayed(first.body)


def _naming(error_body: str, request_id: str | None) -> str:
    """A kept error body, naming the request that is answered with it now."""
    return json.dumps(identified(json.loads(error_body), request_id), ensure_ascii=True)


async def _within(remaining: float, work: Awaitable[Any]) -> Any:
    """Runs `work` until the caller's deadline at most: abandoned past it (cancelled, so a transaction
    under way rolls back) and answered DEADLINE_EXCEEDED. Work not begun by then is not begun."""
    loop = asyncio.get_running_loop()
    abandon_at = loop.time() + remaining - _DEADLINE_MARGIN
    token = deadlines.set_current(abandon_at - _DEADLINE_MARGIN)
    limit = asyncio.timeout_at(abandon_at)
    try:
        async with limit:
            return await work
    except TimeoutError:
        if limit.expired():
            raise DeadlineExceeded(deadlines.MAYBE_APPLIED) from None
        raise
    finally:
        deadlines.reset_current(token)


@dataclass
class _Call:
    policy: MethodAccess
    metadata: dict[str, str]
    remaining: float | None = None  # seconds until the caller's deadline, when it set one
    started: float = field(default_factory=time.perf_counter)
    status: str = "ok"
    code: grpc.StatusCode = grpc.StatusCode.OK  # the gRPC status it was answered with
    tenant: str = "-"
    held_key: str | None = None  # the Idempotency-Key this call claimed, until its answer is recorded
    exchange: Exchange = field(init=False)

    def __post_init__(self) -> None:
        self.exchange = Exchange(self.metadata, conditional=self.policy.conditional)

    @property
    def request_id(self) -> str:
        return self.metadata.get(REQUEST_ID_HEADER, "-")

    def bind(self) -> Callable[[], None] | None:
        """Checks identity and scope for RPCs that act for a tenant or a user; returns the unbinding."""
        if self.policy.acts_for_user:
            user_id = ident.user_from_metadata(self.metadata)
            self.tenant = f"user:{user_id}"
            user_token = ident.set_current_user(user_id)
            return lambda: ident.reset_current_user(user_token)
        if not self.policy.needs_identity:
            return None
        identity = ident.identity_from_metadata(self.metadata)
        self.tenant = str(identity.tenant_id)
        identity.require(self.policy.scope)
        token = ident.set_current(identity)
        return lambda: ident.reset_current(token)


@dataclass
class GrpcApp:
    """What a process serves: its services, how to register them, how to probe and close its resources."""

    name: str
    address: str
    services: Sequence[ServiceDescriptor]
    register: Callable[[grpc.aio.Server], None]
    # What it checks every `probe_interval` seconds: it is ready while the required ones answer.
    dependencies: Sequence[Dependency]
    close: Callable[[], Awaitable[None]]
    probe_interval: float = 2.0
    grace: float = 5.0
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()  # e.g. outbox dispatch
    consumers: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()  # event consumers
    # Consumers run in the service's delivery process (`python -m services.<name> deliver`) instead.
    separate_consumers: bool = False
    start: Callable[[], Awaitable[None]] | None = None  # e.g. another listener, bound before serving
    idempotency: IdempotencyKeys | None = None  # where its writes' Idempotency-Keys are kept


class _HealthMonitor:
    """Keeps gRPC health in step with the process's readiness (never a constant SERVING)."""

    def __init__(self, health: Health, servicer: health_aio.HealthServicer, app: GrpcApp) -> None:
        self._health = health
        self._servicer = servicer
        self._names = ["", *(s.full_name for s in app.services)]
        self._serving: bool | None = None

    async def check_once(self) -> bool:
        ready = await self._health.check_once()
        if ready != self._serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ready
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in self._names:
                await self._servicer.set(name, status)
            self._serving = ready
        return ready

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._health.interval)
            await self.check_once()


@dataclass(frozen=True)
class ServerSettings:
    """What every gRPC server reads at start-up, whatever its service."""

    internal_token: str | None = None
    # How long a stopping server keeps answering, NOT_SERVING, before it drains: Envoy health-checks
    # every 2 s and takes a host out at its first NOT_SERVING answer (1 s timeout), so 3 s.
    shutdown_delay: float = 3.0
    metrics: MetricsSettings | None = None  # where it serves its Prometheus metrics, if anywhere

    @classmethod
    def from_env(cls, env: Mapping[str, str], name: str = "", *, delivery: bool = False) -> ServerSettings:
        return cls(
            internal_token=config.internal_token(env),
            shutdown_delay=config.env_int(env, "HYDRA_SHUTDOWN_DELAY_MS", 3000) / 1000,
            metrics=metrics_settings(env, name, delivery=delivery),
        )


def _cannot_listen(logger: logging.Logger, app: GrpcApp, address: str) -> NoReturn:
    logger.error("cannot listen (address in use?)", extra={"address": address, "service": app.name})
    raise SystemExit(1)


async def serve(
    app: GrpcApp,
    logger: logging.Logger,
    *,
    stop: asyncio.Event | None = None,
    settings: ServerSettings | None = None,
) -> None:
    """Runs the app until SIGTERM/SIGINT (or `stop`), then drains: NOT_SERVING, a pause while Envoy
    notices, stop(grace), close. `settings` default to the HYDRA_* environment."""
    settings = settings or ServerSettings.from_env(config.current_env(), app.name)
    try:
        config.require_internal_token(app.address, settings.internal_token)
    except config.ConfigError as error:
        logger.error("refusing to start: %s", error, extra={"service": app.name})
        raise SystemExit(2) from None
    asyncio.get_running_loop().set_exception_handler(log_loop_exception(logger))
    policies = service_access(app.services)
    server = grpc.aio.server(
        interceptors=[
            *tracing.server_interceptors(),  # outermost: the call's span is current while it runs
            HydraInterceptor(
                policies, logger, internal_token=settings.internal_token, idempotency=app.idempotency
            ),
        ],
        options=[
            *HTTP2_OPTIONS,
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    app.register(server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            *(s.full_name for s in app.services),
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        bound = server.add_insecure_port(app.address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        _cannot_listen(logger, app, app.address)
    if app.start is not None:
        try:
            await app.start()
        except OSError as error:
            _cannot_listen(logger, app, str(error))
    checks = Health(app.dependencies, logger, interval=app.probe_interval)
    stop_metrics = _serve_operations(settings.metrics, checks, logger, app)
    monitor = _HealthMonitor(checks, health, app)
    await asyncio.create_task(monitor.check_once(), context=tracing.untraced_context())
    await server.start()
    logger.info("serving", extra={"address": app.address, "service": app.name})

    stop = _stopped_by_signals(stop)
    jobs = [*app.background, *(() if app.separate_consumers else app.consumers)]
    # Background work runs untraced: a poll of the outbox every few milliseconds is not a request.
    tasks = [asyncio.create_task(job(), context=tracing.untraced_context()) for job in (monitor.run, *jobs)]
    try:
        await stop.wait()
    finally:
        # New work stops first: Envoy sees NOT_SERVING at its next check and sends no more; only then
        # does the server refuse new calls and wait for those under way.
        await health.enter_graceful_shutdown()
        logger.info("not serving", extra={"service": app.name, "delay_s": settings.shutdown_delay})
        await asyncio.sleep(settings.shutdown_delay)
        logger.info("draining", extra={"service": app.name})
        await server.stop(app.grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await app.close()
        stop_metrics()
        logger.info("stopped", extra={"service": app.name})


def _serve_operations(
    metrics: MetricsSettings | None, health: Health, logger: logging.Logger, app: GrpcApp
) -> Callable[[], None]:
    """Starts the listener of metrics, liveness and readiness, if the process has one; returns its stop."""
    if metrics is None:
        return lambda: None
    try:
        stop = serve_operations(metrics.host, metrics.port, health)
    except OSError:
        _cannot_listen(logger, app, metrics.address)
    logger.info("metrics", extra={"address": metrics.address, "service": app.name})
    return stop


async def deliver(app: GrpcApp, logger: logging.Logger, *, stop: asyncio.Event | None = None) -> None:
    """Runs only the app's event consumers until SIGTERM/SIGINT (or `stop`), then closes its resources.

    Request handling and event delivery then compete for the CPU as processes, not on one event loop.
    """
    asyncio.get_running_loop().set_exception_handler(log_loop_exception(logger))
    if not app.separate_consumers:
        logger.error(
            "the event consumers run in the server process; "
            "a delivery process needs HYDRA_EVENTS_CONSUMERS=separate (with HYDRA_REDIS_URL)",
            extra={"service": app.name},
        )
        raise SystemExit(2)
    stop = _stopped_by_signals(stop)
    # Its consumers read Redis and write their database: it cannot work without either.
    checks = Health.needing_all(app.dependencies, logger, interval=app.probe_interval)
    await asyncio.create_task(checks.check_once(), context=tracing.untraced_context())
    stop_metrics = _serve_operations(
        ServerSettings.from_env(config.current_env(), app.name, delivery=True).metrics, checks, logger, app
    )
    jobs = (checks.run, *app.consumers)
    tasks = [asyncio.create_task(job(), context=tracing.untraced_context()) for job in jobs]
    logger.info("delivering events", extra={"service": app.name})
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await app.close()
        stop_metrics()
        logger.info("stopped", extra={"service": app.name})


def _stopped_by_signals(stop: asyncio.Event | None) -> asyncio.Event:
    """`stop`, or a new event, set on SIGTERM or SIGINT."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


__all__ = [
    "GrpcApp",
    "HydraInterceptor",
    "ServerSettings",
    "deliver",
    "run",
    "serve",
]


def run(main: Coroutine[Any, Any, None]) -> None:
    """Runs a process's main coroutine on uvloop, with start-up objects kept out of GC passes."""
    gc.freeze()  # modules, descriptors and settings live forever: stop rescanning them
    uvloop.run(main)
