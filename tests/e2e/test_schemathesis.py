"""A bounded schemathesis run against ``/openapi.json``: no input gives a 5xx.

Positive and negative (schema-violating) cases for the chat, Responses and
memory endpoints, against the real app on a real port with the fake
upstream. Bounded by example count (``EXAMPLES`` per operation and mode), not
by time; hypothesis' database is off so every run is the same size.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

EXAMPLES = 12
OPERATIONS = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/memories"),
    ("POST", "/v1/memories/search"),
    ("GET", "/v1/memories"),
    ("PATCH", "/v1/memories/{memory_id}"),
]


@pytest.fixture(scope="module")
def schema_proxy(make_proxy_module):
    return make_proxy_module()


@pytest.fixture(scope="module")
def make_proxy_module(tmp_path_factory, embedder, fake_upstream):
    from proxy.app import create_app
    from proxy.config import load_settings
    from testing.serving import ServerThread

    servers: list[ServerThread] = []

    def factory() -> ServerThread:
        settings = load_settings(
            data_dir=str(tmp_path_factory.mktemp("schemathesis")),
            upstream={"base_url": f"{fake_upstream[1].url}/v1", "provider": "openai"},
            memory={"recall_deadline_ms": 10_000},
        )
        server = ServerThread(create_app(settings, embedder=embedder)).start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_input_gives_a_server_error(schema_proxy, method, path, mode):
    schema = schemathesis.openapi.from_url(f"{schema_proxy.url}/openapi.json")
    operation = schema[path][method]
    responses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(base_url=schema_proxy.url, timeout=60)
        responses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    run()
    assert responses and all(status < 500 for status in responses), responses
