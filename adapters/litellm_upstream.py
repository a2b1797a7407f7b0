"""Any provider litellm supports (Anthropic, Gemini, Bedrock, Azure, Ollama ...).

Behaviour:

* **Model.** ``upstream.model`` when set (e.g. ``anthropic/claude-...``),
  else the client's ``model``. ``upstream.base_url`` becomes litellm's
  ``api_base``; the key is ``upstream.api_key`` or the client's bearer token.
* **Pass-through.** Every client field goes to ``litellm.acompletion`` with
  ``drop_params=False``, so a field the provider cannot take is an error from
  litellm (400), never silently lost. Two exceptions, both for safety:
  fields litellm reads as its *own* configuration (``api_base``,
  ``api_key``, ``mock_response``, ``num_retries``, callbacks' credentials ...;
  litellm's ``all_litellm_params`` besides OpenAI's ``metadata``) are
  removed, so a client cannot redirect the proxy's key elsewhere, and
  ``timeout`` is ours.
* For OpenAI-compatible providers (``openai/...``, ``hosted_vllm/...``)
  ``metadata`` and ``user`` travel in ``extra_body``: litellm would otherwise
  keep ``metadata`` for its own logging and drop ``user`` for models outside
  OpenAI's catalogue.
* **No retries** (``max_retries=0``): the client's SDK already retries, and
  retries here would multiply with its own.
* litellm 1.106's MCP gateway is bypassed (``_skip_mcp_handler``): it would
  import the optional ``mcp`` package for every request with ``tools`` and
  route ``type: mcp`` tools to a litellm proxy we do not run.
* **Errors** keep the provider's status code and its OpenAI error fields
  (message, type, code, param) when it sent them; timeouts become
  :class:`UpstreamTimeout` (504); refused / broken connections
  :class:`UpstreamUnavailable` (502). :meth:`open_stream` waits for the
  first chunk, so errors surface before any chunk is returned.
* **Output** goes through :mod:`adapters.normalize`; litellm's final usage
  chunk (which it gives an empty choice) gets ``choices: []`` as OpenAI sends.
* **Prompt caching.** The proxy keeps the core memory block first and
  byte-stable, so providers' automatic prefix caching applies. For Anthropic
  models (``anthropic/...`` or a name starting with ``claude``) the system
  message holding the core block is sent as text parts, the first ending
  with the block and marked ``cache_control: {"type": "ephemeral"}``
  (litellm passes it on as an Anthropic cache breakpoint), so the
  ``[system prompt + core]`` prefix is cached and per-request recalled
  memories after it are not part of the cached prefix.
* litellm is imported lazily (about 1.6 s) with its bundled price map and
  tiktoken files, so it never reaches the network for them.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

from adapters.base import CallContext, close_stream, configured_models
from adapters.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from adapters.normalize import normalize_chunk, normalize_completion
from adapters.settings import UpstreamSettings

# Providers that speak OpenAI's wire format, where extra_body reaches the server as is.
_OPENAI_WIRE_PROVIDERS = frozenset({"openai", "openai_like", "custom_openai", "hosted_vllm", "text-completion-openai"})
# OpenAI request fields that litellm would otherwise consume or drop for such providers.
_VIA_EXTRA_BODY = ("metadata", "user")
# Request keys that are ours, or litellm's own configuration, whatever the client says.
_RESERVED = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "timeout",
        "extra_headers",
        "headers",
        "model_list",
        "drop_params",
        "additional_drop_params",
        "max_retries",
        "num_retries",
        "custom_llm_provider",
        "client",
        "shared_session",
        "deployment_id",
    }
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_LITELLM_PREFIX = re.compile(r"^(?:litellm\.\w+:\s*)?(?:\w+(?:Error|Exception):\s*)*(?:\w*Exception - )?")


class LiteLLMUpstream:
    """An :class:`adapters.base.Upstream` calling ``litellm.acompletion``."""

    name = "litellm"

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings

    async def warmup(self) -> None:
        """Import litellm now (seconds) instead of on the first request."""
        await _litellm()

    async def chat(self, body: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        litellm = await _litellm()
        kwargs = self.completion_kwargs(litellm, body, ctx, stream=False)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise upstream_error(exc) from exc
        return normalize_completion(_as_dict(response))

    async def open_stream(
        self, body: dict[str, Any], ctx: CallContext
    ) -> AsyncIterator[dict[str, Any]]:
        litellm = await _litellm()
        kwargs = self.completion_kwargs(litellm, body, ctx, stream=True)
        try:
            stream = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise upstream_error(exc) from exc
        iterator = stream.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException as exc:
            await close_stream(stream)
            if isinstance(exc, Exception):
                raise upstream_error(exc) from exc
            raise
        return _relay(first, iterator, stream)

    async def list_models(self) -> list[dict[str, Any]]:
        """``upstream.models``; else the upstream's ``/models`` when ``base_url``
        is set and answers; else one entry for ``upstream.model`` (or ``default``)."""
        if self.settings.models:
            return configured_models(self.settings.models)
        if self.settings.base_url:
            listed = await self._fetch_models()
            if listed is not None:
                return listed
        return configured_models([self.settings.model or "default"])

    async def aclose(self) -> None:
        """Nothing to release: litellm keeps its own shared HTTP clients."""

    def completion_kwargs(
        self, litellm: ModuleType, body: dict[str, Any], ctx: CallContext, *, stream: bool
    ) -> dict[str, Any]:
        """The ``litellm.acompletion`` keyword arguments for one request."""
        litellm_params = importlib.import_module("litellm.types.utils").all_litellm_params
        reserved = _RESERVED | (set(litellm_params) - {"metadata"})
        kwargs = {k: v for k, v in body.items() if k not in reserved and not k.startswith("_")}
        kwargs["model"] = self.settings.model or body.get("model")
        kwargs["stream"] = stream
        if not stream:
            kwargs.pop("stream_options", None)
        provider = _provider(litellm, kwargs["model"], self.settings.base_url)
        activation = ctx.activation
        if activation is not None and activation.marker and is_anthropic(kwargs["model"], provider):
            kwargs["messages"] = mark_cache_control(kwargs.get("messages") or [], activation.marker)
        if provider in _OPENAI_WIRE_PROVIDERS:
            extra = {k: kwargs.pop(k) for k in _VIA_EXTRA_BODY if k in kwargs}
            if extra:
                kwargs["extra_body"] = {**(kwargs.get("extra_body") or {}), **extra}
        headers = {**ctx.extra_headers, "X-Request-Id": ctx.request_id}
        kwargs.update(
            api_base=self.settings.base_url,
            api_key=ctx.upstream_api_key or self.settings.api_key or ctx.client_api_key,
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
            extra_headers=headers,
            drop_params=False,
            max_retries=0,
            _skip_mcp_handler=True,
        )
        return kwargs

    async def _fetch_models(self) -> list[dict[str, Any]] | None:
        assert self.settings.base_url
        url = f"{self.settings.base_url.rstrip('/')}/models"
        headers = {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}
        timeout = httpx.Timeout(self.settings.connect_timeout_s * 3, connect=self.settings.connect_timeout_s)
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                response = await client.get(url, headers=headers)
            data = response.json().get("data") if response.status_code < 400 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        return data if isinstance(data, list) else None


def is_anthropic(model: Any, provider: str | None) -> bool:
    name = str(model or "").lower()
    return provider == "anthropic" or name.startswith(("anthropic/", "claude"))


def mark_cache_control(messages: list[Any], marker: str) -> list[Any]:
    """A copy of ``messages`` whose system message holding ``marker`` (the core
    block) is split into text parts, the one ending with the block carrying an
    ephemeral ``cache_control``. Other messages are passed through as they are."""
    out = list(messages)
    for index, message in enumerate(out):
        if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
            continue
        content = message.get("content")
        parts: list[Any] | None = None
        if isinstance(content, str):
            parts = _split_at_marker({"type": "text", "text": content}, marker)
        elif isinstance(content, list):
            for i, part in enumerate(content):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    split = _split_at_marker(part, marker)
                    if split is not None:
                        parts = [*content[:i], *split, *content[i + 1 :]]
                        break
        if parts is not None:
            out[index] = {**message, "content": parts}
            return out
    return out


def _split_at_marker(part: dict[str, Any], marker: str) -> list[dict[str, Any]] | None:
    text = part["text"]
    at = text.find(marker)
    if at < 0:
        return None
    end = at + len(marker)
    head = {**part, "text": text[:end], "cache_control": {"type": "ephemeral"}}
    tail = text[end:]
    return [head, {"type": "text", "text": tail}] if tail else [head]


async def _relay(
    first: Any, iterator: AsyncIterator[Any], stream: Any
) -> AsyncIterator[dict[str, Any]]:
    """Normalized chunk dicts; mid-stream failures become :class:`UpstreamError`."""
    try:
        if first is None:
            return
        yield _chunk(first)
        while True:
            try:
                chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except Exception as exc:
                raise upstream_error(exc) from exc
            yield _chunk(chunk)
    finally:
        await close_stream(stream)


def _chunk(raw: Any) -> dict[str, Any]:
    data = _as_dict(raw)
    if data.get("usage") and _only_empty_choices(data.get("choices")):
        data = {**data, "choices": []}
    return normalize_chunk(data)


def _only_empty_choices(choices: Any) -> bool:
    """litellm's usage chunk: choices whose delta carries nothing, no finish."""
    if not isinstance(choices, list):
        return False
    for choice in choices:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") is not None or any(
            delta.get(key) for key in ("content", "tool_calls", "function_call", "refusal", "audio")
        ):
            return False
    return True


