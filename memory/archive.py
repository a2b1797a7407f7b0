"""The MemCube archive (``.memcube``): one owner's memories in one portable file.

A zip holding (spec: docs/memcube-format.md)::

    memories.jsonl   one memory per line, every field (``MemCube.to_dict`` less ``object``), id order
    vectors.f32      optional: little-endian float32 rows, row i = line i
    manifest.json    format + version, type (memories | pack), owner, counts,
                     created_at, embedder name + fingerprint, per-file sha256,
                     its own checksum (and, for a signed pack, a signature)

It is written as a stream (the zip's data descriptors, no seeking), so an
export of any size goes out page by page, and only one page of memories is
ever held in memory; the vectors wait in a temporary file on disk until the
memories member is complete. Fixed member timestamps and a manifest
``created_at`` taken from the memories themselves (the newest
``created_at``/``updated_at``) make an export a function of the stored
memories: export -> import -> export is byte-equal.

Import reads a seekable file (an upload is spooled to disk first): a full
verification pass (checksums, every record parsed and owned by the manifest's
owner) runs before anything is written, so a damaged archive imports nothing;
then it is written in batches through the engine's batch path
(:meth:`MemoryEngine.put`), reusing the archived vectors only when the
embedder fingerprint matches.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from memory.cube import MemCube, Owner, Provenance, isoformat, owner_key, owner_key_of_id, parse_time, utcnow
from memory.errors import InvalidMemory
from memory.fingerprint import EmbedderId, embedder_id
from memory.pack_owner import is_pack_owner
from memory.render import render_item

if TYPE_CHECKING:
    from memory.engine import MemoryEngine

FORMAT = "memcube"
FORMAT_VERSION = 1
MEMORIES = "memories.jsonl"
VECTORS = "vectors.f32"
MANIFEST = "manifest.json"
PAGE = 1000
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
CHUNK = 1 << 20
ON_CONFLICT = ("skip", "replace", "new-version")
RECORD_KEYS = (
    "id", "user", "session", "agent", "content", "kind", "tier", "state", "version",
    "event_time", "created_at", "updated_at", "provenance", "metadata", "tokens",
)  # fmt: skip
TIERS = frozenset({"recall", "core"})
STATES = frozenset({"active", "superseded", "archived", "deleted"})

Progress = Callable[[int], None]


class ArchiveError(InvalidMemory):
    """A file that is not a valid archive (or pack): nothing was imported."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="file")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def canonical(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


# -- records ------------------------------------------------------------------


def to_record(cube: MemCube) -> dict[str, Any]:
    record = cube.to_dict()
    record.pop("object", None)
    return record


def _time(record: dict[str, Any], key: str, line: int, *, required: bool = False) -> Any:
    value = record.get(key)
    if value is None:
        if required:
            raise ArchiveError(f"line {line}: '{key}' is required")
        return None
    try:
        return parse_time(str(value))
    except ValueError as exc:
        raise ArchiveError(f"line {line}: '{key}' is not an RFC 3339 time: {value!r}") from exc


