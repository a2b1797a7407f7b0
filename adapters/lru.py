"""A least-recently-used map capped by the bytes its values hold.

Both prefix KV caches (llama.cpp's :class:`adapters.kvcache.KVCache` and the
Hugging Face upstream's ``PrefixCache``) keep their RAM entries in one of
these; they add owner versions, statistics and (llama.cpp) a disk copy on top.
It takes no lock: its owners already hold their own around every call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, ValuesView
from typing import Generic, Protocol, TypeVar


class HasBytes(Protocol):
    """A value that says how many bytes it holds."""

    nbytes: int


V = TypeVar("V", bound=HasBytes)


class ByteLRU(Generic[V]):
    """Values by key, the least recently used dropped first once ``max_bytes`` is passed."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, V] = OrderedDict()

    @property
    def nbytes(self) -> int:
        """The bytes held by all values."""
        return sum(v.nbytes for v in self._items.values())

    def get(self, key: str, accept: Callable[[V], bool] | None = None) -> V | None:
        """The value under ``key`` (now the most recently used), or ``None``.

        With ``accept``, a value it rejects counts as absent and keeps its place.
        """
        value = self._items.get(key)
        if value is None or (accept is not None and not accept(value)):
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> int:
        """Store ``value`` as the most recently used; returns how many others were evicted.

        Older values go until the total fits; a value larger than the cap on
        its own is not kept (the others are evicted first all the same).
        """
        self._items[key] = value
        self._items.move_to_end(key)
        total = self.nbytes
        evicted = 0
        while total > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            total -= old.nbytes
            evicted += 1
        if total > self.max_bytes:
            self._items.pop(key, None)
        return evicted

    def remove_where(self, predicate: Callable[[V], bool]) -> int:
        """Drop every value ``predicate`` holds for; returns how many."""
        doomed = [k for k, v in self._items.items() if predicate(v)]
        for k in doomed:
            del self._items[k]
        return len(doomed)

    def clear(self) -> None:
        self._items.clear()

    def values(self) -> ValuesView[V]:
        return self._items.values()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items
