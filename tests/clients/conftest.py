"""Fixtures for the client tests: a fake Ollama on loopback and a proxy in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.fake_ollama import FakeOllama
from testing.serving import ServerThread


@pytest.fixture(scope="session")
def fake_ollama_server() -> Iterator[tuple[FakeOllama, ServerThread]]:
    fake = FakeOllama()
    with ServerThread(fake.app()) as server:
        yield fake, server


@pytest.fixture()
def ollama_upstream(fake_ollama_server: tuple[FakeOllama, ServerThread]) -> FakeOllama:
    fake, _ = fake_ollama_server
    fake.clear()
    return fake


@pytest.fixture()
def ollama_proxy(make_proxy, fake_ollama_server) -> ServerThread:
    """memproxy with both upstreams fakes: OpenAI-compatible and native Ollama."""
    return make_proxy(ollama={"base_url": fake_ollama_server[1].url})