def upstream_error(exc: BaseException) -> UpstreamError:
    """Map a litellm (or transport) exception onto :mod:`adapters.errors`."""
    if isinstance(exc, UpstreamError):
        return exc
    chain = _exception_chain(exc)
    if any(_is_timeout(e) for e in chain):
        return UpstreamTimeout()
    if any(_is_connection_error(e) for e in chain):
        return UpstreamUnavailable(f"Could not reach the upstream model: {_clean_message(exc)}")
    status = getattr(exc, "status_code", None)
    status = int(status) if isinstance(status, int) or (isinstance(status, str) and status.isdigit()) else None
    if status is None or not 400 <= status <= 599:
        return UpstreamError(_clean_message(exc) or "The upstream model failed.", status=502)
    error = _provider_error(exc)
    return UpstreamError(
        str(error.get("message") or _clean_message(exc) or f"Upstream error {status}"),
        status=status,
        type=str(error.get("type") or _ERROR_TYPES.get(status, "upstream_error" if status >= 500 else "invalid_request_error")),
        code=None if error.get("code") is None else str(error["code"]),
        param=None if error.get("param") is None else str(error["param"]),
    )


def _provider_error(exc: BaseException) -> dict[str, Any]:
    """The provider's OpenAI-style error object, when litellm kept it."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return inner
        if "message" in body:
            return body
    return {}


def _clean_message(exc: BaseException) -> str:
    """litellm's message without its ``litellm.XError: XError: ProviderException - `` prefix."""
    message = str(getattr(exc, "message", None) or exc)
    return _LITELLM_PREFIX.sub("", message, count=1).strip() or message


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_timeout(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (TimeoutError, httpx.TimeoutException, openai.APITimeoutError)) or (
        type(exc).__name__ in {"Timeout", "ServerTimeoutError", "ConnectionTimeoutError"}
    )


