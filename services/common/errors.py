"""The domain error hierarchy: what went wrong, its stable code and its statuses (each surface's envelope
wraps it: services/common/surfaces.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

# An error body travels as one gRPC trailer (x-error-body), and Envoy refuses a response whose headers
# pass 60 KiB: a body is kept well under that, however many fields were wrong or however long they were.
MAX_ERROR_BODY_BYTES = 16 * 1024
MAX_LISTED_ERRORS = 50
_MESSAGE_CHARS = 2000  # of a message (a Support error, grpc-message)
_PART_CHARS = 100  # of one part of a field's location (keys come from the client's JSON)
_MSG_CHARS = 300  # of one field error's message


@dataclass(frozen=True)
class FieldError:
    """One invalid input: where it is, what is wrong, and a stable type tag."""

    loc: Loc
    msg: str
    type: str
    extra: tuple[tuple[str, Any], ...] = ()  # FastAPI's further keys where it has them (input, ctx)

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type, **dict(self.extra)}

    def clipped(self) -> FieldError:
        """The same error with every text part cut to a bounded length."""
        loc = tuple(clip(p, _PART_CHARS) if isinstance(p, str) else p for p in self.loc)
        return FieldError(loc, clip(self.msg, _MSG_CHARS), clip(self.type, _PART_CHARS), self.extra)


Loc = tuple[str | int, ...]  # where in the request an error is: ("body", "email"), ("query", "limit")


class HydraError(Exception):
    """Base of every error a caller may see; subclasses fix the code and status."""

    code = "server_error"
    grpc_status = grpc.StatusCode.INTERNAL
    http_status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra  # details a surface may show beside the message (e.g. blockers)

    @property
    def field_errors(self) -> list[FieldError]:
        """The invalid inputs, one by one, where the error is about the request's fields."""
        return []

    @property
    def detail(self) -> str:
        """The message in the briefest form (FastAPI's `detail`)."""
        return self.message


class ValidationError(HydraError):
    """Input failed validation; each invalid field is named."""

    code = "validation_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400

    def __init__(self, errors: list[FieldError] | FieldError, message: str | None = None) -> None:
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        super().__init__(message or _summary(self.errors))

    @property
    def field_errors(self) -> list[FieldError]:
        return self.errors


def _describe(error: FieldError) -> str:
    error = error.clipped()
    field = ".".join(str(p) for p in error.loc[1:]) if len(error.loc) > 1 else str(error.loc[0])
    return f"{field}: {error.msg}" if field else error.msg


def _summary(errors: list[FieldError]) -> str:
    """The errors in one line: as many as fit a message, then how many more there are."""
    parts: list[str] = []
    size = 0
    for error in errors[:MAX_LISTED_ERRORS]:
        part = _describe(error)
        size += len(part) + 2
        if size > _MESSAGE_CHARS and parts:
            break
        parts.append(part)
    rest = len(errors) - len(parts)
    return "; ".join(parts) + (f"; and {rest} more errors" if rest else "")


def clip(text: str, most: int) -> str:
    """`text`, cut to at most `most` characters (an ellipsis marks the cut)."""
    return text if len(text) <= most else text[: most - 1] + "\u2026"


class UnreadableBody(HydraError):
    """The request body is not text a JSON parser can read (FastAPI's 400)."""

    code = "validation_error"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class Unauthenticated(HydraError):
    """Missing, malformed, or revoked credential."""

    code = "unauthorized"
    grpc_status = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class ForbiddenScope(HydraError):
    """The credential is valid but lacks the route's scope."""

    code = "forbidden_scope"
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403

    def __init__(self, required: str, granted: frozenset[str] | set[str]) -> None:
        super().__init__(
            f"Missing required scope(s): {required}. Your key has [{', '.join(sorted(granted))}]."
        )
        self.required = required

    @property
    def detail(self) -> str:
        return f"Missing required scope: {self.required}"


class Forbidden(HydraError):
    """The caller may see the resource but may not do this to it."""

    code = "forbidden"
    grpc_status = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class NotFound(HydraError):
    """The resource does not exist, or belongs to another tenant."""

    code = "not_found"
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404


class InvalidPathId(HydraError):
    """A path id is not a UUID: not found where path ids are opaque, or an invalid field where they are
    validated (FastAPI validates path UUIDs: 422)."""

    code = "not_found"
    grpc_status = grpc.StatusCode.NOT_FOUND
    http_status = 404

    def __init__(self, param: str, not_found_message: str) -> None:
        super().__init__(not_found_message)
        self.field_error = FieldError(("path", param), "Input should be a valid UUID", "uuid_parsing")

    @property
    def field_errors(self) -> list[FieldError]:
        return [self.field_error]


class PreconditionFailed(HydraError):
    """A conditional write's If-Match names a version the resource is no longer at."""

    code = "precondition_failed"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412


class Conflict(HydraError):
    """The write is blocked by other rows (e.g. fk_blocked with a blockers count)."""

    code = "conflict"
    grpc_status = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 409

    def __init__(self, message: str, *, code: str = "conflict", **extra: Any) -> None:
        super().__init__(message, **extra)
        self.code = code


class PlanLimitExceeded(HydraError):
    """The caller's plan allows no more of something (workflows, deployments, connections this month)."""

    code = "plan_limit_exceeded"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 402


RATE_LIMIT_EXCEEDED = "Rate limit exceeded"


class RateLimited(HydraError):
    """The caller's sliding-window limit is spent."""

    code = "rate_limited"
    grpc_status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class Unavailable(HydraError):
    """A dependency is down; its message says whether the request may have been applied."""

    code = "server_error"
    grpc_status = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(HydraError):
    """The caller's deadline passed before the request finished; the message says whether it may have
    been applied."""

    code = "server_error"
    grpc_status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class InternalError(HydraError):
    """An unexpected failure; the message never carries internals."""
