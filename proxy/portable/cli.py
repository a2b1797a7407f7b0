"""``memproxy export``, ``memproxy import`` and ``memproxy packs …``: portable
memory on a data dir, offline (the engine is opened directly; stop a server
that uses the same embedded store first, or point both at a Chroma server).

Every command prints a JSON summary on stdout and progress on stderr; an
invalid file exits 2 with its reason and writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.engine import MemoryEngine
    from memory.packs import PackRegistry

CONFLICTS = ("skip", "replace", "new-version")


def add_commands(commands: Any) -> None:
    export = commands.add_parser("export", help="write a user's memories to a .memcube archive")
    _data_args(export)
    export.add_argument("--user", required=True, help="whose memories")
    export.add_argument("-o", "--output", required=True, help="the archive to write (.memcube)")
    export.add_argument("--no-vectors", action="store_true", help="leave the vectors out (smaller; re-embedded on import)")
    export.set_defaults(handler=lambda a: _run(_export, a))

    imp = commands.add_parser("import", help="import a .memcube archive or another tool's export")
    _data_args(imp)
    imp.add_argument("file", help="a .memcube, conversations.json, mem0 JSON, a MemOS cube dir, a Letta .af, facts")
    imp.add_argument("--as-user", "--user", dest="as_user", help="import as this user (required for non-archives)")
    imp.add_argument("--on-conflict", choices=CONFLICTS, default="skip", help="an id already stored (default skip)")
    imp.add_argument("--format", default="auto", help="auto | memcube | chatgpt | mem0 | memos | letta | facts")
    imp.set_defaults(handler=lambda a: _run(_import, a))

    packs = commands.add_parser("packs", help="build, install, list, upgrade and remove memory packs")
    sub = packs.add_subparsers(dest="packs_command", required=True)
    build = sub.add_parser("build", help="make a pack from a directory of Markdown/JSON files and a pack.json")
    _data_args(build)
    build.add_argument("dir")
    build.add_argument("-o", "--output", help="default: <name>-<version>.memcube in the current directory")
    build.add_argument("--sign", help="an Ed25519 private key (PEM) to sign the pack with")
    build.set_defaults(handler=lambda a: _run(_build, a))
    for name, help_text in (("install", "install a pack (globally, or --for a user / tenant:T)"),
                            ("upgrade", "replace an installed pack by another version (atomic)")):
        cmd = sub.add_parser(name, help=help_text)
        _data_args(cmd)
        cmd.add_argument("file")
        if name == "install":
            cmd.add_argument("--for", dest="target", help="a user (or user:U, tenant:T); default: everyone")
        cmd.add_argument("--trusted-key", action="append", default=[], help="a trusted Ed25519 public key (PEM)")
        cmd.add_argument("--require-signature", action="store_true", help="refuse unsigned packs")
        cmd.set_defaults(handler=lambda a: _run(_install, a))
    listing = sub.add_parser("list", help="installed packs")
    _data_args(listing)
    listing.set_defaults(handler=lambda a: _run(_list, a))
    remove = sub.add_parser("remove", help="uninstall a pack (every trace), or only --for one user / tenant")
    _data_args(remove)
    remove.add_argument("name")
    remove.add_argument("--for", dest="target", help="remove only this scope")
    remove.set_defaults(handler=lambda a: _run(_remove, a))


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see config.example.yaml)")
    parser.add_argument("--data-dir", help="the data dir (default from the config)")


def _run(command: Callable[[argparse.Namespace], Coroutine[Any, Any, dict[str, Any]]], args: argparse.Namespace) -> int:
    from memory.archive import ArchiveError

    try:
        summary: dict[str, Any] = asyncio.run(command(args))
    except (ArchiveError, OSError, ValueError) as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


@asynccontextmanager
async def _engine(args: argparse.Namespace) -> AsyncIterator[tuple[MemoryEngine, PackRegistry]]:
    from memory.engine import MemoryEngine
    from memory.packs import PackRegistry
    from proxy.config import load_settings

    settings = load_settings(args.config, data_dir=args.data_dir)
    settings.data_path.mkdir(parents=True, exist_ok=True)
    engine = await MemoryEngine.open(settings.memory, settings.data_path)
    registry = PackRegistry(settings.data_path / "packs")
    engine.packs = registry
    try:
        yield engine, registry
    finally:
        await engine.aclose()


def _bar(total: int | None, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=" memories", desc=what, file=sys.stderr, dynamic_ncols=True)


async def _export(args: argparse.Namespace) -> dict[str, Any]:
    import time

    from memory.archive import export_to_file

    async with _engine(args) as (engine, _):
        started = time.perf_counter()
        with _bar(None, "export") as bar:
            count = await export_to_file(engine, args.user, Path(args.output), vectors=not args.no_vectors,
                                         progress=bar.update)
        seconds = time.perf_counter() - started
    return {"object": "memories.export", "user": args.user, "file": args.output, "memories": count,
            "seconds": round(seconds, 3), "memories_per_s": round(count / seconds, 1) if seconds else 0.0,
            "bytes": Path(args.output).stat().st_size}


async def _import(args: argparse.Namespace) -> dict[str, Any]:
    from memory.archive import ArchiveError, ArchiveReader, import_archive
    from memory.importers import ARCHIVE, detect, import_items, parse

    path = Path(args.file)
    fmt = detect(path) if args.format == "auto" else args.format
    if fmt != ARCHIVE and not args.as_user:
        raise ArchiveError(f"importing a {fmt} file needs --as-user")
    async with _engine(args) as (engine, _):
        if fmt == ARCHIVE:
            with ArchiveReader(path) as reader, _bar(reader.count, "import") as bar:
                report = await import_archive(engine, reader, user=args.as_user, on_conflict=args.on_conflict,
                                              progress=bar.update)
        else:
            items = parse(path, fmt)
            with _bar(len(items), f"import {fmt}") as bar:
                report = await import_items(engine, args.as_user, fmt, items, progress=bar.update)
    return {"object": "memories.import", "format": fmt, **report.to_dict()}


async def _build(args: argparse.Namespace) -> dict[str, Any]:
    from memory.packs import PackInfo, build_pack, read_source

    info: PackInfo = read_source(Path(args.dir))[0]
    out = Path(args.output or f"{info.name}-{info.version}.memcube")
    async with _engine(args) as (engine, _):
        manifest = await build_pack(engine, Path(args.dir), out, sign_with=Path(args.sign) if args.sign else None)
    return {"object": "pack.build", "file": str(out), **manifest["pack"], "memories": manifest["counts"]["memories"],
            "checksum": manifest["checksum"], "signed": "signature" in manifest}


async def _install(args: argparse.Namespace) -> dict[str, Any]:
    from memory import packs

    trusted = [Path(k) for k in args.trusted_key]
    async with _engine(args) as (engine, registry):
        if args.packs_command == "upgrade":
            entry = await packs.upgrade(engine, registry, Path(args.file), trusted=trusted,
                                        require_signature=args.require_signature)
        else:
            entry = await packs.install(engine, registry, Path(args.file), target=args.target, trusted=trusted,
                                        require_signature=args.require_signature)
    return {"object": f"pack.{args.packs_command}", **entry}


async def _list(args: argparse.Namespace) -> dict[str, Any]:
    from memory.packs import PackRegistry
    from proxy.config import load_settings

    settings = load_settings(args.config, data_dir=args.data_dir)  # no engine needed
    table = PackRegistry(settings.data_path / "packs").installed()
    return {"object": "list", "data": [table[name] for name in sorted(table)]}


async def _remove(args: argparse.Namespace) -> dict[str, Any]:
    from memory import packs

    async with _engine(args) as (engine, registry):
        result = await packs.remove(engine, registry, args.name, target=args.target)
    return {"object": "pack.removed", **result}
