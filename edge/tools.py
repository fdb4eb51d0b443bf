"""Every HTTP route of a keyed surface as an MCP tool, generated from the descriptor set by the builder
that writes the OpenAPI document: the tool's input schema is the route's parameters and body with the same
field rules the services validate by, its description the proto comment, and its annotations follow
from the HTTP method. Nothing about a tool is written by hand."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from hydra.options.v1 import options_pb2

from edge.bindings import DESCRIPTOR_SET, Binding, load_bindings
from edge.openapi import Builder, Protos
from services.common.identity import has_scope
from services.common.surfaces import Surface

_COMPONENTS = "#/components/schemas/"
_DEFS = "#/$defs/"
# What an MCP client may assume of a tool, from the HTTP method of its route.
_HINTS: dict[str, dict[str, bool]] = {
    "GET": {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True},
    "POST": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
    "PUT": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
    "PATCH": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
    "DELETE": {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
}


_EFFECTS = {
    options_pb2.DEPENDENT_EFFECT_BLOCKS: "blocks",  # the delete is refused while any remain
    options_pb2.DEPENDENT_EFFECT_DELETED: "deleted",
    options_pb2.DEPENDENT_EFFECT_DETACHED: "detached",
}


@dataclass(frozen=True)
class Dependent:
    """Rows a delete touches: what the list tool finds with `filter` set to the deleted row's id."""

    list_tool: str
    filter: str
    id_field: str
    effect: str  # blocks | deleted | detached


@dataclass(frozen=True)
class Tool:
    """One route as an MCP tool."""

    name: str  # list_leads
    title: str  # the proto comment's first line
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, bool]
    binding: Binding
    body: str | None  # the request field the JSON body fills, if the route takes one
    dependents: tuple[Dependent, ...] = ()

    @property
    def scope(self) -> str:
        return self.binding.access.scope

    @property
    def writes(self) -> bool:
        return not self.annotations["readOnlyHint"]


def tool_name(rpc: str) -> str:
    """hydra.crm.v1.LeadService.ListLeads → list_leads."""
    method = rpc.rsplit(".", 1)[1]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", method).lower()


def tools(surface: Surface, descriptor_set: Path = DESCRIPTOR_SET) -> list[Tool]:
    """The tools of every route a key of `surface` opens (not its public or streaming ones)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    builder = Builder(Protos(files))
    dependents = _dependents(files)
    made: dict[str, Tool] = {}
    for binding in load_bindings(descriptor_set):
        access = binding.access
        if access.surface is not surface or access.credential.key_kind is None or binding.streaming:
            continue
        name = tool_name(binding.rpc)
        if name in made:
            raise ValueError(f"two routes of the {surface.name} surface would be tool {name!r}")
        made[name] = _tool(name, binding, builder, dependents.get(binding.rpc, ()))
    for tool in made.values():
        for dependent in tool.dependents:
            lister = made.get(dependent.list_tool)
            if lister is None or dependent.filter not in lister.input_schema["properties"]:
                raise ValueError(f"{tool.binding.rpc}: no tool {dependent.list_tool} with {dependent.filter}")
            if dependent.id_field not in tool.input_schema["properties"]:
                raise ValueError(f"{tool.binding.rpc}: no field {dependent.id_field}")
    return list(made.values())


def _dependents(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, tuple[Dependent, ...]]:
    """Each RPC's declared dependents (the dependents method option), by the RPC's full name."""
    found: dict[str, tuple[Dependent, ...]] = {}
    for file in files:
        for service in file.service:
            for method in service.method:
                declared = method.options.Extensions[options_pb2.dependents]
                if declared:
                    found[f"{file.package}.{service.name}.{method.name}"] = tuple(
                        Dependent(tool_name(d.list_rpc), d.filter, d.id_field or "id", _EFFECTS[d.effect])
                        for d in declared
                    )
    return found


def visible(every: Iterable[Tool], scopes: Iterable[str]) -> list[Tool]:
    """The tools a key with `scopes` may call."""
    held = frozenset(scopes)
    return [tool for tool in every if not tool.scope or has_scope(held, tool.scope)]


def _tool(name: str, binding: Binding, builder: Builder, dependents: tuple[Dependent, ...]) -> Tool:
    comment = builder.protos.comments.get(binding.rpc, "")
    title = comment.partition("\n")[0]
    inputs = builder.inputs(binding)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inputs.parameters:
        properties[param.name] = (
            {**param.schema, "description": param.description} if param.description else param.schema
        )
        if param.where == "path":
            required.append(param.name)
    if inputs.body is not None:
        properties[inputs.body.name] = inputs.body.schema
        required.append(inputs.body.name)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    schema = _self_contained(schema, builder.schemas)
    scope_note = f" Requires scope {binding.access.scope}." if binding.access.scope else ""
    return Tool(
        name=name,
        title=title.strip().rstrip("."),
        description=(comment.replace("\n", " ").strip() + scope_note).strip(),
        input_schema=schema,
        annotations=dict(_HINTS[binding.method]),
        binding=binding,
        body=inputs.body.name if inputs.body is not None else None,
        dependents=dependents,
    )


def _self_contained(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The schema with the component schemas it refers to (and theirs) under $defs: a tool's input
    schema stands alone."""
    wanted: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_COMPONENTS):
                name = ref[len(_COMPONENTS) :]
                if name not in wanted:
                    wanted.append(name)
                    collect(components[name])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    whole = {**schema, "$defs": {name: components[name] for name in sorted(wanted)}} if wanted else schema
    contained: dict[str, Any] = json.loads(json.dumps(whole).replace(f'"{_COMPONENTS}', f'"{_DEFS}'))
    return contained
