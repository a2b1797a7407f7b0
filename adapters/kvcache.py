"""Activation memory for the in-process llama.cpp model: prefix KV caches.

The stable prefix of a local prompt is ``[system prompt + core memory block]``.
Its KV state is computed once per (model fingerprint, owner, core version,
prompt template + prefix text), kept in a RAM LRU with a byte cap and on disk
under ``<data_dir>/kvcache``, and restored before generation so only the new
tokens are prefilled.

Only the context's state bytes (``llama_state_get_data``: KV cells plus one
row of logits) and the prefix token ids are kept — ``Llama.save_state()``
also copies the Python-side score buffer, ``n_batch x vocab`` float32 with
``logits_all`` off (512 x 262,144 x 4 B = 537 MB for Gemma), and is far too slow.

Staleness: the key hashes everything the KV depends on, so a changed core
set (new version), system prompt, template or model gives another key; when
an owner's core version changes, that owner's older entries are dropped from
RAM and disk at once. Disk entries carry their key fields in a header that is
checked on load.

Every method is called from the llama.cpp worker thread; the lock only guards
against a second caller (tests, the benchmark).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from adapters.lru import ByteLRU

log = logging.getLogger(__name__)

MAGIC = b"MPKV1\n"


@dataclass
class KVEntry:
    key: str
    owner: str
    core_version: str
    tokens: np.ndarray  # int32 prefix token ids
    state: Any  # ctypes uint8 array (the context state bytes)
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.nbytes = ctypes.sizeof(self.state) + self.tokens.nbytes


def cache_key(fingerprint: str, owner: str, core_version: str, template: str, prefix_text: str) -> str:
    h = hashlib.sha256()
    for part in (fingerprint, owner, core_version, template, prefix_text):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


def model_fingerprint(path: Path, n_ctx: int, extra: str = "") -> str:
    """Identity of the weights and context shape a KV state belongs to."""
    try:
        import llama_cpp

        version = getattr(llama_cpp, "__version__", "?")
    except ImportError:  # pragma: no cover
        version = "?"
    stat = path.stat()
    text = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{n_ctx}|{version}|{extra}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class OwnedEntry(Protocol):
    """A cached prefix: whose it is, the core version it was built against, its size."""

    owner: str
    core_version: str
    nbytes: int


E = TypeVar("E", bound=OwnedEntry)


class CoreVersions:
    """Each owner's current core version, as the prefix caches learn it.

    Shared by :class:`KVCache` and the Hugging Face upstream's ``PrefixCache``:
    an entry built against any other version of its owner's core is stale.
    """

    def __init__(self) -> None:
        self._current: dict[str, str] = {}

    def observe(self, owner: str, core_version: str, ram: ByteLRU[E]) -> int | None:
        """Record ``owner``'s current version and drop their older entries from ``ram``.

        Returns how many were dropped, or ``None`` when the version was already current.
        """
        if self._current.get(owner) == core_version:
            return None
        self._current[owner] = core_version
        return ram.remove_where(lambda e: e.owner == owner and e.core_version != core_version)

    def forget(self, owner: str) -> None:
        self._current.pop(owner, None)

    def is_stale(self, entry: OwnedEntry) -> bool:
        """Whether ``entry``'s owner has moved on to another core version."""
        return self._current.get(entry.owner) not in (None, entry.core_version)


