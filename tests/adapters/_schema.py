"""Minimal OpenAI-schema validation for the adapter tests.

Loads ``/work/shared/specs/openai-openapi.yaml`` (or ``$OPENAI_SPEC``) once,
rewrites ``nullable: true`` as ``anyOf [..., null]``, allows a null
``finish_reason`` in stream chunks (see the spec README), and validates with
JSON Schema 2020-12. Meant to be replaced by the shared ``tests/openai_schema``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_URI = "urn:openai-openapi"


def spec_path() -> Path:
    default = Path(__file__).resolve().parents[3] / "shared" / "specs" / "openai-openapi.yaml"
    return Path(os.environ.get("OPENAI_SPEC", str(default)))


def schema_errors(schema_name: str, instance: Any) -> list[str]:
    """Every violation as ``path: message`` (empty when valid)."""
    return [
        f"{list(e.absolute_path)}: {e.message}" for e in _validator(schema_name).iter_errors(instance)
    ]


def assert_valid(schema_name: str, instance: Any) -> None:
    problems = schema_errors(schema_name, instance)
    assert not problems, f"{schema_name} violations: {problems}\ninstance: {instance}"


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    document = _document()
    if schema_name not in document["components"]["schemas"]:
        raise KeyError(schema_name)
    registry = Registry().with_resource(
        _URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{schema_name}"}, registry=registry)


@functools.cache
def _document() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = _denullable(yaml.load(spec_path().read_bytes(), Loader=loader))
    choice = document["components"]["schemas"]["CreateChatCompletionStreamResponse"]["properties"][
        "choices"
    ]["items"]
    reason = choice["properties"]["finish_reason"]
    choice["properties"]["finish_reason"] = {"anyOf": [reason, {"type": "null"}]}
    return document


def _denullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_denullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _denullable(value) for key, value in node.items() if key != "nullable"}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out
