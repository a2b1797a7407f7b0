"""Test infrastructure shared by the test suite and the benchmarks.

Real servers on loopback speaking the real wire protocols, never mocks:

- :mod:`testing.serving`: :class:`~testing.serving.ServerThread` (an ASGI app
  on a real uvicorn server in a thread) and :func:`~testing.serving.free_port`;
- :mod:`testing.fake_openai`: one configurable OpenAI-compatible upstream
  (chat completions, Responses API, embeddings, models);
- :mod:`testing.fake_ollama`: the native Ollama API (``/api/*``, NDJSON);
- :mod:`testing.fake_anthropic`: Anthropic's ``/v1/messages``;
- :mod:`testing.processes`: ``memproxy serve`` and ``chroma run`` as
  subprocesses, started on free ports and awaited until healthy.

This package lives only in the source tree: it is not part of the wheel
(``pyproject.toml`` packages only ``proxy``, ``memory``, ``adapters`` and
``bench``). Tests import it through pytest's ``pythonpath``; benchmarks that
need a fake (``memproxy bench latency``) import it lazily and must run from a
source checkout (``make bench-latency``, or ``PYTHONPATH=.`` at the repo root).
"""
