"""Validate bodies against the official OpenAI OpenAPI description.

Loads ``../shared/specs/openai-openapi.yaml`` once (cached as JSON under
``.pytest_cache``), applies the two normalisations its README names
(``nullable: true`` -> ``anyOf [..., null]``; stream chunks may carry a null
``finish_reason``) and validates with JSON Schema 2020-12.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "specs" / "openai-openapi.yaml"
CACHE_DIR = ROOT / ".pytest_cache" / "openai-spec"
URI = "urn:openai-openapi"


def validate(schema_name: str, instance: Any) -> None:
    """Raise ``jsonschema.ValidationError`` if ``instance`` breaks the schema."""
    _validator(schema_name).validate(instance)


def errors(schema_name: str, instance: Any) -> list[str]:
    """Every violation as ``path: message`` (empty when valid)."""
    return [f"{list(e.absolute_path)}: {e.message}" for e in _validator(schema_name).iter_errors(instance)]


def assert_valid(schema_name: str, instance: Any) -> None:
    """Like :func:`validate`, listing every violation and the instance on failure."""
    problems = errors(schema_name, instance)
    assert not problems, f"{schema_name} violations: {problems}\ninstance: {instance}"


@functools.cache
def _validator(schema_name: str) -> Draft202012Validator:
    document = _document()
    if schema_name not in document["components"]["schemas"]:
        raise KeyError(f"no schema named {schema_name}")
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource(URI, resource)
    return Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema_name}"}, registry=registry)


@functools.cache
def _document() -> dict[str, Any]:
    raw = SPEC.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    cached = CACHE_DIR / f"{digest}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = _normalise(yaml.load(raw, Loader=loader))
    _allow_null_stream_finish_reason(document)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(document, default=str))  # the YAML holds a few dates
    return document


def _normalise(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _normalise(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _allow_null_stream_finish_reason(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["CreateChatCompletionStreamResponse"]
    choice = schema["properties"]["choices"]["items"]
    reason = choice["properties"]["finish_reason"]
    choice["properties"]["finish_reason"] = {"anyOf": [copy.deepcopy(reason), {"type": "null"}]}
