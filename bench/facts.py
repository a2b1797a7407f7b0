"""``memproxy bench facts``: everyday personal facts, told in passing, recalled through chat.

The suite (``bench/data/facts.yaml``) holds everyday facts a user drops inside
ordinary requests ("My cat is called Mr. Pickles, he hates the vet. How do I
calm him?"), each asked about later in other words or needed implicitly
("suggest a dessert" after "I'm lactose intolerant"); some facts change later
("we moved from Porto to Lisbon"), and then the new value must be injected and
the old statement must not be.

Everything goes through the real chat path: a real proxy (in-process, on a
loopback port) in front of the fake OpenAI upstream of ``testing/``, which
answers every turn with a realistic ~300-word reply (model ``long-300``) and
records the prompts it receives. Facts are grouped ~10 per owner, round-robin
over the suite (so each owner holds a mix of topics). For each owner:

1. background history: at least ``--background`` real assistant-chat
   exchanges from LongMemEval haystack sessions (``"User: ...\\nAssistant:
   ..."``, their own 2023 dates), written through ``POST /v1/memories``;
2. the fact turns, then the update turns, each its own conversation, through
   ``/v1/chat/completions`` with the official ``openai`` client (memory on:
   the proxy writes them in the background, as for any user);
3. once every turn is stored, each probe is asked in a new conversation
   (``X-Memory: read``, so the probes do not become memories of their own),
   and scored on the prompt the upstream received: a fact is recalled when
   every ``expect`` string is inside the injected memory blocks
   (case-insensitive) and, for a changed fact, its ``stale`` string is not.

Reported: recalled share overall and per category; changed facts: current
value injected, stale statement injected, both right; injected tokens per
probe (cl100k, core and recalled blocks); latency of a probe through the proxy
against the same call straight to the upstream (paired, interleaved).
The recall deadline is raised to ``--deadline-ms`` (default 10 s) so that what
is measured is what memory finds, not how loaded the machine is; probes that
still came back degraded are counted.

The fake upstream lives in the source tree's ``testing`` package: run from a
source checkout (``PYTHONPATH=. memproxy bench facts`` at the repository root).
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fakes import fake_upstream
from bench.longmemeval import DEFAULT_DATA, Exchange, exchanges_of, load, parse_date, resolve_data
from bench.stats import latency_summary, median

SUITE = Path(__file__).parent / "data" / "facts.yaml"
MODEL = "long-300"  # the fake's ~300-word assistant replies
PER_OWNER = 10
BACKGROUND = 110
BATCH = 500
WAIT_S = 900.0
CATEGORIES = (
    "health", "diet", "family", "pets", "work", "home", "hobbies", "possessions", "plans", "preferences", "dislikes",
    "accessibility",
)


@dataclass(frozen=True, slots=True)
class Fact:
    id: str
    category: str
    say: str
    ask: str
    expect: tuple[str, ...]
    update: str | None = None
    stale: str | None = None

    @property
    def changes(self) -> bool:
        return self.update is not None


def load_suite(path: Path = SUITE) -> list[Fact]:
    return load_suite_text(path.read_text(encoding="utf-8"))


def load_suite_text(text: str) -> list[Fact]:
    """The suite, checked: every ``expect`` is in the statement (the update for a
    changed fact) and every ``stale`` is in the old statement only."""
    import yaml

    facts = []
    for raw in yaml.safe_load(text)["facts"]:
        fact = Fact(
            id=str(raw["id"]), category=str(raw["category"]), say=str(raw["say"]), ask=str(raw["ask"]),
            expect=tuple(str(e) for e in raw["expect"]), update=raw.get("update"), stale=raw.get("stale"),
        )
        source = (fact.update or fact.say).lower()
        missing = [e for e in fact.expect if e.lower() not in source]
        if not fact.expect or missing:
            raise ValueError(f"fact {fact.id!r}: expect {missing or '[]'} is not in what the user says")
        if fact.changes != (fact.stale is not None):
            raise ValueError(f"fact {fact.id!r}: a changed fact has both 'update' and 'stale'")
        if fact.stale is not None and (fact.stale.lower() not in fact.say.lower()
                                       or fact.stale.lower() in (fact.update or "").lower()):
            raise ValueError(f"fact {fact.id!r}: 'stale' must be in 'say' and not in 'update'")
        facts.append(fact)
    if len({f.id for f in facts}) != len(facts):
        raise ValueError("fact ids must be unique")
    return facts


def owners_of(facts: Sequence[Fact], per_owner: int = PER_OWNER) -> list[list[Fact]]:
    """Round-robin over the suite into groups of about ``per_owner`` facts."""
    count = max(1, -(-len(facts) // per_owner))
    return [list(facts[k::count]) for k in range(count)]


def background_of(raw: dict[str, Any], count: int) -> list[Exchange]:
    """The first ``count`` (or more: whole sessions) exchanges of an instance's haystack."""
    out: list[Exchange] = []
    for sid, date, session in zip(raw["haystack_session_ids"], raw["haystack_dates"], raw["haystack_sessions"],
                                  strict=True):
        if len(out) >= count:
            break
        out += exchanges_of(sid, parse_date(date), session)
    return out


