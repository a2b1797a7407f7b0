"""The ``memproxy`` command: ``serve``, ``bench``, ``export``, ``import`` and ``packs``."""

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
    commands.add_parser("bench", help="run a benchmark (memproxy bench --help)")
    from proxy.portable.cli import add_commands as add_portable_commands  # its heavy imports are lazy

    add_portable_commands(commands)
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
    parser.add_argument("--log-level")
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import create_app
    from proxy.config import load_settings

    try:
        settings = load_settings(
            args.config,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            log_level=args.log_level,
            upstream={
                "base_url": args.upstream_base_url,
                "model": args.upstream_model,
                "api_key": args.upstream_api_key,
                "provider": args.upstream_provider,
            },
            ollama={"base_url": args.ollama_base_url},
        )
    except (OSError, ValueError) as exc:
        print(f"memproxy: {exc}", file=sys.stderr)
        return 2
    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(), access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
