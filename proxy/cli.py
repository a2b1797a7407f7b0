"""The ``memproxy`` command: ``serve``, ``keys``, ``mcp``, ``memories``, ``export``, ``import``, ``packs`` and ``bench``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from proxy.environment import prepare_environment

    prepare_environment()  # before anything imports litellm, tiktoken or transformers
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:  # benchmarks are imported only when asked for
        from bench.cli import main as bench_main

        return bench_main(args[1:])
    parser = argparse.ArgumentParser(prog="memproxy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands.add_parser("serve", help="run the proxy"))
    _add_keys(commands.add_parser("keys", help="create, list and revoke API keys (auth.mode: keys)"))
    _add_mcp(commands.add_parser("mcp", help="an MCP server over stdio, for a running memproxy (docs/mcp.md)"))
    commands.add_parser("bench", help="run a benchmark (memproxy bench --help)")
    from proxy.portable.cli import add_commands as add_portable_commands  # its heavy imports are lazy

    add_portable_commands(commands)
    from proxy.memories.cli import add_commands as add_memories_commands

    add_memories_commands(commands)
    parsed = parser.parse_args(args)
    return int(parsed.handler(parsed) or 0)


def _add_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (see config.example.yaml)")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--data-dir")
    parser.add_argument("--upstream-base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--upstream-model", help="model name sent upstream, overriding the client's")
    parser.add_argument("--upstream-api-key", help="key for the upstream (default: forward the client's)")
    parser.add_argument("--upstream-provider", help="openai | litellm | llamacpp | auto (default)")
    parser.add_argument("--ollama-base-url", help="the Ollama server behind /api/* (default http://127.0.0.1:11434)")
    parser.add_argument("--auth-mode", choices=("auto", "none", "keys"), help="auto (default): open on loopback only")
    parser.add_argument("--log-level")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes on this port (>1 needs memory.chroma_url; docs/deployment.md)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                        help="on SIGTERM, how long requests in flight may take to finish (default 30)")
    parser.set_defaults(handler=_serve)


def _add_mcp(parser: argparse.ArgumentParser) -> None:
    import os

    parser.add_argument("--url", default=os.environ.get("MEMPROXY_URL", "http://127.0.0.1:8000"),
                        help="the running memproxy (env MEMPROXY_URL)")
    parser.add_argument("--api-key", default=os.environ.get("MEMPROXY_API_KEY"),
                        help="a memproxy key when auth is on (env MEMPROXY_API_KEY; prefer the environment)")
    parser.add_argument("--user", default=os.environ.get("MEMPROXY_USER"),
                        help="the memory owner tools act as by default (env MEMPROXY_USER; a user key needs none)")
    parser.set_defaults(handler=_mcp)


def _mcp(args: argparse.Namespace) -> int:
    from proxy.mcp.stdio import run_stdio

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)  # stdout is the MCP channel
    run_stdio(args.url, args.api_key, args.user)
    return 0


def _add_keys(parser: argparse.ArgumentParser) -> None:
    from proxy.auth.keys import KINDS, SCOPES

    actions = parser.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config file (for data_dir and auth.keys_file)")
    common.add_argument("--data-dir", help="the proxy's data directory (the key store is <data-dir>/keys.sqlite3)")
    common.add_argument("--keys-file", help="the key store file, overriding auth.keys_file")
    create = actions.add_parser("create", parents=[common], help="create a key and print it once")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--kind", required=True, choices=KINDS)
    create.add_argument("--scope", action="append", dest="scopes", choices=SCOPES, help="repeat; default by kind")
    create.add_argument("--tenant", help="a service key's namespace (optional for a user key)")
    create.add_argument("--user", help="the memory owner a user key acts as")
    create.add_argument(
        "--upstream-api-key-env",
        metavar="VAR",
        help="take this key's upstream credential from environment variable VAR (kept off the command line)",
    )
    create.add_argument("--json", action="store_true", help="print the key's record and plaintext as JSON")
    create.set_defaults(handler=_keys_create)
    listing = actions.add_parser("list", parents=[common], help="list keys (never their plaintext)")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_keys_list)
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=_keys_revoke)


def _key_store(args: argparse.Namespace):  # -> KeyStore
    from proxy.auth.keys import KeyStore
    from proxy.config import load_settings

    settings = load_settings(args.config, data_dir=args.data_dir, auth={"keys_file": args.keys_file})
    return KeyStore(settings.auth.keys_path(settings.data_path))


def _keys_create(args: argparse.Namespace) -> int:
    import json
    import os

    from proxy.auth.keys import InvalidKey

    upstream_key = None
    if args.upstream_api_key_env:
        upstream_key = os.environ.get(args.upstream_api_key_env)
        if not upstream_key:
            print(f"memproxy: environment variable {args.upstream_api_key_env} is not set", file=sys.stderr)
            return 2
    try:
        store = _key_store(args)
        key, token = store.create(
            name=args.name,
            kind=args.kind,
            scopes=args.scopes,
            tenant=args.tenant,
            user=args.user,
            upstream_api_key=upstream_key,
        )
    except (OSError, ValueError) as exc:  # InvalidKey is a ValueError
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, InvalidKey) else 1
    store.close()
    if args.json:
        print(json.dumps({**key.to_dict(), "key": token}, ensure_ascii=False))
    else:
        print(token)
        print(f"created {key.id} ({key.kind}, scopes: {' '.join(key.scopes)}); the key is shown only once", file=sys.stderr)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    import json

    try:
        store = _key_store(args)
    except (OSError, ValueError) as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    keys = store.list(include_revoked=args.all)
    store.close()
    if args.json:
        print(json.dumps([k.to_dict() for k in keys], ensure_ascii=False))
        return 0
    for k in keys:
        binding = k.owner if k.kind == "user" else (f"tenant={k.tenant}" if k.tenant else "all tenants")
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        print(f"{k.id}\t{k.name}\t{k.kind}\t{binding}\t{','.join(k.scopes)}\t{k.hint}\t{state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    try:
        store = _key_store(args)
    except (OSError, ValueError) as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    key = store.revoke(args.key_id)
    store.close()
    if key is None:
        print(f"memproxy: no key with id {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {key.id} ({key.name})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from proxy.config import load_settings
    from proxy.serving import run, workers_problem

    overrides = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "log_level": args.log_level,
        "upstream": {
            "base_url": args.upstream_base_url,
            "model": args.upstream_model,
            "api_key": args.upstream_api_key,
            "provider": args.upstream_provider,
        },
        "ollama": {"base_url": args.ollama_base_url},
        "auth": {"mode": args.auth_mode},
    }
    try:
        settings = load_settings(args.config, **overrides)
        settings.resolved_auth_mode()  # the safe default: refuse an open proxy on a network address
        problem = workers_problem(args.workers, settings.memory.chroma_url)
        if problem:
            raise ValueError(problem)
    except (OSError, ValueError) as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    return run(args.config, overrides, workers=args.workers, drain_timeout_s=args.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
