"""``POST /v1/embeddings``: passed through to the upstream, no memory involved."""

from __future__ import annotations

from typing import Any

from adapters.base import CallContext, EmbeddingsUpstream, Upstream
from adapters.errors import UpstreamUnsupported


class EmbeddingsServing:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def create(self, body: dict[str, Any], context: CallContext) -> dict[str, Any]:
        if not isinstance(self.upstream, EmbeddingsUpstream):
            raise UpstreamUnsupported(f"The '{self.upstream.name}' upstream does not serve embeddings.")
        return await self.upstream.embeddings(body, context)
