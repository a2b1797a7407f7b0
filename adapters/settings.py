"""The ``upstream:`` section of the config: keys every backend shares, plus one
section per backend that the backend itself declares.

A backend owns its options: it defines a pydantic model and reads its section
with :meth:`UpstreamSettings.options`, e.g. ``settings.options("llamacpp",
LlamaCppSettings)`` for ``upstream.llamacpp``. Third-party backends do the
same under their own entry-point name, so their options validate exactly like
the built-ins' (unknown keys rejected). A section whose name is no registered
backend is refused when the server starts (:meth:`UpstreamRegistry.check`).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Options = TypeVar("Options", bound=BaseModel)


class InvalidUpstreamSettings(ValueError):
    """A backend's section of ``upstream:`` does not validate."""


class UpstreamSettings(BaseModel):
    model_config = ConfigDict(extra="allow")

    # auto: ``openai`` when base_url is set, ``litellm`` when only model is set,
    # else the embedded ``llamacpp`` model.
    provider: str = "auto"
    base_url: str | None = None
    model: str | None = None  # overrides the client's model when set
    api_key: str | None = None  # when unset, the client's bearer token is forwarded
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    models: list[str] = Field(default_factory=list)  # listed by /v1/models if set
    # /v1/responses: ``native`` forwards to the upstream's Responses API,
    # ``bridge`` translates onto chat completions, ``auto`` tries native once
    # and bridges when the upstream has no Responses endpoint.
    responses: Literal["auto", "native", "bridge"] = "auto"

    @model_validator(mode="after")
    def _sections_are_mappings(self) -> UpstreamSettings:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, dict):
                raise ValueError(
                    f"unknown setting 'upstream.{name}' (backend sections such as "
                    f"'upstream.llamacpp' are mappings of that backend's options)"
                )
        return self

    def sections(self) -> dict[str, dict[str, Any]]:
        """The backend sections present (``{"llamacpp": {...}, ...}``)."""
        return dict(self.model_extra or {})

    def options(self, name: str, model: type[Options]) -> Options:
        """Backend ``name``'s own section, validated by the model it declares."""
        raw = (self.model_extra or {}).get(name) or {}
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidUpstreamSettings(
                f"invalid setting 'upstream.{name}.{where}': {first.get('msg', 'invalid value')}"
            ) from None
