"""The OpenAPI 3.1 document of every HTTP route, generated from the same descriptor set Envoy transcodes with.

Paths, methods, scopes, parameters, request and response schemas, field rules and descriptions all come
from the protos (`google.api.http`, the `access` and `rules` options, and the proto comments), so the
document cannot drift from what the edge serves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from edge.bindings import DESCRIPTOR_SET, ROOT, Binding, load_bindings
from services.common.events.catalogue import ATTEMPT_SECONDS, EVENT_TYPES, RETRY_SECONDS
from services.common.fields import text_pattern
from services.common.surfaces import CREDENTIALS, SURFACES, envelopes

StringFormat = options_pb2.StringFormat
FieldType = descriptor_pb2.FieldDescriptorProto
_PARAM = re.compile(r"\{(\w+)(=[^}]*)?\}")
_SCALARS: dict[int, dict[str, Any]] = {
    FieldType.TYPE_STRING: {"type": "string"},
    FieldType.TYPE_BOOL: {"type": "boolean"},
    FieldType.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldType.TYPE_INT64: {"type": "integer", "format": "int64"},
    FieldType.TYPE_DOUBLE: {"type": "number"},
    FieldType.TYPE_FLOAT: {"type": "number"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {},
}
# FieldRules' optional bounds, each with the JSON Schema keyword it becomes.
_BOUNDS: tuple[tuple[Literal["minimum", "minimum_number", "maximum", "maximum_number"], str], ...] = (
    ("minimum", "minimum"),
    ("minimum_number", "minimum"),
    ("maximum", "maximum"),
    ("maximum_number", "maximum"),
)
_FORMATS = {
    StringFormat.STRING_FORMAT_EMAIL: "email",
    StringFormat.STRING_FORMAT_UUID: "uuid",
    StringFormat.STRING_FORMAT_DATE: "date",
    StringFormat.STRING_FORMAT_URL: "uri",
}


@dataclass(frozen=True)
class Parameter:
    """One input of a route: a path or query parameter, or its JSON body."""

    name: str
    where: Literal["path", "query", "body"]
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Inputs:
    """A route's inputs: its parameters in order, and its body (None without one)."""

    parameters: list[Parameter]
    body: Parameter | None


class Protos:
    """Messages and comments of a descriptor set, by full name."""

    def __init__(self, files: Sequence[descriptor_pb2.FileDescriptorProto]) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.comments: dict[str, str] = {}
        self.methods: dict[str, descriptor_pb2.MethodDescriptorProto] = {}
        for file in files:
            located = {
                tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location
            }
            for mi, message in enumerate(file.message_type):
                name = f".{file.package}.{message.name}"
                self.messages[name] = message
                for nested in message.nested_type:  # map fields' entries
                    self.messages[f"{name}.{nested.name}"] = nested
                self.comments[name] = located.get((4, mi), "")
                for fi, field in enumerate(message.field):
                    self.comments[f"{name}.{field.name}"] = located.get((4, mi, 2, fi), "")
            for si, service in enumerate(file.service):
                for mi, method in enumerate(service.method):
                    rpc = f"{file.package}.{service.name}.{method.name}"
                    self.methods[rpc] = method
                    self.comments[rpc] = located.get((6, si, 2, mi), "")


def _rules(field: descriptor_pb2.FieldDescriptorProto) -> options_pb2.FieldRules:
    return field.options.Extensions[options_pb2.rules]


