"""Errors raised by the memory engine.

    MemoryEngineError         base class
    ├── MemoryNotFound        no memory with that id (for this owner)
    ├── InvalidMemory         bad input: empty content, bad time, bad field
    └── StoreUnavailable      the store cannot be reached or failed
"""

from __future__ import annotations


class MemoryEngineError(Exception):
    """Base class of every memory engine error."""


class MemoryNotFound(MemoryEngineError):
    def __init__(self, memory_id: str) -> None:
        super().__init__(f"No memory found with id '{memory_id}'.")
        self.memory_id = memory_id


class InvalidMemory(MemoryEngineError):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class StoreUnavailable(MemoryEngineError):
    """The backing store failed; callers on the chat path fail open."""
