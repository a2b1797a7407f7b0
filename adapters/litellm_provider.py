"""memproxy as a LiteLLM provider: ``litellm.completion(model="memproxy/<model>", ...)``.

    from adapters.litellm_provider import register
    register()  # adds "memproxy" to litellm.custom_provider_map
    litellm.completion(model="memproxy/gpt-4o-mini", api_base="http://127.0.0.1:8000/v1",
                       messages=[...], user="alice")

``<model>`` is the model memproxy forwards upstream. ``api_base`` defaults to
``$MEMPROXY_API_BASE`` or ``http://127.0.0.1:8000/v1``; the memory owner is
``user=`` or an ``X-Memory-User`` header (``extra_headers``). Sync and async,
streaming and not, and LiteLLM Router / proxy ``model_list`` entries
(``model: memproxy/<model>``) all work. For the LiteLLM proxy's
``config.yaml``, point ``litellm_settings.custom_provider_map`` at
:data:`memproxy_llm` (see the README).

Calls go over memproxy's OpenAI-compatible API through LiteLLM's own
``openai/`` provider, so every OpenAI parameter maps exactly as it would
for OpenAI. Errors surface as LiteLLM's usual exceptions. Offline, set
``LITELLM_LOCAL_MODEL_COST_MAP=True`` before importing litellm (this module
leaves your environment alone).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.llms.openai import (
    ChatCompletionToolCallChunk,
    ChatCompletionToolCallFunctionChunk,
    ChatCompletionUsageBlock,
)
from litellm.types.utils import GenericStreamingChunk, ModelResponse

PROVIDER = "memproxy"
DEFAULT_API_BASE = "http://127.0.0.1:8000/v1"
# litellm-internal entries of optional_params that are not OpenAI request fields
_INTERNAL = frozenset({"stream", "extra_headers", "headers", "api_base", "api_key", "timeout"})


class MemproxyLLM(CustomLLM):
    """Stateless: one instance serves every call (sync, async, streaming)."""

    def completion(self, model: str, messages: list, api_base: str, *args: Any, **kwargs: Any) -> ModelResponse:
        return litellm.completion(**_call(model, messages, api_base, kwargs, stream=False))

    async def acompletion(self, model: str, messages: list, api_base: str, *args: Any, **kwargs: Any) -> ModelResponse:
        return await litellm.acompletion(**_call(model, messages, api_base, kwargs, stream=False))

    def streaming(
        self, model: str, messages: list, api_base: str, *args: Any, **kwargs: Any
    ) -> Iterator[GenericStreamingChunk]:
        for chunk in litellm.completion(**_call(model, messages, api_base, kwargs, stream=True)):
            yield from _generic_chunks(chunk)

    async def astreaming(  # type: ignore[override]  # litellm types it as a coroutine but iterates it
        self, model: str, messages: list, api_base: str, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        stream = await litellm.acompletion(**_call(model, messages, api_base, kwargs, stream=True))
        async for chunk in stream:
            for generic in _generic_chunks(chunk):
                yield generic


memproxy_llm = MemproxyLLM()


def register() -> None:
    """Make ``memproxy/<model>`` resolvable by litellm (idempotent)."""
    providers = litellm.custom_provider_map or []
    if not any(entry.get("provider") == PROVIDER for entry in providers):
        litellm.custom_provider_map = [*providers, {"provider": PROVIDER, "custom_handler": memproxy_llm}]


def _call(model: str, messages: list, api_base: str | None, kwargs: dict[str, Any], *, stream: bool) -> dict[str, Any]:
    optional = {k: v for k, v in (kwargs.get("optional_params") or {}).items() if k not in _INTERNAL}
    headers = dict(kwargs.get("headers") or {})
    user = optional.get("user") or _user_of(kwargs.get("logging_obj"))
    if isinstance(user, str) and user and not any(k.lower() == "x-memory-user" for k in headers):
        # litellm strips ``user`` from custom providers' params (and forwards it only for
        # OpenAI catalog model names); as the X-Memory-User header it always arrives
        headers["X-Memory-User"] = user
    call: dict[str, Any] = {
        **optional,
        "model": f"openai/{model}",
        "messages": messages,
        "api_base": api_base or os.environ.get("MEMPROXY_API_BASE") or DEFAULT_API_BASE,
        "api_key": kwargs.get("api_key") or os.environ.get("MEMPROXY_API_KEY") or "memproxy",
        "stream": stream,
    }
    if headers:
        call["extra_headers"] = headers
    if kwargs.get("timeout") is not None:
        call["timeout"] = kwargs["timeout"]
    if stream:
        call["stream_options"] = {"include_usage": True}
    return call


def _user_of(logging_obj: Any) -> str | None:
    """The caller's ``user=``, which litellm keeps only on the call's logging object."""
    details = getattr(logging_obj, "model_call_details", None)
    user = details.get("user") if isinstance(details, dict) else None
    return user if isinstance(user, str) else None


def _generic_chunks(chunk: Any) -> Iterator[GenericStreamingChunk]:
    """One OpenAI stream chunk (a litellm ``ModelResponseStream``) as generic chunks."""
    usage = getattr(chunk, "usage", None)
    usage_block: ChatCompletionUsageBlock | None = None
    if usage:
        usage_block = ChatCompletionUsageBlock(
            prompt_tokens=usage.prompt_tokens or 0,
            completion_tokens=usage.completion_tokens or 0,
            total_tokens=usage.total_tokens or 0,
        )
    choices = chunk.choices or []
    if not choices:
        yield GenericStreamingChunk(text="", is_finished=False, finish_reason="", usage=usage_block, index=0, tool_use=None)
        return
    choice = choices[0]
    delta = choice.delta
    finish = choice.finish_reason or ""
    calls = list(getattr(delta, "tool_calls", None) or [])
    text = getattr(delta, "content", None) or ""
    if not calls:
        yield GenericStreamingChunk(
            text=text, is_finished=bool(finish), finish_reason=finish, usage=usage_block, index=0, tool_use=None
        )
        return
    for position, call in enumerate(calls):
        last = position == len(calls) - 1
        tool_use = ChatCompletionToolCallChunk(
            id=call.id,
            type="function",
            function=ChatCompletionToolCallFunctionChunk(name=call.function.name, arguments=call.function.arguments or ""),
            index=call.index,
        )
        yield GenericStreamingChunk(
            text=text if position == 0 else "",
            is_finished=bool(finish) and last,
            finish_reason=finish if last else "",
            usage=usage_block if last else None,
            index=0,
            tool_use=tool_use,
        )
