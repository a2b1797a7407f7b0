"""Compact JSON for the hot path (orjson).

Every streamed chunk is serialised once more on its way to the client and
every whole completion once; orjson does it several times faster than
``json.dumps``. The output is the same JSON as ``json.dumps(value,
ensure_ascii=False, separators=(",", ":"))``: UTF-8, no spaces, the same
values (a float's exponent may be written ``1e-7`` instead of ``1e-07``; a
NaN, which the standard library writes as the invalid token ``NaN``, is
``null``). A value orjson refuses (a non-string key, an integer beyond 64
bits) falls back to the standard library, so nothing that serialised before
fails now.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import JSONResponse


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class FastJSONResponse(JSONResponse):
    """Starlette's ``JSONResponse`` (same bytes, NaN refused), rendered with :func:`dumps`."""

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return super().render(content)
