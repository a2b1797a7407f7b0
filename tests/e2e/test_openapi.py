"""``/docs`` shows real request bodies, though routes read the raw body themselves."""

from __future__ import annotations

import warnings

import httpx

BODIES = {
    ("/v1/chat/completions", "post"): {"model", "messages"},
    ("/v1/responses", "post"): {"model", "input", "instructions"},
    ("/v1/embeddings", "post"): {"model", "input"},
    ("/api/chat", "post"): {"model", "messages"},
    ("/api/generate", "post"): {"model", "prompt", "system"},
    ("/v1/memories", "post"): {"user", "memories"},
}


def test_openapi_documents_every_request_body(proxy):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. duplicate operation ids
        spec = httpx.get(f"{proxy.url}/openapi.json", timeout=30).json()
    for (path, method), fields in BODIES.items():
        body = spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        if "$ref" in body:  # FastAPI-typed routes reference components
            body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
        assert fields <= set(body["properties"]), (path, sorted(body["properties"]))
    messages = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in str(messages), "nested models are inlined"
    assert messages["properties"]["messages"]["items"]["properties"]["role"]["enum"]