def _is_connection_error(exc: BaseException) -> bool:
    import openai

    return isinstance(exc, (ConnectionError, httpx.TransportError, openai.APIConnectionError)) or (
        type(exc).__name__ in {"ClientConnectorError", "ClientConnectionError", "ServerDisconnectedError"}
    )


def _provider(litellm: ModuleType, model: Any, base_url: str | None) -> str | None:
    try:
        return str(litellm.get_llm_provider(model=model, api_base=base_url)[1])
    except Exception:  # noqa: BLE001 - unknown provider: litellm itself reports it on the call
        return None


def _as_dict(response: Any) -> dict[str, Any]:
    if isinstance(response, dict):
        return response
    dump = getattr(response, "model_dump", None)
    if dump is None:
        raise UpstreamUnavailable(f"litellm returned an unexpected {type(response).__name__}.")
    return dict(dump())




async def _litellm() -> ModuleType:
    """litellm, imported on a worker thread the first time (never blocking the loop)."""
    module = sys.modules.get("litellm")
    if module is not None and getattr(module, "acompletion", None) is not None:
        return module
    return await asyncio.to_thread(load_litellm)


def load_litellm() -> ModuleType:
    """Import litellm with its debug banner off.

    Offline use needs ``LITELLM_LOCAL_MODEL_COST_MAP`` and ``TIKTOKEN_CACHE_DIR``,
    which the CLI sets (:mod:`proxy.environment`) before anything imports litellm.
    """
    litellm = importlib.import_module("litellm")
    litellm.suppress_debug_info = True  # type: ignore[attr-defined]  # set at run time, absent from its stubs
    return litellm


def create(settings: UpstreamSettings, data_dir: Path) -> LiteLLMUpstream:
    return LiteLLMUpstream(settings)
