"""Every Python snippet of the README's "Use it with…" section, run against a live memproxy.

The snippets name ``http://127.0.0.1:8000``; the test swaps in the proxy's
real address (its Ollama side is the fake Ollama). The LiteLLM proxy
``config.yaml`` is checked too: its handler path resolves and its
``model_list`` drives a LiteLLM Router.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from adapters.litellm_provider import MemproxyLLM  # noqa: E402
from tests.conftest import wait_for_memories  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = "http://127.0.0.1:8000"


def section() -> str:
    text = README.read_text()
    start = text.index("## Use it with")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


PYTHON = blocks("python")


def test_the_section_has_every_client():
    text = section()
    for name in ("OpenAI SDK (Python)", "JavaScript", "LiteLLM SDK", "LiteLLM proxy", "Ollama", "Open WebUI", "LangChain", "curl"):
        assert name in text, name
    assert len(PYTHON) == 4


@pytest.mark.parametrize("index", range(len(PYTHON)), ids=lambda i: PYTHON[i].split("\n")[0][:40])
def test_python_snippet_runs(index, ollama_proxy, upstream, ollama_upstream):
    code = PYTHON[index].replace(BASE, ollama_proxy.url)
    exec(compile(code, f"README snippet {index}", "exec"), {"__name__": "readme_snippet"})
    assert upstream.requests or ollama_upstream.requests
    assert wait_for_memories(ollama_proxy.url, "alice", 1)


def test_litellm_proxy_config(proxy, upstream):
    (config,) = blocks("yaml")
    settings = yaml.safe_load(config.replace(BASE, proxy.url))
    entry = settings["litellm_settings"]["custom_provider_map"][0]
    module, _, attribute = entry["custom_handler"].rpartition(".")
    handler = getattr(importlib.import_module(module), attribute)
    assert entry["provider"] == "memproxy" and isinstance(handler, MemproxyLLM)
    providers = [p for p in litellm.custom_provider_map or [] if p.get("provider") != "memproxy"]
    litellm.custom_provider_map = [*providers, {"provider": "memproxy", "custom_handler": handler}]
    router = litellm.Router(model_list=settings["model_list"])
    for name in ("my-model", "my-model-plain"):
        reply = router.completion(model=name, user="alice", messages=[{"role": "user", "content": f"via {name}"}])
        assert reply.choices[0].message.content == f"Echo: via {name}"
    assert wait_for_memories(proxy.url, "alice", 1)