def from_record(record: Any, line: int) -> MemCube:
    """A MemCube from one archived line, strictly validated."""
    if not isinstance(record, dict):
        raise ArchiveError(f"line {line}: a memory must be a JSON object")
    unknown = set(record) - set(RECORD_KEYS)
    if unknown:
        raise ArchiveError(f"line {line}: unknown field(s) {sorted(unknown)}")
    user, content, memory_id = record.get("user"), record.get("content"), record.get("id")
    if not isinstance(user, str) or not user:
        raise ArchiveError(f"line {line}: 'user' must be a non-empty string")
    if not isinstance(content, str) or not content.strip():
        raise ArchiveError(f"line {line}: 'content' must be a non-empty string")
    if not isinstance(memory_id, str) or owner_key_of_id(memory_id) != owner_key(user):
        raise ArchiveError(f"line {line}: 'id' {memory_id!r} is not a memory id of user {user!r}")
    kind, tier, state = record.get("kind"), record.get("tier"), record.get("state")
    if not isinstance(kind, str) or not kind:
        raise ArchiveError(f"line {line}: 'kind' must be a non-empty string")
    if tier not in TIERS or state not in STATES:
        raise ArchiveError(f"line {line}: bad tier {tier!r} or state {state!r}")
    version, tokens = record.get("version"), record.get("tokens", 0)
    if not isinstance(version, int) or version < 1 or not isinstance(tokens, int) or tokens < 0:
        raise ArchiveError(f"line {line}: 'version' must be an integer >= 1 and 'tokens' >= 0")
    provenance, metadata = record.get("provenance") or {}, record.get("metadata")
    if not isinstance(provenance, dict) or not isinstance(metadata, dict):
        raise ArchiveError(f"line {line}: 'provenance' and 'metadata' must be JSON objects")
    session, agent = record.get("session"), record.get("agent")
    return MemCube(
        id=memory_id,
        owner=Owner(user=user, session=str(session) if session is not None else None,
                    agent=str(agent) if agent is not None else None),
        content=content,
        kind=kind,
        tier=tier,
        state=state,
        version=version,
        event_time=_time(record, "event_time", line),
        created_at=_time(record, "created_at", line, required=True),
        updated_at=_time(record, "updated_at", line),
        provenance=Provenance.from_dict(provenance),
        metadata=metadata,
        tokens=tokens,
    )


def rekey(cube: MemCube, user: str) -> MemCube:
    """``cube`` as ``user``'s: its id (and links to its old owner's ids) re-keyed
    deterministically, so importing the same archive again finds the same ids."""
    old, new = cube.owner.key, owner_key(user)
    if old == new and cube.owner.user == user:
        return cube

    def moved(memory_id: str) -> str:
        if owner_key_of_id(memory_id) != old:
            return memory_id
        return f"mem_{new}_{memory_id.split('_')[2]}"

    provenance = replace(cube.provenance, source_ids=tuple(moved(s) for s in cube.provenance.source_ids))
    owner = Owner(user=user, session=cube.owner.session, agent=cube.owner.agent)
    return cube.evolve(id=moved(cube.id), owner=owner, provenance=provenance)


# -- writing ------------------------------------------------------------------


