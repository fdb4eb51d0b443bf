"""Workflow manifests: checked against the published JSON Schema (v1.0), and versions bumped by change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from services.common.errors import FieldError, Loc, ValidationError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "protos/hydra/workflows/v1/manifest-v1.0.schema.json"
SCHEMA_URL = "https://hydra.opiusai.com/schemas/workflow/v1.0.json"
FIRST_VERSION = "1.0.0"
_MOST_LISTED = 20
_VALIDATOR = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def check(manifest: Any, loc: Loc = ("body", "manifest")) -> None:
    """Raises a validation error naming each failing path of `manifest` (at most the first 20)."""
    errors = [
        FieldError((*loc, *error.absolute_path), _message(error), f"manifest.{error.validator}")
        for error in sorted(_VALIDATOR.iter_errors(manifest), key=lambda e: list(map(str, e.path)))
    ][:_MOST_LISTED]
    if not errors:
        errors = _step_order_errors(manifest, loc)
    if errors:
        raise ValidationError(errors, "The manifest does not follow manifest schema v1.0.")


def _message(error: Any) -> str:
    # jsonschema quotes the whole offending value; a manifest's strings can be long.
    message = str(error.message)
    return message if len(message) <= 300 else message[:297] + "..."


def _step_order_errors(manifest: dict[str, Any], loc: Loc) -> list[FieldError]:
    """Step ids must be unique, and a step may depend only on steps before it."""
    errors = []
    seen: set[str] = set()
    for index, step in enumerate(manifest["steps"]):
        where = (*loc, "steps", index)
        if step["id"] in seen:
            errors.append(
                FieldError((*where, "id"), f"Step id {step['id']!r} is used twice", "manifest.unique")
            )
        for dependency in step.get("depends_on", []):
            if dependency not in seen:
                errors.append(
                    FieldError(
                        (*where, "depends_on"),
                        f"{dependency!r} is not an earlier step",
                        "manifest.depends_on",
                    )
                )
        seen.add(step["id"])
    return errors


def next_version(current: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The version after a manifest change: major when a step or input goes, minor when one comes,
    patch for any other change; `current` when nothing changed."""
    if before == after:
        return current
    major, minor, patch = (int(part) for part in current.split("."))
    was, now = _named_parts(before), _named_parts(after)
    if was - now:
        return f"{major + 1}.0.0"
    if now - was:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _named_parts(manifest: dict[str, Any]) -> set[str]:
    steps = {f"step:{step['id']}" for step in manifest.get("steps", [])}
    return steps | {f"input:{item['name']}" for item in manifest.get("inputs", [])}