# -- reading the upstream prompt ---------------------------------------------------


def memory_blocks(messages: Sequence[dict[str, Any]]) -> list[str]:
    """Every memory block (core and recalled) in a chat request's messages."""
    from memory.render import BLOCK_CLOSE, BLOCK_OPEN

    pattern = re.compile(re.escape(BLOCK_OPEN) + r".*?" + re.escape(BLOCK_CLOSE), re.DOTALL)
    blocks: list[str] = []
    for message in messages:
        content = message.get("content")
        parts = [content] if isinstance(content, str) else [
            p.get("text", "") for p in content or [] if isinstance(p, dict)
        ]
        for text in parts:
            blocks += pattern.findall(text or "")
    return blocks


def judge(fact: Fact, injected: str) -> dict[str, bool]:
    text = injected.lower()
    current = all(e.lower() in text for e in fact.expect)
    stale = fact.stale is not None and fact.stale.lower() in text
    return {"current": current, "stale": stale, "recalled": current and not stale}


# -- the run -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default=str(SUITE), help="the facts suite (YAML)")
    parser.add_argument("--data", default=DEFAULT_DATA, help="LongMemEval file for background history")
    parser.add_argument("--background", type=int, default=BACKGROUND,
                        help=f"background exchanges per owner, at least (default {BACKGROUND})")
    parser.add_argument("--per-owner", type=int, default=PER_OWNER, help=f"facts per owner (default {PER_OWNER})")
    parser.add_argument("--owners", type=int, default=0, help="only the first N owners (0 = all)")
    parser.add_argument("--deadline-ms", type=int, default=10_000, help="memory.recall_deadline_ms for the run")
    parser.add_argument("--json", dest="json_path", help="also write the results as JSON here")


def run(args: argparse.Namespace) -> int:
    data = resolve_data(args.data)
    if not data.exists():
        raise SystemExit(f"no LongMemEval data at {data} (--data)")
    results = measure(Path(args.suite), data, background=args.background, per_owner=args.per_owner,
                      owners=args.owners, deadline_ms=args.deadline_ms)
    print(render(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))
    return 0


