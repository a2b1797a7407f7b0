"""The portable tests reuse the memory tests' ``open_engine`` fixture."""

from tests.memory.conftest import open_engine  # noqa: F401
