"""The ``/v1/responses`` request model (validation and ``/docs`` only).

Bodies are forwarded as the client sent them; the model allows extra fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CreateResponseRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    stream: bool | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    user: str | None = None