def measure(suite: Path, data: Path, *, background: int = BACKGROUND, per_owner: int = PER_OWNER, owners: int = 0,
            deadline_ms: int = 10_000, embedder: Any = None, model: str = MODEL) -> dict[str, Any]:
    import httpx
    from openai import OpenAI

    from bench.longmemeval import progress_bar
    from memory.tokens import TokenCounter
    from proxy.app import create_app
    from proxy.config import load_settings

    fake_openai, server_thread = fake_upstream("facts")
    started = time.perf_counter()
    groups = owners_of(load_suite(suite), per_owner)
    groups = groups[:owners] if owners > 0 else groups
    instances = load(data)
    counter = TokenCounter()
    fake = fake_openai()
    rows: list[dict[str, Any]] = []
    direct_ms: list[float] = []
    proxied_ms: list[float] = []
    timings: dict[str, float] = {}
    degraded = 0
    with (tempfile.TemporaryDirectory(prefix="memproxy-facts-") as tmp, server_thread(fake.app()) as upstream,
          progress_bar() as bar):
        settings = load_settings(data_dir=tmp, upstream={"base_url": f"{upstream.url}/v1", "provider": "openai"},
                                 memory={"recall_deadline_ms": deadline_ms})
        with server_thread(create_app(settings, embedder=embedder)) as proxy:
            via = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-bench", max_retries=0, timeout=600)
            direct = OpenAI(base_url=f"{upstream.url}/v1", api_key="sk-bench", max_retries=0, timeout=600)
            http = httpx.Client(base_url=proxy.url, timeout=600)
            users = [f"facts-{k}" for k in range(len(groups))]

            began = time.perf_counter()
            task = bar.add_task("background", total=len(groups))
            for k, user in enumerate(users):
                history = background_of(instances[k % len(instances)], background)
                for at in range(0, len(history), BATCH):
                    memories = [{"content": x.content, "event_time": x.when.isoformat(), "kind": "episodic",
                                 "metadata": {"session_id": x.session_id, "turns": list(x.turns)}}
                                for x in history[at : at + BATCH]]
                    http.post("/v1/memories", json={"user": user, "memories": memories}).raise_for_status()
                bar.advance(task)
            timings["background_s"] = time.perf_counter() - began

            began = time.perf_counter()
            turns = [(user, text) for user, group in zip(users, groups, strict=True)
                     for text in [f.say for f in group] + [f.update for f in group if f.update]]
            task = bar.add_task("fact turns", total=len(turns))
            for user, text in turns:
                via.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                            extra_headers={"X-Memory-User": user})
                bar.advance(task)
            timings["turns_s"] = time.perf_counter() - began

            began = time.perf_counter()
            for user, group in zip(users, groups, strict=True):
                said = [f.say for f in group] + [f.update for f in group if f.update]
                _wait_stored(http, user, said)
            timings["write_wait_s"] = time.perf_counter() - began

            began = time.perf_counter()
            task = bar.add_task("probes", total=sum(len(g) for g in groups))
            for user, group in zip(users, groups, strict=True):
                for fact in group:
                    messages: list[Any] = [{"role": "user", "content": fact.ask}]
                    t0 = time.perf_counter()
                    direct.chat.completions.create(model=model, messages=messages)
                    t1 = time.perf_counter()
                    raw = via.chat.completions.with_raw_response.create(
                        model=model, messages=messages, extra_headers={"X-Memory-User": user, "X-Memory": "read"})
                    t2 = time.perf_counter()
                    direct_ms.append((t1 - t0) * 1000)
                    proxied_ms.append((t2 - t1) * 1000)
                    degraded += raw.headers.get("x-memory-status") == "degraded"
                    blocks = memory_blocks(fake.chat_requests()[-1].body.get("messages", []))
                    injected = "\n".join(blocks)
                    rows.append({"id": fact.id, "category": fact.category, "owner": user, "changes": fact.changes,
                                 "tokens": counter.count(injected) if injected else 0, **judge(fact, injected)})
                    bar.advance(task)
            timings["probes_s"] = time.perf_counter() - began
            http.close()
    return summarise(rows, direct_ms, proxied_ms, degraded, timings, background, len(groups),
                     time.perf_counter() - started)


