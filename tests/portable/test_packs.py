"""Memory packs: build, scopes, recall with their source, remove every trace, upgrade, tampering refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from memory import packs
from memory.archive import MEMORIES, ArchiveError, export_to_file
from memory.cube import Owner
from memory.engine import NewMemory
from memory.errors import InvalidMemory
from memory.packs import PackError, PackRegistry, build_pack
from tests.portable.portable_helpers import EXAMPLE_PACK, rewrite

QUERY = "how do I cut needless words from my essay?"
OWNER = "pack:elements-of-style@1918.1"


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def pack_hits(result) -> list[str]:
    return [item.text for item in result.items if item.cube.owner.user.startswith("pack:")]


def test_install_for_one_user_then_globally_then_remove_every_trace(open_engine, tmp_path: Path):
    async def scenario() -> None:
        engine = await open_engine()
        registry = PackRegistry(tmp_path / "packs")
        engine.packs = registry
        built = tmp_path / "style.memcube"
        manifest = await build_pack(engine, EXAMPLE_PACK, built)
        assert manifest["type"] == "pack" and manifest["pack"]["license"].startswith("Public domain")
        await engine.add(Owner("alice"), [NewMemory(content="My essay on Lisbon trams must stay under 1,000 words.")])
        await packs.install(engine, registry, built, target="alice")
        alice = await engine.search("alice", QUERY)
        assert pack_hits(alice) and pack_hits(alice)[0].startswith("[pack: elements-of-style@1918.1] Omit needless words")
        assert any(i.cube.owner.user == "alice" for i in alice.items)  # the user's own, under the same budget
        assert alice.tokens <= engine.settings.token_budget
        assert pack_hits(await engine.search("bob", QUERY)) == []
        with pytest.raises(InvalidMemory):  # read-only
            await engine.add(Owner(OWNER), [NewMemory(content="sneaky")])
        await export_to_file(engine, "alice", tmp_path / "alice.memcube")  # never exported as the user's own
        assert b"needless" not in (tmp_path / "alice.memcube").read_bytes()
        await packs.install(engine, registry, built)  # and now for everyone
        assert pack_hits(await engine.search("bob", QUERY))
        assert registry.installed()["elements-of-style"]["scopes"] == ["global", "user:alice"]
        await packs.remove(engine, registry, "elements-of-style", target="alice")
        assert pack_hits(await engine.search("alice", QUERY))  # still global
        result = await packs.remove(engine, registry, "elements-of-style")
        assert result["removed"] and result["deleted"] == manifest["counts"]["memories"]
        assert pack_hits(await engine.search("alice", QUERY)) == []
        assert (await engine.list(OWNER)).items == []  # the store
        assert OWNER not in engine._lexical._cache  # the lexical cache
        assert registry.installed() == {}

    open_engine.run(scenario())


def test_upgrade_replaces_the_old_version(open_engine, tmp_path: Path):
    async def scenario() -> None:
        engine = await open_engine()
        registry = PackRegistry(tmp_path / "packs")
        engine.packs = registry
        await build_pack(engine, EXAMPLE_PACK, tmp_path / "v1.memcube")
        source = tmp_path / "v2src"
        shutil.copytree(EXAMPLE_PACK, source)
        meta = json.loads((source / "pack.json").read_text())
        (source / "pack.json").write_text(json.dumps({**meta, "version": "1918.2"}))
        with (source / "rules.md").open("a") as rules:
            rules.write("\n- Write with nouns and verbs, not with adjectives and adverbs.\n")
        await build_pack(engine, source, tmp_path / "v2.memcube")
        await packs.install(engine, registry, tmp_path / "v1.memcube", target="alice")
        with pytest.raises(PackError, match="upgrade"):
            await packs.install(engine, registry, tmp_path / "v2.memcube")
        entry = await packs.upgrade(engine, registry, tmp_path / "v2.memcube")
        assert entry["version"] == "1918.2" and entry["scopes"] == ["user:alice"]
        hits = pack_hits(await engine.search("alice", "nouns and verbs or adjectives?"))
        assert hits and all(h.startswith("[pack: elements-of-style@1918.2]") for h in hits)
        assert (await engine.list(OWNER)).items == []

    open_engine.run(scenario())


def test_tampered_or_untrusted_packs_are_refused(open_engine, tmp_path: Path):
    async def scenario() -> None:
        engine = await open_engine()
        registry = PackRegistry(tmp_path / "packs")
        engine.packs = registry
        private, public = keypair(tmp_path, "author")
        _, other = keypair(tmp_path, "stranger")
        signed = tmp_path / "signed.memcube"
        await build_pack(engine, EXAMPLE_PACK, signed, sign_with=private)
        with pytest.raises(PackError, match="does not trust"):
            await packs.install(engine, registry, signed, trusted=[other])
        forged = tmp_path / "forged.memcube"  # content changed and every checksum resealed: the signature fails
        rewrite(signed, forged, member=(MEMORIES, lambda b: b.replace(b"Omit needless", b"Add many")),
                manifest=lambda m: m["files"][MEMORIES].update(sha256=__import__("hashlib").sha256(
                    b"").hexdigest()))
        with pytest.raises(ArchiveError):
            await packs.install(engine, registry, forged, trusted=[public])
        altered = tmp_path / "altered.memcube"
        rewrite(signed, altered, manifest=lambda m: m["pack"].update(description="free!"))
        with pytest.raises(PackError, match="signature"):
            await packs.install(engine, registry, altered, trusted=[public])
        unsigned = tmp_path / "unsigned.memcube"
        await build_pack(engine, EXAMPLE_PACK, unsigned)
        tampered = tmp_path / "tampered.memcube"
        rewrite(unsigned, tampered, member=(MEMORIES, lambda b: b.replace(b"Omit needless", b"Add many")))
        with pytest.raises(ArchiveError, match="checksum"):
            await packs.install(engine, registry, tampered)
        with pytest.raises(PackError, match="not signed"):
            await packs.install(engine, registry, unsigned, require_signature=True)
        assert registry.installed() == {} and (await engine.list(OWNER)).items == []
        (tmp_path / "packs" / "trusted").mkdir(parents=True)
        shutil.copy(public, tmp_path / "packs" / "trusted" / "author.pub")  # trusted by the operator
        entry = await packs.install(engine, registry, signed)
        assert entry["signed_by"] and pack_hits(await engine.search("zoe", QUERY))

    open_engine.run(scenario())


def test_a_tenant_install_reaches_that_tenants_owners_only(open_engine, tmp_path: Path):
    async def scenario() -> None:
        engine = await open_engine()
        registry = PackRegistry(tmp_path / "packs")
        engine.packs = registry
        built = tmp_path / "style.memcube"
        await build_pack(engine, EXAMPLE_PACK, built)
        await packs.install(engine, registry, built, target="tenant:acme")
        assert pack_hits(await engine.search("acme/alice", QUERY)), "a service key's end user in acme"
        assert pack_hits(await engine.search("beta/alice", QUERY)) == []
        assert pack_hits(await engine.search("alice", QUERY)) == []

    open_engine.run(scenario())
