"""Memory packs: read-only archives of knowledge that an operator installs.

A pack is a MemCube archive of ``type: "pack"`` whose manifest also names it
(``pack: {name, version, author, license, description}``), carries the
archive checksum and, optionally, an Ed25519 signature of that checksum.
Installed, its memories live under their own owner ``pack:<name>@<version>``
(:mod:`memory.pack_owner`), never a user's, so they are never written to by
chat, never exported as a user's own, and removing a pack is dropping that
owner. Which users recall which packs is the install table
(``<data_dir>/packs/installed.json``): scopes ``global``, ``tenant:<t>`` or
``user:<u>``. Recall searches the installed packs next to the user's own
memories under the same budget (:mod:`memory.packrecall`).

Upgrading writes the new version under its own owner first, then switches
the table entry (one atomic file replace), then drops the old version: a
recall sees the old pack or the new one, never a mix. Operators trust
signing keys by putting PEM public keys in ``<data_dir>/packs/trusted/``
(or passing them on the command line); a signed pack whose signature does
not verify with a trusted key is refused, and so is any pack whose
checksums do not match.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory.archive import ArchiveError, ArchiveReader, ArchiveWriter, ImportReport, import_archive
from memory.cube import isoformat, tenant_of, utcnow
from memory.fingerprint import embedder_id
from memory.importers.base import ImportedItem, build_cubes
from memory.importers.facts import parse as parse_facts
from memory.pack_owner import NAME, VERSION, is_pack_owner, pack_owner

if TYPE_CHECKING:
    from memory.engine import MemoryEngine

PACK_FILE = "pack.json"
INSTALLED = "installed.json"
TRUSTED = "trusted"
SOURCES = (".md", ".markdown", ".txt", ".json", ".jsonl")
GLOBAL = "global"


class PackError(ArchiveError):
    """A pack that cannot be built, installed, upgraded or removed as asked."""


@dataclass(frozen=True, slots=True)
class PackInfo:
    name: str
    version: str
    author: str = ""
    license: str = ""
    description: str = ""

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PackInfo:
        if not isinstance(data, dict):
            raise PackError(f"{where}: the pack description must be a JSON object")
        info = cls(**{k: str(data.get(k) or "") for k in ("name", "version", "author", "license", "description")})
        if not NAME.match(info.name):
            raise PackError(f"{where}: pack name {info.name!r} must be lowercase letters, digits, '.', '_' or '-'")
        if not VERSION.match(info.version):
            raise PackError(f"{where}: pack version {info.version!r} is not a version")
        return info

    @property
    def owner(self) -> str:
        return pack_owner(self.name, self.version)


def scope_of(target: str | None) -> str:
    """``None`` -> global; ``tenant:T`` / ``user:U`` as given; a bare name is a user."""
    if not target or target == GLOBAL:
        return GLOBAL
    if target.startswith(("user:", "tenant:")):
        return target
    return f"user:{target}"


# -- signing ------------------------------------------------------------------


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def signer(private_pem: Path) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Signs a manifest's checksum with an Ed25519 private key (PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(Path(private_pem).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise PackError(f"{Path(private_pem).name}: not an Ed25519 private key")

    def sign(manifest: dict[str, Any]) -> dict[str, Any]:
        value = key.sign(str(manifest["checksum"]).encode())
        return {"algorithm": "ed25519", "key_id": key_id(_raw(key.public_key())),
                "value": base64.b64encode(value).decode()}

    return sign


def verify_signature(manifest: dict[str, Any], trusted: Sequence[Path], *, required: bool) -> str | None:
    """The id of the trusted key that signed ``manifest``; None when unsigned (and allowed)."""
    signature = manifest.get("signature")
    if signature is None:
        if required:
            raise PackError("this pack is not signed and a signature is required")
        return None
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(signature, dict) or signature.get("algorithm") != "ed25519":
        raise PackError("unsupported pack signature (expected ed25519)")
    for path in trusted:
        try:
            key = serialization.load_pem_public_key(Path(path).read_bytes())
        except (OSError, ValueError) as exc:
            raise PackError(f"trusted key {Path(path).name} is not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey) or key_id(_raw(key)) != signature.get("key_id"):
            continue
        try:
            key.verify(base64.b64decode(str(signature.get("value"))), str(manifest["checksum"]).encode())
        except (InvalidSignature, ValueError) as exc:
            raise PackError("the pack's signature does not verify (the pack was altered)") from exc
        return str(signature["key_id"])
    raise PackError(f"the pack is signed by key {signature.get('key_id')!r}, which this operator does not trust")


# -- building -----------------------------------------------------------------


def read_source(directory: Path) -> tuple[PackInfo, list[ImportedItem]]:
    directory = Path(directory)
    meta = directory / PACK_FILE
    try:
        info = PackInfo.from_dict(json.loads(meta.read_text(encoding="utf-8")), PACK_FILE)
    except (OSError, ValueError) as exc:
        raise PackError(f"{directory.name}: needs a readable {PACK_FILE} (name, version, author, license, description)") from exc
    items: list[ImportedItem] = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in SOURCES):
        if path != meta:
            items.extend(parse_facts(path))
    if not items:
        raise PackError(f"{directory.name}: no Markdown or JSON knowledge files")
    return info, items


async def build_pack(engine: MemoryEngine, directory: Path, out: Path, *, sign_with: Path | None = None) -> dict[str, Any]:
    """Build a pack archive from a directory of Markdown/JSON files and a ``pack.json``; returns its manifest."""
    info, items = read_source(directory)
    cubes = sorted(build_cubes(engine, info.owner, "pack", items), key=lambda c: c.id)
    vectors = await engine.embedder.embed_memories([c.content for c in cubes])
    writer = ArchiveWriter(kind="pack", owner=info.owner, embedder=await embedder_id(engine.embedder))
    writer.add(cubes, vectors)
    sign = signer(sign_with) if sign_with is not None else None
    tmp = out.with_name(out.name + ".part")
    with tmp.open("wb") as handle:
        handle.write(writer.take())
        for chunk in writer.finish({"pack": asdict(info)}, sign):
            handle.write(chunk)
    tmp.replace(out)
    with ArchiveReader(out) as reader:
        return reader.manifest


# -- the install table --------------------------------------------------------


class PackRegistry:
    """The install table, a small JSON file re-read when another process changed it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / INSTALLED
        self._stamp: tuple[int, int] | None = None
        self._data: dict[str, dict[str, Any]] = {}

    def installed(self) -> dict[str, dict[str, Any]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._data = None, {}
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
            self._stamp = stamp
        return self._data

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # readers see the old table or the new one
        self._stamp, self._data = None, {}

    def owners_for(self, user: str, tenant: str | None = None) -> list[str]:
        """Packs installed globally, for ``user``, or for their tenant (by default the
        tenant their stored name carries, ``acme/alice`` -> ``acme``)."""
        if is_pack_owner(user):
            return []
        tenant = tenant if tenant is not None else tenant_of(user)
        wanted = {GLOBAL, f"user:{user}"} | ({f"tenant:{tenant}"} if tenant else set())
        return [entry["owner"] for _, entry in sorted(self.installed().items()) if wanted & set(entry["scopes"])]

    def trusted_keys(self, extra: Sequence[Path] = ()) -> list[Path]:
        folder = self.directory / TRUSTED
        found = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        return [*extra, *found]


def _open_pack(path: Path, registry: PackRegistry, trusted: Sequence[Path], required: bool) -> tuple[ArchiveReader, PackInfo, str | None]:
    reader = ArchiveReader(path)
    try:
        manifest = reader.manifest
        if manifest.get("type") != "pack":
            raise PackError(f"{Path(path).name}: not a memory pack (type {manifest.get('type')!r})")
        info = PackInfo.from_dict(manifest.get("pack"), Path(path).name)
        if reader.owner != info.owner:
            raise PackError(f"{Path(path).name}: the pack's memories belong to {reader.owner!r}, not {info.owner!r}")
        signed_by = verify_signature(manifest, registry.trusted_keys(trusted), required=required)
        reader.verify()
    except BaseException:
        reader.close()
        raise
    return reader, info, signed_by


def _entry(info: PackInfo, manifest: dict[str, Any], scopes: list[str], signed_by: str | None) -> dict[str, Any]:
    return {
        **asdict(info),
        "owner": info.owner,
        "scopes": sorted(set(scopes)),
        "checksum": manifest["checksum"],
        "signed_by": signed_by,
        "memories": manifest["counts"]["memories"],
        "installed_at": isoformat(utcnow()),
    }


async def _write(engine: MemoryEngine, reader: ArchiveReader, info: PackInfo) -> ImportReport:
    try:
        return await import_archive(engine, reader, user=info.owner, on_conflict="replace", allow_pack=True)
    except BaseException:
        await engine.forget(info.owner)  # a half-written pack leaves no trace
        raise


async def install(
    engine: MemoryEngine,
    registry: PackRegistry,
    path: Path,
    *,
    target: str | None = None,
    trusted: Sequence[Path] = (),
    require_signature: bool = False,
) -> dict[str, Any]:
    """Install a pack for everyone (``target`` None), a tenant (``tenant:T``) or a user."""
    scope = scope_of(target)
    reader, info, signed_by = _open_pack(path, registry, trusted, require_signature)
    with reader:
        table = dict(registry.installed())
        current = table.get(info.name)
        if current is not None and current["version"] != info.version:
            raise PackError(f"{info.name} {current['version']} is installed; use `memproxy packs upgrade` for {info.version}")
        if current is not None and current["checksum"] != reader.manifest["checksum"]:
            raise PackError(f"{info.name}@{info.version} is installed with different contents; remove it first")
        if current is None:
            await _write(engine, reader, info)
        scopes = [*(current["scopes"] if current else []), scope]
        table[info.name] = _entry(info, reader.manifest, scopes, signed_by)
        if current is not None:
            table[info.name]["installed_at"] = current["installed_at"]
        registry.save(table)
        return table[info.name]


async def upgrade(
    engine: MemoryEngine, registry: PackRegistry, path: Path, *, trusted: Sequence[Path] = (), require_signature: bool = False
) -> dict[str, Any]:
    """Replace an installed pack by another version, keeping its scopes; atomic for recall."""
    reader, info, signed_by = _open_pack(path, registry, trusted, require_signature)
    with reader:
        table = dict(registry.installed())
        current = table.get(info.name)
        if current is None:
            raise PackError(f"{info.name} is not installed; use `memproxy packs install`")
        if current["version"] == info.version:
            raise PackError(f"{info.name}@{info.version} is already installed")
        await _write(engine, reader, info)
        table[info.name] = _entry(info, reader.manifest, current["scopes"], signed_by)
        registry.save(table)  # the switch: recall now sees the new version only
    await engine.forget(current["owner"])
    return table[info.name]


async def remove(engine: MemoryEngine, registry: PackRegistry, name: str, *, target: str | None = None) -> dict[str, Any]:
    """Remove one scope (``target``) or, without one or when none is left, the whole pack: every trace."""
    table = dict(registry.installed())
    current = table.get(name)
    if current is None:
        raise PackError(f"no pack named {name!r} is installed")
    scopes = set(current["scopes"])
    if target is not None:
        scope = scope_of(target)
        if scope not in scopes:
            raise PackError(f"{name} is not installed for {scope}")
        scopes.discard(scope)
    if target is not None and scopes:
        table[name] = {**current, "scopes": sorted(scopes)}
        registry.save(table)
        return {"name": name, "removed": False, "scopes": sorted(scopes)}
    del table[name]
    registry.save(table)  # recall stops seeing it first
    deleted = await engine.forget(current["owner"])  # then the store, the lexical index and the core cache
    return {"name": name, "removed": True, "deleted": deleted}