class Builder:
    """Turns bindings into paths and messages into component schemas."""

    def __init__(self, protos: Protos) -> None:
        self.protos = protos
        self.schemas: dict[str, Any] = {}

    def output_schema(self, type_name: str, *, json_names: bool = False) -> dict[str, Any]:
        """A $ref to the schema of an output message (built once); its properties named as the
        surface prints them (the proto's names, or their lowerCamelCase JSON names)."""
        if type_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[type_name])
        name = type_name.rsplit(".", 1)[1]
        if name not in self.schemas:
            self.schemas[name] = {}  # reserved first, so a message that contains itself terminates
            message = self.protos.messages[type_name]
            inputs = self._input_fields(type_name)
            properties = {}
            for field in message.field:
                schema = self._output_field(field, inputs.get(field.name), json_names=json_names)
                described = self.protos.comments.get(f"{type_name}.{field.name}")
                printed = field.json_name if json_names else field.name
                properties[printed] = {**schema, "description": described} if described else schema
            self.schemas[name] = {
                "type": "object",
                "description": self.protos.comments.get(type_name, ""),
                "properties": properties,
                # Unset optional fields (presence: `optional`) are not printed at all.
                "required": [
                    f.json_name if json_names else f.name for f in message.field if not f.proto3_optional
                ],
            }
        return {"$ref": f"#/components/schemas/{name}"}

    def _input_fields(self, type_name: str) -> dict[str, descriptor_pb2.FieldDescriptorProto]:
        """Fields of the message's writable twin (Lead → LeadInput), to type its nullable values."""
        twin = self.protos.messages.get(f"{type_name}Input")
        return {f.name: f for f in twin.field} if twin else {}

    def _output_field(
        self,
        field: descriptor_pb2.FieldDescriptorProto,
        twin: descriptor_pb2.FieldDescriptorProto | None,
        *,
        json_names: bool = False,
    ) -> dict[str, Any]:
        if field.type_name == ".google.protobuf.Value":
            typed = self._plain_type(twin) if twin is not None else {}
            if "type" in typed:
                return {**typed, "type": [typed["type"], "null"]}
            return typed
        entry = self.protos.messages.get(field.type_name)
        if entry is not None and entry.options.map_entry:
            _key, value = entry.field
            return {
                "type": "object",
                "additionalProperties": self._output_field(value, None, json_names=json_names),
            }
        single = (
            self.output_schema(field.type_name, json_names=json_names)
            if field.type == FieldType.TYPE_MESSAGE
            else self._plain_type(field)
        )
        return {"type": "array", "items": single} if field.label == FieldType.LABEL_REPEATED else single

    def _plain_type(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type == FieldType.TYPE_MESSAGE:
            return dict(_WELL_KNOWN.get(field.type_name, {"type": "object"}))
        schema = dict(_SCALARS.get(field.type, {}))
        rules = _rules(field)
        if rules.format in _FORMATS:
            schema["format"] = _FORMATS[rules.format]
        return schema

    def input_schema(self, type_name: str, *, partial: bool) -> dict[str, Any]:
        """A $ref to the schema of a create (all rules) or update (PATCH) body."""
        base = type_name.rsplit(".", 1)[1].removesuffix("Input")
        name = f"{base}{'Update' if partial else 'Create'}"
        if name in self.schemas:
            return {"$ref": f"#/components/schemas/{name}"}
        self.schemas[name] = {}  # reserved first, as in output_schema
        message = self.protos.messages[type_name]
        properties: dict[str, Any] = {}
        required = []
        for field in message.field:
            rules = _rules(field)
            if (partial and rules.immutable) or (not partial and rules.update_only):
                continue
            properties[field.name] = self._input_field(field, rules, partial)
            described = self.protos.comments.get(f"{type_name}.{field.name}")
            if described:
                properties[field.name]["description"] = described
            if rules.required and not partial:
                required.append(field.name)
        schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        if required:
            schema["required"] = required
        self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}

    def _input_field(
        self, field: descriptor_pb2.FieldDescriptorProto, rules: options_pb2.FieldRules, partial: bool
    ) -> dict[str, Any]:
        if field.type == FieldType.TYPE_MESSAGE and field.type_name not in _WELL_KNOWN:
            single = self.input_schema(field.type_name, partial=partial)
        else:
            single = self._plain_type(field)
            if rules.min_length:
                single["minLength"] = rules.min_length
            if rules.max_length:
                single["maxLength"] = rules.max_length
            if rules.one_of:
                single["enum"] = list(rules.one_of)
            elif single.get("type") == "string" and "format" not in single:
                single["pattern"] = text_pattern(multiline=rules.multiline)
            for bound, key in _BOUNDS:
                if rules.HasField(bound):
                    single[key] = getattr(rules, bound)
            if rules.max_items and single.get("type") == "object":
                single["maxProperties"] = rules.max_items
        schema = single
        if field.label == FieldType.LABEL_REPEATED:
            schema = {"type": "array", "items": single}
            if rules.max_items:
                schema["maxItems"] = rules.max_items
        if rules.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema

    def inputs(self, binding: Binding) -> Inputs:
        """What a request of this route carries: path and query parameters, and its JSON body."""
        method = self.protos.methods[binding.rpc]
        request = self.protos.messages[method.input_type]
        rule = method.options.Extensions[annotations_pb2.http]
        path_params = [m.group(1) for m in _PARAM.finditer(binding.template)]
        parameters: list[Parameter] = []
        body: Parameter | None = None
        for field in request.field:
            description = self.protos.comments.get(f"{method.input_type}.{field.name}", "")
            if field.name in path_params:
                schema = dict(binding.access.surface.path_id_schema)
                parameters.append(Parameter(field.name, "path", schema, description))
            elif field.name == rule.body:
                twin = f"{method.input_type.rsplit('.', 1)[0]}.{field.name.title().replace('_', '')}Input"
                partial = binding.method == "PATCH"
                schema = (
                    self.input_schema(twin, partial=partial)
                    if twin in self.protos.messages
                    else {"type": "object"}
                )
                body = Parameter(field.name, "body", schema, description)
            elif not rule.body or rule.body != "*":
                parameters.append(Parameter(field.name, "query", self._plain_type(field), description))
        return Inputs(parameters, body)

    def operation(self, binding: Binding) -> dict[str, Any]:
        method = self.protos.methods[binding.rpc]
        comment = self.protos.comments.get(binding.rpc, "")
        summary, _, rest = comment.partition("\n")
        operation: dict[str, Any] = {
            "operationId": method.name,
            "summary": summary.strip().rstrip("."),
            "tags": [binding.service.rsplit(".", 1)[1].removesuffix("Service")],
            # Any one of the credential's schemes (none for a public route).
            "security": [{name: []} for name in binding.access.credential.security],
            "parameters": [],
        }
        if rest.strip():
            operation["description"] = rest.strip()
        if binding.access.scope:
            operation["x-required-scope"] = binding.access.scope
            scope_note = f"Requires scope `{binding.access.scope}`."
            operation["description"] = f"{operation.get('description', '')}\n\n{scope_note}".strip()
        inputs = self.inputs(binding)
        for param in inputs.parameters:
            operation["parameters"].append(
                {
                    "name": param.name,
                    "in": param.where,
                    "required": param.where == "path",
                    "schema": param.schema,
                    "description": param.description,
                }
            )
        if binding.access.conditional and binding.method != "POST":
            operation["parameters"].append(_precondition(binding.method))
        if binding.access.idempotent:
            operation["parameters"].append(_IDEMPOTENCY_KEY)
        if inputs.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": inputs.body.schema}},
            }
        if method.input_type == ".google.api.HttpBody":  # the raw body, as sent (e.g. a signed webhook)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        operation["responses"] = self._responses(binding, method)
        return operation

    def _responses(self, binding: Binding, method: descriptor_pb2.MethodDescriptorProto) -> dict[str, Any]:
        envelope = binding.access.surface.envelope
        error = {"$ref": f"#/components/schemas/{envelope.error_schema}"}
        invalid = {"$ref": f"#/components/schemas/{envelope.invalid_schema}"}
        surface = binding.access.surface
        keyed = bool(binding.access.credential.headers)
        responses: dict[str, Any] = {}
        if binding.success_status == 204:
            responses["204"] = {"description": "Deleted." if method.name.startswith("Delete") else "Done."}
        elif method.output_type == ".google.api.HttpBody":
            responses["200"] = {
                "description": "A stream of Server-Sent Events.",
                "content": {"text/event-stream": {}},
            }
        else:
            status = str(binding.success_status)
            responses[status] = {
                "description": "Created." if status == "201" else "OK.",
                "content": {
                    "application/json": {
                        "schema": self.output_schema(method.output_type, json_names=surface.json_names)
                    }
                },
            }
            if binding.access.conditional:
                responses[status]["headers"] = {"ETag": _ETAG}
            if binding.access.idempotent:
                responses[status].setdefault("headers", {})["Idempotent-Replayed"] = _REPLAYED
        if binding.access.conditional and binding.method == "GET":
            responses["304"] = {
                "description": "Not modified: If-None-Match names the current version.",
                "headers": {"ETag": _ETAG},
            }
        responses[str(envelope.invalid_status)] = {
            "description": "Invalid input; the offending fields are named (the first 50, then a count).",
            "content": {"application/json": {"schema": invalid}},
        }
        reused = "The Idempotency-Key was sent before with another request (idempotency_key_reused)."
        if binding.access.idempotent and envelope.invalid_status == 422:
            responses["422"] = {
                "description": responses["422"]["description"] + " " + reused + " Its detail is a message.",
                "content": {"application/json": {"schema": {"anyOf": [invalid, error]}}},
            }
        writes = binding.method != "GET"
        for status, text, applies in (
            # The edge reads the request before any field is checked (FastAPI would say 422 here too,
            # but cannot tell which field: the detail is one message).
            (
                "400",
                "The request could not be read: malformed JSON, or an unknown query parameter.",
                envelope.invalid_status != 400,
            ),
            ("401", "Missing, malformed, expired or revoked credential.", keyed),
            ("402", "The caller's plan allows no more of this.", surface.plans and writes),
            ("403", "The credential may not do this (a scope it lacks; another user's resource).", keyed),
            ("404", "Not found (or another tenant's).", True),
            (
                "409",
                "Conflicts with the current state (rows that block a delete, a paused instance)"
                + (
                    "; or a request with this Idempotency-Key is still running."
                    if binding.access.idempotent
                    else "."
                ),
                writes,
            ),
            (
                "413",
                "The request body is too large.",
                bool(method.options.Extensions[annotations_pb2.http].body),
            ),
            (
                "412",
                "If-Match names a version the resource is no longer at; nothing was changed.",
                binding.access.conditional and binding.method in ("PATCH", "PUT", "DELETE"),
            ),
            ("422", reused, binding.access.idempotent and envelope.invalid_status != 422),
            ("429", "Rate limit spent; see Retry-After.", True),
            ("503", "A service this route needs is unavailable; nothing was changed. Retry safe.", True),
        ):
            if applies:
                responses[status] = {"description": text, "content": {"application/json": {"schema": error}}}
        return responses