class KVCache:
    """RAM LRU (byte-capped) in front of an optional directory of entries."""

    def __init__(self, ram_bytes: int, directory: Path | None) -> None:
        self.directory = directory
        self._ram: ByteLRU[KVEntry] = ByteLRU(ram_bytes)
        self._versions = CoreVersions()
        self._lock = threading.RLock()
        self.stats = {"hits": 0, "misses": 0, "disk_hits": 0, "evictions": 0, "invalidations": 0}
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ API

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._ram.nbytes

    def observe(self, owner: str, core_version: str) -> None:
        """An owner's current core version: older entries of theirs are dropped."""
        with self._lock:
            stale = self._versions.observe(owner, core_version, self._ram)
            if stale is None:
                return
            self.stats["invalidations"] += stale
            self._drop_disk(owner, keep_version=core_version)

    def get(self, key: str, owner: str, core_version: str) -> KVEntry | None:
        with self._lock:
            entry = self._ram.get(key)
            if entry is not None:
                self.stats["hits"] += 1
                return entry
            entry = self._load(key, owner, core_version)
            if entry is not None:
                self.stats["disk_hits"] += 1
                self._insert(entry)
                return entry
            self.stats["misses"] += 1
            return None

    def put(self, entry: KVEntry) -> None:
        with self._lock:
            if self._versions.is_stale(entry):
                return  # the core changed while it was being built: never keep it
            self._insert(entry)
            self._save(entry)

    def clear(self) -> None:
        with self._lock:
            self._ram.clear()

    def forget(self, owner: str) -> int:
        """Drop every entry of ``owner``, in RAM and on disk; how many distinct entries."""
        with self._lock:
            keys = {e.key for e in self._ram.values() if e.owner == owner}
            self._ram.remove_where(lambda e: e.owner == owner)
            self._versions.forget(owner)
            keys.update(self._drop_disk(owner, keep_version=None))
            return len(keys)

    # ------------------------------------------------------------ internals

    def _insert(self, entry: KVEntry) -> None:
        # a single entry above the cap is not kept in RAM: it stays on disk only
        self.stats["evictions"] += self._ram.put(entry.key, entry)

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.kv"

    def _save(self, entry: KVEntry) -> None:
        path = self._path(entry.key)
        if path is None:
            return
        header = json.dumps(
            {
                "owner": hashlib.sha256(entry.owner.encode()).hexdigest()[:16],
                "core_version": entry.core_version,
                "n_tokens": int(entry.tokens.size),
                "state_bytes": ctypes.sizeof(entry.state),
            }
        ).encode("utf-8")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            with open(tmp, "wb") as f:
                f.write(MAGIC)
                f.write(struct.pack("<I", len(header)))
                f.write(header)
                f.write(entry.tokens.astype("<i4").tobytes())
                f.write(memoryview(entry.state))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write KV cache %s: %s", path, exc)
        finally:
            tmp.unlink(missing_ok=True)

    def _load(self, key: str, owner: str, core_version: str) -> KVEntry | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            data = path.read_bytes()
            if not data.startswith(MAGIC):
                raise ValueError("bad magic")
            offset = len(MAGIC)
            (hlen,) = struct.unpack_from("<I", data, offset)
            offset += 4
            header = json.loads(data[offset : offset + hlen])
            offset += hlen
            if header["core_version"] != core_version or header["owner"] != hashlib.sha256(owner.encode()).hexdigest()[:16]:
                raise ValueError("stale entry")
            n = int(header["n_tokens"])
            tokens = np.frombuffer(data, dtype="<i4", count=n, offset=offset).astype(np.intc)
            offset += 4 * n
            size = int(header["state_bytes"])
            if len(data) - offset != size:
                raise ValueError("truncated entry")
            state = (ctypes.c_uint8 * size).from_buffer_copy(data, offset)
        except (OSError, ValueError, KeyError, struct.error) as exc:
            log.warning("ignoring KV cache file %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        return KVEntry(key, owner, core_version, tokens, state)

    def _drop_disk(self, owner: str, keep_version: str | None) -> list[str]:
        """Delete ``owner``'s files other than ``keep_version``'s (all of them for None); their keys."""
        dropped: list[str] = []
        if self.directory is None:
            return dropped
        digest = hashlib.sha256(owner.encode()).hexdigest()[:16]
        for path in self.directory.glob("*.kv"):
            try:
                with open(path, "rb") as f:
                    head = f.read(len(MAGIC) + 4)
                    (hlen,) = struct.unpack_from("<I", head, len(MAGIC))
                    header = json.loads(f.read(hlen))
                if header.get("owner") == digest and header.get("core_version") != keep_version:
                    path.unlink(missing_ok=True)
                    dropped.append(path.stem)
            except (OSError, ValueError, struct.error):
                continue
        return dropped


# ---------------------------------------------------------- llama.cpp glue


def snapshot(llama: Any) -> tuple[np.ndarray, Any]:
    """The current prefix tokens and context state bytes of ``llama``."""
    import llama_cpp

    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_get_size(ctx)
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(ctx, buf, size)
    if written != size:
        buf = (ctypes.c_uint8 * written).from_buffer_copy(buf)
    tokens = np.array(llama.input_ids[: llama.n_tokens], dtype=np.intc)
    return tokens, buf


def restore(llama: Any, entry: KVEntry) -> float:
    """Put ``entry``'s state into ``llama``'s context; returns milliseconds."""
    import llama_cpp

    started = time.perf_counter()
    read = llama_cpp.llama_state_set_data(llama._ctx.ctx, entry.state, ctypes.sizeof(entry.state))
    if read == 0:
        llama.reset()
        raise RuntimeError("llama_state_set_data rejected the cached state")
    n = int(entry.tokens.size)
    llama.input_ids[:n] = entry.tokens
    llama.n_tokens = n
    llama._requires_eval = True  # logits of a restored state are never sampled directly
    return (time.perf_counter() - started) * 1000


def common_prefix(a: np.ndarray | Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