class _Sink:
    """A write-only stream (no ``tell``/``seek``: the zip uses data descriptors)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o644 << 16
    return info


class ArchiveWriter:
    """Builds an archive as a stream of byte chunks: :meth:`add` pages, :meth:`take`
    what is ready, then iterate :meth:`finish`."""

    def __init__(self, *, kind: str, owner: str, embedder: EmbedderId, vectors: bool = True) -> None:
        self.kind, self.owner, self.embedder, self.with_vectors = kind, owner, embedder, vectors
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", compression=zipfile.ZIP_DEFLATED)  # type: ignore[call-overload]
        self._memories: IO[bytes] = self._zip.open(_member(MEMORIES), "w", force_zip64=True)
        self._vectors: IO[bytes] | None = tempfile.TemporaryFile() if vectors else None  # noqa: SIM115
        self._hash = {MEMORIES: hashlib.sha256(), VECTORS: hashlib.sha256()}
        self._bytes = {MEMORIES: 0, VECTORS: 0}
        self.count = 0
        self._counts: dict[str, Counter[str]] = {"tiers": Counter(), "states": Counter(), "kinds": Counter()}
        self._newest: datetime | None = None

    def add(self, cubes: Sequence[MemCube], vectors: np.ndarray | None) -> None:
        for cube in cubes:
            line = (dumps(to_record(cube)) + "\n").encode()
            self._memories.write(line)
            self._hash[MEMORIES].update(line)
            self._bytes[MEMORIES] += len(line)
            self._counts["tiers"][cube.tier] += 1
            self._counts["states"][cube.state] += 1
            self._counts["kinds"][cube.kind] += 1
            for stamp in (cube.created_at, cube.updated_at):
                if stamp is not None and (self._newest is None or stamp > self._newest):
                    self._newest = stamp
        self.count += len(cubes)
        if self._vectors is not None:
            if vectors is None or len(vectors) != len(cubes):
                raise ValueError("every memory needs its vector in an archive with vectors")
            data = np.ascontiguousarray(vectors, dtype="<f4").tobytes()
            self._vectors.write(data)
            self._hash[VECTORS].update(data)
            self._bytes[VECTORS] += len(data)

    def take(self) -> bytes:
        return self._sink.take()

    def manifest(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        files: dict[str, Any] = {
            MEMORIES: {"sha256": self._hash[MEMORIES].hexdigest(), "bytes": self._bytes[MEMORIES], "records": self.count}
        }
        if self._vectors is not None:
            files[VECTORS] = {"sha256": self._hash[VECTORS].hexdigest(), "bytes": self._bytes[VECTORS],
                              "dtype": "float32-le", "dimensions": self.embedder.dimensions}
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "type": self.kind,
            "owner": {"user": self.owner},
            "created_at": isoformat(self._newest),
            "counts": {"memories": self.count, "vectors": self.count if self._vectors is not None else 0,
                       **{k: dict(sorted(v.items())) for k, v in self._counts.items()}},
            "embedder": asdict(self.embedder),
            "files": files,
        }
        manifest.update(extra or {})
        manifest["checksum"] = manifest_checksum(manifest)
        return manifest

    def finish(
        self, extra: dict[str, Any] | None = None, sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> Iterator[bytes]:
        self._memories.close()
        yield self.take()
        if self._vectors is not None:
            self._vectors.seek(0)
            with self._zip.open(_member(VECTORS), "w", force_zip64=True) as member:
                while chunk := self._vectors.read(CHUNK):
                    member.write(chunk)
                    yield self.take()
            self._vectors.close()
        manifest = self.manifest(extra)
        if sign is not None:
            manifest["signature"] = sign(manifest)
        self._zip.writestr(_member(MANIFEST), json.dumps(manifest, ensure_ascii=False, indent=2, sort_keys=True) + "\n")
        self._zip.close()
        yield self.take()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """sha256 of the canonical manifest without ``checksum`` and ``signature``;
    it covers the files through their sha256."""
    body = {k: v for k, v in manifest.items() if k not in ("checksum", "signature")}
    return hashlib.sha256(canonical(body)).hexdigest()


async def owner_pages(engine: MemoryEngine, user: str, page: int = PAGE) -> AsyncIterator[tuple[list[MemCube], np.ndarray]]:
    """``user``'s memories in id order, a page at a time, with their stored vectors."""
    after: str | None = None
    while True:
        listed = await engine.list(user, limit=page, after=after)
        if not listed.items:
            return
        found = await engine.fetch(user, [c.id for c in listed.items], vectors=True)
        rows = [found[c.id] for c in listed.items if c.id in found]  # one deleted meanwhile is left out
        if rows:
            yield [cube for cube, _ in rows], np.stack([vector for _, vector in rows])
        if not listed.has_more:
            return
        after = listed.items[-1].id


async def export_archive(
    engine: MemoryEngine, user: str, *, vectors: bool = True, progress: Progress | None = None
) -> AsyncIterator[bytes]:
    """The archive of ``user``'s memories, as byte chunks (a page of memories at a time)."""
    if is_pack_owner(user):
        raise ArchiveError("A memory pack is not a user's memory and is not exported.")
    writer = ArchiveWriter(kind="memories", owner=user, embedder=await embedder_id(engine.embedder), vectors=vectors)
    async for cubes, vecs in owner_pages(engine, user):
        writer.add(cubes, vecs)
        if progress is not None:
            progress(len(cubes))
        chunk = writer.take()
        if chunk:
            yield chunk
    for chunk in writer.finish():
        if chunk:
            yield chunk