_ETAG = {
    "description": "The resource's current version, for If-None-Match and If-Match.",
    "schema": {"type": "string"},
}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "A key of your own (a UUID) naming this request: sent again within 24 hours with the same "
    "request, it is answered as the first time (status, body, headers: Idempotent-Replayed says so) and "
    "runs once, however often or concurrently it is sent (409 while the first still runs); sent with "
    "another request, it is refused (idempotency_key_reused).",
}
_REPLAYED = {
    "description": "true when this is the answer of an earlier request with the same Idempotency-Key.",
    "schema": {"type": "string"},
}


def _precondition(method: str) -> dict[str, Any]:
    """The conditional-request header a route of this method takes."""
    if method == "GET":
        return {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "An ETag of this resource: 304 without a body while it is still current.",
        }
    return {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": "An ETag of this resource: the write happens only while it is still current (412 "
        "otherwise), so two clients editing one resource cannot overwrite each other unseen.",
    }


def document(descriptor_set: Path = DESCRIPTOR_SET) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every HTTP binding in the descriptor set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    builder = Builder(Protos(files))
    paths: dict[str, dict[str, Any]] = {}
    for binding in load_bindings(descriptor_set):
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", binding.template)
        paths.setdefault(path, {})[binding.method.lower()] = builder.operation(binding)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Hydra API",
            "version": "1.0.0",
            "description": " ".join(
                [
                    *(s.summary for s in SURFACES if s.summary),
                    "Every key is tenant-scoped: another tenant's resource is 404. Rate-limited responses "
                    "carry X-RateLimit-Limit, X-RateLimit-Remaining and, on 429, Retry-After.",
                ]
            ),
        },
        "paths": dict(sorted(paths.items())),
        "webhooks": webhooks(builder),
        "components": {
            "schemas": {**dict(sorted(builder.schemas.items())), **envelopes()},
            "securitySchemes": {
                name: dict(scheme) for c in CREDENTIALS for name, scheme in c.security.items()
            },
        },
    }