def _wait_stored(http: Any, user: str, said: Sequence[str]) -> None:
    """Until every turn in ``said`` is among ``user``'s memories (the proxy writes in the background)."""
    deadline = time.monotonic() + WAIT_S
    heads = [text[:60] for text in said]
    while True:
        contents: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"user": user, "limit": 1000, **({"after": after} if after else {})}
            page = http.get("/v1/memories", params=params).raise_for_status().json()
            contents += [m["content"] for m in page["data"]]
            if not page["has_more"]:
                break
            after = page["last_id"]
        missing = [h for h in heads if not any(h in c for c in contents)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{user}: {len(missing)} turns still not stored after {WAIT_S:.0f} s: {missing[:3]}")
        time.sleep(0.5)


def summarise(rows: list[dict[str, Any]], direct_ms: list[float], proxied_ms: list[float], degraded: int,
              timings: dict[str, float], background: int, owners: int, run_s: float) -> dict[str, Any]:
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    order = [c for c in CATEGORIES if c in by_category] + sorted(set(by_category) - set(CATEGORIES))
    changed = [r for r in rows if r["changes"]]
    tokens = [float(r["tokens"]) for r in rows]
    added = [p - d for p, d in zip(proxied_ms, direct_ms, strict=True)]
    return {
        "facts": len(rows),
        "owners": owners,
        "background_per_owner": background,
        "recalled": sum(r["recalled"] for r in rows),
        "recalled_share": round(sum(r["recalled"] for r in rows) / len(rows), 4) if rows else None,
        "per_category": {
            c: {"facts": len(by_category[c]), "recalled": sum(r["recalled"] for r in by_category[c]),
                "share": round(sum(r["recalled"] for r in by_category[c]) / len(by_category[c]), 4)}
            for c in order
        },
        "changed": {
            "facts": len(changed),
            "current_injected": sum(r["current"] for r in changed),
            "stale_injected": sum(r["stale"] for r in changed),
            "right": sum(r["recalled"] for r in changed),
            "share": round(sum(r["recalled"] for r in changed) / len(changed), 4) if changed else None,
        },
        "injected_tokens": {"mean": round(sum(tokens) / len(tokens), 1) if tokens else 0.0,
                            "p50": median(tokens), "max": max(tokens, default=0.0)},
        "latency_ms": {"direct": latency_summary(direct_ms), "proxied": latency_summary(proxied_ms),
                       "added": latency_summary(added)},
        "degraded_probes": degraded,
        "missed": [r["id"] for r in rows if not r["recalled"]],
        "rows": rows,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "run_s": round(run_s, 1),
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        f"Everyday facts through chat - {results['facts']} facts, {results['owners']} owners, "
        f">= {results['background_per_owner']} background exchanges each",
        "",
        "| category | facts | recalled | share |",
        "|---|---|---|---|",
    ]
    for category, row in results["per_category"].items():
        lines.append(f"| {category} | {row['facts']} | {row['recalled']} | {row['share']:.2f} |")
    share = results["recalled_share"]
    lines.append(f"| **all** | {results['facts']} | {results['recalled']} | **{share:.2f}** |")
    ch = results["changed"]
    tok = results["injected_tokens"]
    lat = results["latency_ms"]
    timings = ", ".join(f"{k} {v:.0f}" for k, v in results["timings_s"].items())
    lines += [
        "",
        f"changed facts: {ch['right']}/{ch['facts']} right (current value injected: {ch['current_injected']}, "
        f"stale statement injected: {ch['stale_injected']})",
        f"injected tokens per probe: mean {tok['mean']:.0f}, median {tok['p50']:.0f}, max {tok['max']:.0f}",
        f"probe latency: direct p50 {lat['direct']['p50']:.1f} ms, through the proxy p50 {lat['proxied']['p50']:.1f} ms; "
        f"added p50 {lat['added']['p50']:.1f} ms, p95 {lat['added']['p95']:.1f} ms; "
        f"degraded probes: {results['degraded_probes']}",
        f"missed: {', '.join(results['missed']) or 'none'}",
        f"run time: {results['run_s']:.0f} s ({timings})",
    ]
    return "\n".join(lines)

