"""``memproxy memories list|search|show|edit|rm|forget|explain``: memories for people, over HTTP.

A client of a running server (``--url`` / ``MEMPROXY_URL``), with its key
(``--api-key`` / ``MEMPROXY_API_KEY``) and owner (``--user`` /
``MEMPROXY_USER``): the server applies the same rules as to any caller.
Tables are Rich; ``--json`` prints the API's answer instead. An API error
prints its message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any
from urllib.parse import quote

import httpx

TIMEOUT_S = 60.0
PAGE = 1000


def add_commands(commands: Any) -> None:
    memories = commands.add_parser("memories", help="list, search, show, edit, delete, forget and explain memories")
    actions = memories.add_subparsers(dest="memories_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("MEMPROXY_URL", "http://127.0.0.1:8000"), help="env MEMPROXY_URL")
    common.add_argument("--api-key", default=os.environ.get("MEMPROXY_API_KEY"), help="env MEMPROXY_API_KEY")
    common.add_argument("--user", default=os.environ.get("MEMPROXY_USER"), help="the owner (env MEMPROXY_USER)")
    common.add_argument("--json", action="store_true", help="print the API's JSON")

    listing = actions.add_parser("list", parents=[common], help="a user's memories, oldest first")
    listing.add_argument("--tier", choices=("recall", "core"))
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50; 0: all, paged with a progress bar)")
    listing.set_defaults(handler=_list)
    search = actions.add_parser("search", parents=[common], help="ranked search, as recall does")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=10)
    search.set_defaults(handler=_search)
    show = actions.add_parser("show", parents=[common], help="one memory with its dates and provenance")
    show.add_argument("memory_id")
    show.set_defaults(handler=_show)
    edit = actions.add_parser("edit", parents=[common], help="change a memory's content, kind or tier (pin/unpin)")
    edit.add_argument("memory_id")
    edit.add_argument("--content")
    edit.add_argument("--kind")
    edit.add_argument("--tier", choices=("recall", "core"), help="core: pin; recall: unpin")
    edit.set_defaults(handler=_edit)
    rm = actions.add_parser("rm", parents=[common], help="delete memories by id")
    rm.add_argument("memory_ids", nargs="+")
    rm.set_defaults(handler=_rm)
    forget = actions.add_parser("forget", parents=[common], help="erase every memory of --user")
    forget.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    forget.set_defaults(handler=_forget)
    explain = actions.add_parser("explain", parents=[common], help="what recall would inject for a prompt, and why")
    explain.add_argument("query")
    explain.add_argument("--now", help="the time to recall at (ISO 8601; default now)")
    explain.add_argument("--token-budget", type=int)
    explain.set_defaults(handler=_explain)


class ApiError(Exception):
    pass


class Api:
    def __init__(self, args: argparse.Namespace) -> None:
        headers = {"User-Agent": "memproxy-cli"}
        if args.api_key:
            headers["Authorization"] = f"Bearer {args.api_key}"
        if args.user:
            headers["X-Memory-User"] = quote(args.user, safe="")
        self.client = httpx.Client(base_url=args.url.rstrip("/"), headers=headers, timeout=TIMEOUT_S)
        self.user = args.user

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach memproxy at {self.client.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ApiError(f"{response.status_code} {error.get('code') or error.get('type')}: {error['message']}")
            except (ValueError, KeyError, TypeError):
                raise ApiError(f"{response.status_code}: {response.text[:300]}") from None
        return response.json()

    def named(self) -> dict[str, str]:
        return {"user": self.user} if self.user else {}


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    try:
        api = Api(args)
        result = args.inner(api, args, console)
    except ApiError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        return 1
    if args.json and result is not None:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _wrap(inner: Any) -> Any:
    def handler(args: argparse.Namespace) -> int:
        args.inner = inner
        return run(args)

    return handler


def _memory_table(items: list[dict[str, Any]], title: str, score: bool = False) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False, expand=True)
    table.add_column("id", no_wrap=True, overflow="fold", max_width=36)
    table.add_column("content", ratio=3)
    table.add_column("kind")
    table.add_column("tier")
    table.add_column("state")
    table.add_column("created", no_wrap=True)
    if score:
        table.add_column("score", justify="right")
    for m in items:
        row: list[Any] = [m["id"], _plain(m["content"]), m.get("kind", ""), m.get("tier", ""), m.get("state", "active"),
               (m.get("created_at") or m.get("event_time") or "")[:16].replace("T", " ")]
        if score:
            row.append(f"{m['score']:.3f}")
        table.add_row(*row)
    return table


def _plain(text: str) -> Any:
    from rich.text import Text

    return Text(text)  # memory text is never read as Rich markup


def _list_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    from rich.progress import Progress

    params: dict[str, Any] = {**api.named(), "tier": args.tier}
    items: list[dict[str, Any]] = []
    after: str | None = None
    with Progress(console=console, transient=True, disable=args.json or args.limit != 0) as progress:
        task = progress.add_task("fetching memories", total=None)
        while True:
            want = PAGE if args.limit == 0 else min(PAGE, args.limit - len(items))
            page = api("GET", "/v1/memories", params={k: v for k, v in {**params, "limit": want, "after": after}.items() if v})
            items.extend(page["data"])
            progress.update(task, completed=len(items))
            if not page["has_more"] or (args.limit and len(items) >= args.limit):
                break
            after = page["last_id"]
    if args.json:
        return {"object": "list", "data": items}
    console.print(_memory_table(items, f"{len(items)} memories of {api.user or 'this key'}"))
    return None


def _search_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    found = api("POST", "/v1/memories/search", json={**api.named(), "query": args.query, "limit": args.limit})
    if args.json:
        return found
    console.print(_memory_table(found["data"], f"{len(found['data'])} matches for {args.query!r}", score=True))
    return None


def _show_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    from rich.table import Table

    m = api("GET", f"/v1/memories/{quote(args.memory_id, safe='')}")
    if args.json:
        return m
    table = Table(show_header=False, title=m["id"])
    table.add_column(style="bold")
    table.add_column()
    for key in ("user", "content", "kind", "tier", "state", "version", "event_time", "created_at", "updated_at", "tokens"):
        table.add_row(key, _plain(str(m.get(key))))
    table.add_row("provenance", _plain(json.dumps(m.get("provenance"), ensure_ascii=False)))
    table.add_row("metadata", _plain(json.dumps(m.get("metadata"), ensure_ascii=False)))
    console.print(table)
    return None


def _edit_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    patch = {k: v for k, v in {"content": args.content, "kind": args.kind, "tier": args.tier}.items() if v is not None}
    if not patch:
        raise ApiError("nothing to change: give --content, --kind or --tier")
    m = api("PATCH", f"/v1/memories/{quote(args.memory_id, safe='')}", json=patch)
    if args.json:
        return m
    console.print(_plain(f"updated {m['id']} to version {m['version']} (tier {m['tier']})"))
    return None


def _rm_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    from rich.progress import track

    done = []
    for memory_id in track(args.memory_ids, description="deleting", console=console, disable=len(args.memory_ids) < 5 or args.json):
        done.append(api("DELETE", f"/v1/memories/{quote(memory_id, safe='')}"))
    if args.json:
        return {"object": "list", "data": done}
    console.print(_plain(f"deleted {len(done)} memor{'y' if len(done) == 1 else 'ies'}"))
    return None


def _forget_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    if not api.user:
        raise ApiError("name the user to forget with --user (or MEMPROXY_USER)")
    if not args.yes:
        if not sys.stdin.isatty():
            raise ApiError("refusing to forget without confirmation: pass --yes")
        answer = console.input(f"Erase every memory of {api.user!r}? Type the name to confirm: ")
        if answer != api.user:
            raise ApiError("not confirmed; nothing erased")
    done = api("DELETE", f"/v1/users/{quote(api.user, safe='')}/memories")
    if args.json:
        return done
    console.print(_plain(f"forgot {api.user}: {done['deleted']} memories erased"))
    return None


def _explain_inner(api: Api, args: argparse.Namespace, console: Any) -> Any:
    from rich.table import Table

    body = {**api.named(), "query": args.query, "now": args.now, "token_budget": args.token_budget}
    x = api("POST", "/v1/memories/explain", json={k: v for k, v in body.items() if v is not None})
    if args.json:
        return x
    core = x["core"]
    console.print(_plain(
        f"core: {len(core['ids'])} memories, version {core['version']} · recalled: {len(x['injected'])} injected, "
        f"{x['tokens']}/{x['token_budget']} tokens · at {x['now']}"
    ))
    table = Table(title=f"explain {args.query!r}", expand=True)
    for column in ("#", "content", "score", "parts", "injected", "cut"):
        table.add_column(column, ratio=3 if column == "content" else None)
    for i, c in enumerate(x["candidates"], 1):
        parts = " ".join(f"{k}={v:.3f}" for k, v in c["parts"].items() if v)
        table.add_row(str(i), _plain(c["content"]), f"{c['score']:.3f}", parts, "yes" if c["injected"] else "no", c["cut"] or "")
    console.print(table)
    return None


_list = _wrap(_list_inner)
_search = _wrap(_search_inner)
_show = _wrap(_show_inner)
_edit = _wrap(_edit_inner)
_rm = _wrap(_rm_inner)
_forget = _wrap(_forget_inner)
_explain = _wrap(_explain_inner)