def _duration(seconds: int) -> str:
    """5 s, 5 min, 2 h."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


_SIGNED = (
    "POSTed to every enabled endpoint subscribed to this type (its event_types name it, its resource's "
    '"<resource>.*", or "*"), signed per the Standard Webhooks specification: webhook-id is the event\'s '
    "id (the same on every attempt and retry), webhook-timestamp the Unix time of the attempt, and "
    'webhook-signature "v1,<base64 HMAC-SHA256 of id.timestamp.body>" under the secret (the base64 after '
    "whsec_); for 24 hours after a rotation a second signature, under the previous secret, follows a space. "
    f"Any 2xx answer within {ATTEMPT_SECONDS} seconds acknowledges it; anything else is retried after "
    + ", ".join(_duration(s) for s in RETRY_SECONDS)
    + ", and an endpoint that got nothing through all that time is disabled with a reason. Deliveries run "
    "side by side: order by timestamp, not by arrival."
)
_SIGNATURE_HEADERS = (
    ("webhook-id", "The event's id: a receiver that handled it already can tell."),
    ("webhook-timestamp", "When this attempt was signed, in Unix seconds; refuse old ones."),
    ("webhook-signature", "v1,<signature>, one per secret in use, separated by spaces."),
)


def webhooks(builder: Builder) -> dict[str, Any]:
    """Each event type tenants can receive, as OpenAPI 3.1 describes calls the API makes to its users."""
    envelope = builder.output_schema("hydra.instances.v1.Event")
    documented = {}
    for event in sorted(EVENT_TYPES.values(), key=lambda t: t.name):
        data = builder.output_schema(event.data)
        if event.omitted:
            data = {"allOf": [data], "description": f"Without {', '.join(event.omitted)}."}
        payload = {
            "allOf": [
                envelope,
                {"type": "object", "properties": {"type": {"const": event.name}, "data": data}},
            ]
        }
        documented[event.name] = {
            "post": {
                "operationId": "webhook_" + event.name.replace(".", "_"),
                "summary": event.description,
                "description": _SIGNED,
                "parameters": [
                    {
                        "name": name,
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": text,
                    }
                    for name, text in _SIGNATURE_HEADERS
                ],
                "requestBody": {"required": True, "content": {"application/json": {"schema": payload}}},
                "responses": {"2XX": {"description": "Received."}},
            }
        }
    return documented


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Hydra API - {title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body>{body}</body></html>
"""
SWAGGER_UI = _PAGE.format(
    title="Swagger UI",
    body=(
        '<div id="swagger-ui"></div>'
        '<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">'
        '<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>'
        "<script>SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', persistAuthorization: true})"
        "</script>"
    ),
)
REDOC = _PAGE.format(
    title="ReDoc",
    body=(
        '<redoc spec-url="/openapi.json"></redoc>'
        '<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>'
    ),
)


