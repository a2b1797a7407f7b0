"""Upstream registry: built-in and third-party backends register the same way.

A backend is a factory ``create(settings: UpstreamSettings, data_dir: Path) ->
Upstream`` published under the ``memproxy.upstreams`` entry-point group (the
built-ins are published by memproxy's own ``pyproject.toml``). Tests and
embedding applications may also call :meth:`UpstreamRegistry.register`.

A backend's own options live in ``upstream.<its name>`` and are validated by
the model it declares (:meth:`UpstreamSettings.options`); :meth:`check`
refuses sections that belong to no registered backend, so a typo is an
error at startup rather than a silently ignored key.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from adapters.base import Upstream
from adapters.settings import UpstreamSettings

UpstreamFactory = Callable[[UpstreamSettings, Path], Upstream]
ENTRY_POINT_GROUP = "memproxy.upstreams"


class UnknownUpstream(ValueError):
    pass


class UpstreamRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, UpstreamFactory] = {}

    @classmethod
    def from_entry_points(cls) -> UpstreamRegistry:
        registry = cls()
        for point in entry_points(group=ENTRY_POINT_GROUP):
            registry.register(point.name, _lazy(point.load))
        return registry

    def register(self, name: str, factory: UpstreamFactory) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def check(self, settings: UpstreamSettings) -> None:
        """Raise :class:`UnknownUpstream` for an ``upstream.<name>`` section no backend owns."""
        for name in settings.sections():
            if name not in self._factories:
                known = ", ".join(self.names()) or "none"
                raise UnknownUpstream(f"unknown setting 'upstream.{name}' (backend sections: {known})")

    def create(self, name: str, settings: UpstreamSettings, data_dir: Path) -> Upstream:
        try:
            factory = self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownUpstream(f"unknown upstream provider '{name}' (known: {known})") from None
        return factory(settings, data_dir)


def _lazy(load: Callable[[], UpstreamFactory]) -> UpstreamFactory:
    """Import a backend only when it is chosen (llama.cpp and litellm are heavy)."""

    def factory(settings: UpstreamSettings, data_dir: Path) -> Upstream:
        return load()(settings, data_dir)

    return factory