async def export_to_file(engine: MemoryEngine, user: str, path: Path, **options: Any) -> int:
    """Write ``user``'s archive to ``path`` (atomically); returns the number of memories."""
    tmp = path.with_name(path.name + ".part")
    count = 0

    def counted(n: int) -> None:
        nonlocal count
        count += n
        if options.get("progress") is not None:
            options["progress"](n)

    with tmp.open("wb") as out:
        async for chunk in export_archive(engine, user, vectors=options.get("vectors", True), progress=counted):
            out.write(chunk)
    tmp.replace(path)
    return count


# -- reading ------------------------------------------------------------------


class ArchiveReader:
    """An archive on disk: its manifest, a verification pass, then batches."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = set(self._zip.namelist())
            if MANIFEST not in names or MEMORIES not in names:
                raise ArchiveError(f"{self.path.name}: not a MemCube archive (no {MANIFEST} / {MEMORIES})")
            manifest = json.loads(self._zip.read(MANIFEST))
        except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
            raise ArchiveError(f"{self.path.name}: not a readable MemCube archive ({exc})") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ArchiveError(f"{self.path.name}: the manifest is not a MemCube manifest")
        version = manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ArchiveError(f"{self.path.name}: format version {version!r} is newer than this memproxy reads")
        if manifest.get("checksum") != manifest_checksum(manifest):
            raise ArchiveError(f"{self.path.name}: manifest checksum mismatch (the archive was altered)")
        self.manifest: dict[str, Any] = manifest
        self.names = names

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    @property
    def owner(self) -> str:
        return str((self.manifest.get("owner") or {}).get("user") or "")

    @property
    def count(self) -> int:
        return int(self.manifest["files"][MEMORIES]["records"])

    @property
    def dimensions(self) -> int | None:
        entry = self.manifest["files"].get(VECTORS)
        return int(entry["dimensions"]) if entry and VECTORS in self.names else None

    def _digest(self, name: str) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with self._zip.open(name) as member:
            while chunk := member.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return digest.hexdigest(), size

    def verify(self) -> None:
        """Check every file against the manifest and parse every record; raises ArchiveError."""
        files = self.manifest.get("files") or {}
        for name, entry in files.items():
            if name not in self.names:
                raise ArchiveError(f"{self.path.name}: {name} is missing")
            try:
                digest, size = self._digest(name)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ArchiveError(f"{self.path.name}: {name} is damaged ({exc})") from exc
            if digest != entry.get("sha256") or size != entry.get("bytes"):
                raise ArchiveError(f"{self.path.name}: {name} checksum mismatch (the archive was altered)")
        count = 0
        for count, cube in enumerate(self._cubes(), start=1):
            if cube.owner.user != self.owner:
                raise ArchiveError(f"line {count}: memory of {cube.owner.user!r} in an archive of {self.owner!r}")
        if count != self.count:
            raise ArchiveError(f"{self.path.name}: {count} memories, the manifest says {self.count}")
        dims = self.dimensions
        if dims is not None and files[VECTORS]["bytes"] != count * dims * 4:
            raise ArchiveError(f"{self.path.name}: {VECTORS} does not hold one {dims}-d vector per memory")

    def _cubes(self) -> Iterator[MemCube]:
        with self._zip.open(MEMORIES) as member:
            for number, raw in enumerate(member, start=1):
                try:
                    record = json.loads(raw)
                except ValueError as exc:
                    raise ArchiveError(f"line {number}: not JSON ({exc})") from exc
                yield from_record(record, number)

    def batches(self, size: int = PAGE, *, vectors: bool = True) -> Iterator[tuple[list[MemCube], np.ndarray | None]]:
        dims = self.dimensions if vectors else None
        stream = self._zip.open(VECTORS) if dims is not None else None
        try:
            batch: list[MemCube] = []
            for cube in self._cubes():
                batch.append(cube)
                if len(batch) == size:
                    yield batch, _read_vectors(stream, len(batch), dims)
                    batch = []
            if batch:
                yield batch, _read_vectors(stream, len(batch), dims)
        finally:
            if stream is not None:
                stream.close()


def _read_vectors(stream: IO[bytes] | None, rows: int, dims: int | None) -> np.ndarray | None:
    if stream is None or dims is None:
        return None
    data = stream.read(rows * dims * 4)
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(rows, dims)


# -- importing ----------------------------------------------------------------


@dataclass(slots=True)
class ImportReport:
    user: str
    total: int = 0
    added: int = 0
    replaced: int = 0
    versioned: int = 0
    skipped: int = 0
    embedded: int = 0
    vectors_reused: bool = False
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["memories_per_s"] = round(self.per_second, 1)
        out["seconds"] = round(self.seconds, 3)
        return out


def _same_memory(a: MemCube, b: MemCube) -> bool:
    keys = ("content", "kind", "tier", "state", "event_time", "metadata", "session", "agent")
    ra, rb = to_record(a), to_record(b)
    return all(ra[k] == rb[k] for k in keys)


def resolve(existing: MemCube | None, incoming: MemCube, on_conflict: str) -> tuple[str, MemCube | None]:
    """What importing ``incoming`` does given the stored ``existing``: (outcome, cube to write)."""
    if existing is None:
        return "added", incoming
    if on_conflict == "skip":
        return "skipped", None
    if on_conflict == "replace":
        return ("skipped", None) if to_record(existing) == to_record(incoming) else ("replaced", incoming)
    if _same_memory(existing, incoming):
        return "skipped", None
    bumped = incoming.evolve(
        owner=existing.owner, version=existing.version + 1, created_at=existing.created_at, updated_at=utcnow()
    )
    return "versioned", bumped


async def import_archive(
    engine: MemoryEngine,
    reader: ArchiveReader,
    *,
    user: str | None = None,
    on_conflict: str = "skip",
    progress: Progress | None = None,
    allow_pack: bool = False,
    batch: int = PAGE,
) -> ImportReport:
    """Import a verified archive as ``user`` (default: its owner); idempotent."""
    if on_conflict not in ON_CONFLICT:
        raise InvalidMemory(f"on_conflict must be one of {', '.join(ON_CONFLICT)}", param="on_conflict")
    target = user or reader.owner
    if is_pack_owner(target) and not allow_pack:
        raise ArchiveError("Memories cannot be imported into a memory pack's owner; build a pack instead.")
    if reader.manifest.get("type") == "pack" and not allow_pack:
        raise ArchiveError("This is a memory pack: install it with `memproxy packs install`.")
    started = time.perf_counter()
    await asyncio.to_thread(reader.verify)
    local = await embedder_id(engine.embedder)
    archived = reader.manifest.get("embedder") or {}
    reuse = reader.dimensions == local.dimensions and archived.get("fingerprint") == local.fingerprint
    report = ImportReport(user=target, vectors_reused=reuse)
    recount = is_pack_owner(target) or is_pack_owner(reader.owner)  # the rendered label changes tokens
    for cubes, vectors in reader.batches(batch, vectors=reuse):
        if target != reader.owner:
            cubes = [rekey(c, target) for c in cubes]
        if recount:
            cubes = [c.evolve(tokens=engine.counter.count(render_item(c))) for c in cubes]
        stored = await engine.fetch(target, [c.id for c in cubes])
        keep: list[int] = []
        for n, cube in enumerate(cubes):
            outcome, write = resolve(stored[cube.id][0] if cube.id in stored else None, cube, on_conflict)
            setattr(report, outcome, getattr(report, outcome) + 1)
            if write is not None:
                cubes[n] = write
                keep.append(n)
        if keep:
            chosen = [cubes[n] for n in keep]
            report.embedded += await engine.put(chosen, vectors[keep] if vectors is not None else None)
        report.total += len(cubes)
        if progress is not None:
            progress(len(cubes))
    report.seconds = time.perf_counter() - started
    return report