MANIFEST_SCHEMA = ROOT / "protos/hydra/workflows/v1/manifest-v1.0.schema.json"
MANIFEST_SCHEMA_PATH = "/schemas/workflow/v1.0.json"


# The document as YAML, kept in the repository for readers and tools that take a file (make openapi; a
# test keeps it equal to the protos).
COMMITTED_YAML = ROOT / "docs" / "openapi.yaml"


def as_yaml(doc: dict[str, Any]) -> str:
    """The document in YAML, in the JSON document's key order (it reads back equal to it)."""
    text: str = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)
    return text


def write(directory: Path, descriptor_set: Path = DESCRIPTOR_SET) -> dict[str, Path]:
    """Writes openapi.json, the same document as openapi.yaml, and the two viewer pages; returns
    {url path: file}."""
    directory.mkdir(parents=True, exist_ok=True)
    doc = document(descriptor_set)
    files = {
        "/openapi.json": (directory / "openapi.json", json.dumps(doc, indent=1)),
        "/openapi.yaml": (directory / "openapi.yaml", as_yaml(doc)),
        "/docs": (directory / "docs.html", SWAGGER_UI),
        "/redoc": (directory / "redoc.html", REDOC),
        # The workflow manifest's JSON Schema, at the path of its $id.
        MANIFEST_SCHEMA_PATH: (directory / "workflow-manifest-v1.0.json", MANIFEST_SCHEMA.read_text()),
    }
    for path, text in files.values():
        path.write_text(text)
    return {url: path for url, (path, _text) in files.items()}


def main() -> None:
    """Writes the document's committed YAML copy (`make openapi`)."""
    COMMITTED_YAML.parent.mkdir(exist_ok=True)
    COMMITTED_YAML.write_text(as_yaml(document(DESCRIPTOR_SET)))
    print(f"wrote {COMMITTED_YAML.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
