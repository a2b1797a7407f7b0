"""Request models of the memory management API (``/v1/memories``, ``/v1/users/…``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class MemoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    event_time: datetime | None = None
    kind: str | None = Field(default=None, min_length=1, max_length=64)
    tier: Literal["recall", "core"] | None = None
    session: str | None = None
    source_ids: list[str] = Field(default_factory=list)

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("content must not be blank")
        return value


class AddMemoriesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256)  # required without keys; a user key may omit it
    session: str | None = None
    memories: list[MemoryIn] = Field(min_length=1, max_length=10_000)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256)  # required without keys; a user key may omit it
    query: str = Field(min_length=1)
    token_budget: int | None = Field(default=None, ge=1, le=1_000_000)
    limit: int | None = Field(default=None, ge=1, le=1_000)
    # the reference time of the query's relative expressions ("last week", "two months ago"); default: now
    now: datetime | None = None

    @field_validator("now", mode="before")
    @classmethod
    def _rfc3339(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("now must be an RFC 3339 timestamp string, e.g. 2023-06-23T07:31:00Z")
        return value

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Naive times are taken as UTC (as ``event_time`` is)."""
        if value is None:
            return None
        try:
            return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00
            raise ValueError("now is out of the supported range of dates") from exc


class PatchMemoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str | None = Field(default=None, min_length=1)
    metadata: dict[str, Any] | None = None
    event_time: datetime | None = None
    kind: str | None = Field(default=None, min_length=1, max_length=64)
    tier: Literal["recall", "core"] | None = None
    state: Literal["active", "superseded", "archived", "deleted"] | None = None
