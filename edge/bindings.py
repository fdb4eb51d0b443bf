"""Every HTTP binding of every hydra RPC, read from the descriptor set, with its parsed access policy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from services.common.access import MethodAccess, parse_access
from services.common.surfaces import SERVICE_AUTH_MODES, surface_at

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "gen" / "hydra.pb"


@dataclass(frozen=True)
class Binding:
    """One HTTP binding of one RPC, with the RPC's access policy."""

    rpc: str  # hydra.crm.v1.LeadService.GetLead
    service: str  # hydra.crm.v1.LeadService
    cluster: str  # crm
    method: str  # GET
    template: str  # /api/v1/leads/{id}
    access: MethodAccess  # its surface, credential, scope and rate limits
    streaming: bool
    success_status: int = 200  # 201 for creates, 204 for empty answers: the edge sets it, not the service
    # The most bytes a valid JSON body can take, from the input's field rules; None: no body, or unbounded.
    body_bytes: int | None = None
    takes_body: bool = False

    @property
    def path_regex(self) -> str:
        return template_regex(self.template)


def template_regex(template: str) -> str:
    """An anchored regex for a google.api.http path template (query string excluded by Envoy)."""
    out = []
    for part in re.split(r"(\{[^}]*\})", template):
        if part.startswith("{"):
            out.append(".+" if part.endswith("=**}") else "[^/]+")
        else:
            out.append(re.escape(part))
    return "^" + "".join(out) + "$"


def _verb(rule: http_pb2.HttpRule) -> tuple[str, str]:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    if kind is None:
        raise ValueError("HttpRule without a pattern")
    return kind.upper(), getattr(rule, kind)


# A character of a JSON string takes at most 6 bytes (a \uXXXX escape; UTF-8 takes at most 4).
JSON_BYTES_PER_CHAR = 6
_NUMBER_BYTES = 32  # a JSON number or boolean, with room to spare
_PUNCTUATION_BYTES = 8  # quotes, colon, comma and spaces around one key or item
_FORMAT_CHARS = {
    options_pb2.StringFormat.STRING_FORMAT_UUID: 36,
    options_pb2.StringFormat.STRING_FORMAT_DATE: 10,
}
_FieldType = descriptor_pb2.FieldDescriptorProto


def input_twin(request_type: str, body_field: str) -> str:
    """The message whose fields and rules a Struct body follows: CreateLeadRequest.lead → LeadInput."""
    package = request_type.rsplit(".", 1)[0]
    return f"{package}.{body_field.title().replace('_', '')}Input"


def body_bytes(
    request_type: str, body_field: str, messages: dict[str, descriptor_pb2.DescriptorProto]
) -> int | None:
    """The most bytes a valid JSON body can take, or None when its rules leave a field unbounded."""
    twin = messages.get(input_twin(request_type, body_field))
    return None if twin is None else _object_bytes(twin, messages)


def _object_bytes(
    message: descriptor_pb2.DescriptorProto, messages: dict[str, descriptor_pb2.DescriptorProto]
) -> int | None:
    total = 2
    for field in message.field:
        value = _field_bytes(field, messages)
        if value is None:
            return None
        total += len(field.name) + _PUNCTUATION_BYTES + value
    return total


def _field_bytes(
    field: descriptor_pb2.FieldDescriptorProto, messages: dict[str, descriptor_pb2.DescriptorProto]
) -> int | None:
    rules = field.options.Extensions[options_pb2.rules]
    if field.type == _FieldType.TYPE_STRING:
        chars = rules.max_length or _FORMAT_CHARS.get(rules.format, 0)
        chars = chars or max((len(choice) for choice in rules.one_of), default=0)
        single = chars * JSON_BYTES_PER_CHAR + 2 if chars else None
    elif field.type == _FieldType.TYPE_MESSAGE:
        nested = messages.get(field.type_name)  # well-known types (Struct, Value) are not bounded by rules
        single = None if nested is None else _object_bytes(nested, messages)
    else:
        single = _NUMBER_BYTES
    if single is None or field.label != _FieldType.LABEL_REPEATED:
        return single
    return rules.max_items * (single + _PUNCTUATION_BYTES) + 2 if rules.max_items else None


def load_bindings(descriptor_set: Path = DESCRIPTOR_SET) -> list[Binding]:
    """Every HTTP binding of every hydra RPC in the descriptor set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    messages = {f".{f.package}.{m.name}": m for f in files.file for m in f.message_type}
    bindings = []
    for file in files.file:
        if not file.package.startswith("hydra."):
            continue
        cluster = file.package.split(".")[1]
        for service in file.service:
            service_name = f"{file.package}.{service.name}"
            for method in service.method:
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rpc = f"{service_name}.{method.name}"
                access = parse_access(f"/{service_name}/{method.name}", method.options, service.options)
                surface = access.surface
                if access.auth in SERVICE_AUTH_MODES or not surface.prefixes:
                    raise ValueError(f"{rpc}: an RPC of the {surface.name} surface has no HTTP binding")
                rule = method.options.Extensions[annotations_pb2.http]
                status = surface.success_status(
                    method.name,
                    has_output=bool(messages[method.output_type].field),
                    streaming=method.server_streaming,
                )
                for each in [rule, *rule.additional_bindings]:
                    verb, template = _verb(each)
                    if surface_at(template) is not surface:
                        raise ValueError(
                            f"{rpc}: {template} lies under the {surface_at(template).name} surface's "
                            f"prefixes, not the {surface.name} surface's {surface.prefixes}"
                        )
                    body = body_bytes(method.input_type, each.body, messages) if each.body else None
                    bindings.append(
                        Binding(
                            rpc,
                            service_name,
                            cluster,
                            verb,
                            template,
                            access,
                            method.server_streaming,
                            status,
                            body,
                            bool(each.body),
                        )
                    )
    seen: dict[tuple[str, str], str] = {}
    for b in bindings:
        if (b.method, b.path_regex) in seen:
            raise ValueError(f"{b.rpc} and {seen[(b.method, b.path_regex)]} bind {b.method} {b.template}")
        seen[(b.method, b.path_regex)] = b.rpc
    return bindings
