"""One owner's memories as arrays, for recall that scores all of them at once.

Built from an :class:`~memory.lexcache.OwnerIndex` holding every vector, in
id (= write) order: the embedding matrix and, per memory, what ranking reads
besides its scores (session, recency, event day, speaker). Everything here is
derived when a memory enters the view, never per query (the dates memories
mention too: memory/mentions.py). New memories (ids
are time-ordered, so they come last) are appended into spare capacity and
changed ones are patched in place, a removed one is dropped from the arrays
(later rows move up); an id out of order makes the owner build a fresh view
on its next read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import numpy as np

from memory.cube import MemCube
from memory.mentions import Mentions
from memory.postings import PostingArrays

Spans = tuple[tuple[date, date], ...]


def _session_key(cube: MemCube) -> object:
    from memory.recall import session_key

    return session_key(cube)


def _mentioned(cube: MemCube) -> Spans:
    from memory.recall import cube_spans

    return cube_spans(cube)


def _recency(cube: MemCube) -> float:
    return (cube.event_time or cube.created_at).timestamp()


class OwnerView:
    def __init__(self, dimensions: int, capacity: int) -> None:
        self.ids: list[str] = []
        self.cubes: list[MemCube] = []
        self.position: dict[str, int] = {}
        self._matrix = np.zeros((capacity, dimensions), dtype=np.float32)
        self._sessions = np.zeros(capacity, dtype=np.int64)
        self._recency = np.zeros(capacity, dtype=np.float64)
        self._days = np.full(capacity, -1, dtype=np.int64)  # event day ordinal, -1: none
        self._months = np.zeros(capacity, dtype=np.int64)  # event month 1-12, 0: none
        self._speakers = np.full(capacity, -1, dtype=np.int64)
        self.session_codes: dict[object, int] = {}
        self.speaker_codes: dict[str, int] = {}
        self.mentions = Mentions()  # the dates memories mention (memory/mentions.py)
        self.postings = PostingArrays()  # query terms' BM25 postings in these positions (memory/postings.py)

    @classmethod
    def build(cls, cubes: Mapping[str, MemCube], vectors: Mapping[str, np.ndarray]) -> OwnerView:
        ids = sorted(cubes)
        first = vectors[ids[0]]
        view = cls(int(first.shape[0]), max(16, len(ids) + len(ids) // 4))
        for memory_id in ids:
            view.append(cubes[memory_id], vectors[memory_id])
        return view

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix[: self.n]

    @property
    def sessions(self) -> np.ndarray:
        return self._sessions[: self.n]

    @property
    def recency(self) -> np.ndarray:
        return self._recency[: self.n]

    @property
    def days(self) -> np.ndarray:
        return self._days[: self.n]

    @property
    def months(self) -> np.ndarray:
        return self._months[: self.n]

    @property
    def speakers(self) -> np.ndarray:
        return self._speakers[: self.n]

    def _grow(self) -> None:
        size = max(16, 2 * len(self._sessions))

        def grown(array: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((size, *array.shape[1:]), fill, dtype=array.dtype)
            out[: len(array)] = array
            return out

        self._matrix = grown(self._matrix, 0.0)
        self._sessions = grown(self._sessions, 0)
        self._recency = grown(self._recency, 0.0)
        self._days = grown(self._days, -1)
        self._months = grown(self._months, 0)
        self._speakers = grown(self._speakers, -1)

    def _set_row(self, pos: int, cube: MemCube) -> None:
        key = _session_key(cube)
        self._sessions[pos] = self.session_codes.setdefault(key, len(self.session_codes))
        self._recency[pos] = _recency(cube)
        if cube.event_time is not None:
            day = cube.event_time.date()
            self._days[pos], self._months[pos] = day.toordinal(), day.month
        else:
            self._days[pos], self._months[pos] = -1, 0
        speaker = cube.metadata.get("speaker") if isinstance(cube.metadata, dict) else None
        if isinstance(speaker, str) and speaker:
            self._speakers[pos] = self.speaker_codes.setdefault(speaker, len(self.speaker_codes))
        else:
            self._speakers[pos] = -1

    def append(self, cube: MemCube, vector: np.ndarray) -> None:
        pos = self.n
        if pos >= len(self._sessions):
            self._grow()
        self.ids.append(cube.id)
        self.cubes.append(cube)
        self.position[cube.id] = pos
        self._matrix[pos] = vector
        self._set_row(pos, cube)
        self.mentions.add(pos, _mentioned(cube))

    def absorb(self, cube: MemCube, vector: np.ndarray | None, content_changed: bool) -> bool:
        """Take an upserted memory in place; False when the view must be rebuilt."""
        pos = self.position.get(cube.id)
        if pos is None:
            if vector is None or (self.ids and cube.id < self.ids[-1]):
                return False
            self.append(cube, vector)
            return True
        if vector is None and content_changed:
            return False
        self.cubes[pos] = cube
        if vector is not None:
            self._matrix[pos] = vector
        self._set_row(pos, cube)
        self.mentions.replace(pos, _mentioned(cube))
        return True

    def discard(self, memory_id: str) -> bool:
        """Drop one memory, keeping id order (later rows move up); False if absent."""
        pos = self.position.get(memory_id)
        if pos is None:
            return False
        n = self.n
        for array in (self._matrix, self._sessions, self._recency, self._days, self._months, self._speakers):
            array[pos : n - 1] = array[pos + 1 : n]
        del self.ids[pos]
        del self.cubes[pos]
        del self.position[memory_id]
        for later in range(pos, n - 1):
            self.position[self.ids[later]] = later
        self.mentions.discard(pos)
        self.postings.clear()  # positions moved
        return True
