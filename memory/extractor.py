"""Optional LLM fact extraction on the write path (off by default).

When ``memory.extractor.model`` is set, every turn the background writer has
stored is handed to :class:`FactExtractor`, which makes **at most one** LLM
call for it through litellm, with a strict JSON schema:
``{"facts": [{"content": str, "supersedes": [memory id, ...]}]}``.

The prompt holds the turn text and the owner's few most relevant *active*
``fact`` memories with their ids, so the model can say which ones the turn
contradicts. Each returned fact is stored as kind ``fact`` with
``provenance.source_ids = (turn id,)``, ``metadata.source_dia_ids`` (the
turn's ``dia_id`` when it has one), ``valid_from`` (the turn's time) and
``supersedes``. Each contradicted fact is kept, marked ``state: superseded``
with ``metadata.superseded_by`` and ``valid_until``: nothing is deleted, and
only active memories are recalled.

Extraction runs on its own queue and worker, after the turn is written, so it
never blocks the chat response nor the turn writer. Anything that goes wrong
(timeout, HTTP error, invalid JSON, a schema violation, an id that was not
offered) is logged as a warning and the turn gets no facts; nothing raises
into the writer.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from memory.cube import Kind, MemCube, Provenance, State, isoformat
from memory.worker import QueueWorker

if TYPE_CHECKING:
    from memory.engine import MemoryEngine
    from memory.settings import ExtractorSettings

log = logging.getLogger(__name__)

CONTEXT_FACTS = 8  # existing facts offered to the model per turn
CONTEXT_TOKENS = 512  # their token budget
DEADLINE_SLACK_S = 1.0  # our own deadline on top of litellm's timeout

RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "extracted_facts",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "facts": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "content": {"type": "string"},
                            "supersedes": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["content", "supersedes"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["facts"],
            "additionalProperties": False,
        },
    },
}

SYSTEM_PROMPT = (
    "You extract durable facts from one conversation turn for a long-term memory.\n"
    "Return JSON: {\"facts\": [{\"content\": ..., \"supersedes\": [...]}]}.\n"
    "- Each fact is one short, self-contained statement (name people; resolve 'I', 'he', "
    "relative dates) worth remembering later: biography, preferences, plans, events, relations.\n"
    "- Skip greetings, small talk and anything not stated in the turn. No facts: {\"facts\": []}.\n"
    "- 'supersedes' lists the ids of EXISTING facts (below) that the new fact contradicts or "
    "replaces (e.g. a changed job, city or preference); otherwise [].\n"
    "- Do not repeat an existing fact that is still true."
)


class ExtractionError(ValueError):
    """The model's answer could not be used."""


@dataclass(frozen=True, slots=True)
class Fact:
    content: str
    supersedes: tuple[str, ...]


def parse_facts(text: Any, known_ids: set[str], max_facts: int) -> list[Fact]:
    """The facts in a model answer; :class:`ExtractionError` for anything off-schema."""
    if not isinstance(text, str) or not text.strip():
        raise ExtractionError("empty answer")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionError(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("facts"), list):
        raise ExtractionError("no 'facts' array")
    facts: list[Fact] = []
    for item in data["facts"]:
        if not isinstance(item, dict):
            raise ExtractionError("a fact is not an object")
        content, supersedes = item.get("content"), item.get("supersedes", [])
        if not isinstance(content, str) or not isinstance(supersedes, list):
            raise ExtractionError("a fact lacks a string 'content' or a 'supersedes' array")
        if not all(isinstance(i, str) for i in supersedes):
            raise ExtractionError("'supersedes' holds a non-string")
        unknown = [i for i in supersedes if i not in known_ids]
        if unknown:
            raise ExtractionError(f"'supersedes' names ids that were not offered: {unknown}")
        if content.strip():
            facts.append(Fact(content.strip(), tuple(dict.fromkeys(supersedes))))
    return facts[: max(0, max_facts)]


def build_messages(turn: MemCube, existing: list[MemCube]) -> list[dict[str, str]]:
    when = isoformat(turn.event_time) or "unknown"
    listed = "\n".join(f"- id={c.id} ({isoformat(c.event_time) or 'undated'}): {c.content}" for c in existing)
    user = (
        f"Existing facts:\n{listed or '(none)'}\n\n"
        f"Turn (at {when}):\n{turn.content}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class FactExtractor(QueueWorker[MemCube]):
    """One background worker turning stored turns into facts, one LLM call each."""

    def __init__(self, settings: ExtractorSettings, engine: MemoryEngine, maxsize: int = 10_000) -> None:
        self.settings = settings
        self.engine = engine
        super().__init__(maxsize, "memproxy-extractor")
        self.calls = 0  # LLM calls made
        self.failed = 0  # turns whose call or answer was unusable
        self.stored = 0  # facts stored
        self.superseded = 0

    # -- the queue ----------------------------------------------------------

    def submit(self, turns: list[MemCube]) -> None:
        for turn in turns:
            self.offer(turn)

    async def _run(self) -> None:
        while True:
            turn = await self._queue.get()
            try:
                await self.extract(turn)
            except Exception:  # extract() already guards; this is the last line
                log.exception("fact extraction failed for turn %s", turn.id)
            finally:
                self._queue.task_done()

    # -- one turn -----------------------------------------------------------

    async def extract(self, turn: MemCube) -> list[MemCube]:
        """Facts for one stored turn (stored, with supersessions applied); [] on any failure."""
        try:
            existing = await self._existing(turn)
        except Exception as exc:
            log.warning("fact extraction: could not search existing facts for %s: %r", turn.id, exc)
            existing = []
        try:
            answer = await self._complete(build_messages(turn, existing))
            facts = parse_facts(answer, {c.id for c in existing}, self.settings.max_facts)
        except Exception as exc:  # timeouts, HTTP errors, garbage: the turn just gets no facts
            self.failed += 1
            log.warning("fact extraction skipped turn %s: %s", turn.id, _describe(exc))
            return []
        if not facts:
            return []
        return await self._store(turn, facts, {c.id: c for c in existing})

    async def _existing(self, turn: MemCube) -> list[MemCube]:
        result = await self.engine.search(
            turn.owner.user, turn.content, token_budget=CONTEXT_TOKENS, limit=CONTEXT_FACTS * 4, record=False
        )
        facts = [r.cube for r in result.items if r.cube.kind == Kind.FACT.value and r.cube.state == State.ACTIVE.value]
        return facts[:CONTEXT_FACTS]

    async def _complete(self, messages: list[dict[str, str]]) -> Any:
        litellm = await _import_litellm()
        s = self.settings
        self.calls += 1
        call = litellm.acompletion(
            model=s.model,
            messages=messages,
            response_format=RESPONSE_FORMAT,
            api_base=s.base_url,
            api_key=s.api_key,
            timeout=s.timeout_s,
            max_retries=0,
            _skip_mcp_handler=True,
        )
        response = await asyncio.wait_for(call, timeout=s.timeout_s + DEADLINE_SLACK_S)
        return response.choices[0].message.content

    async def _store(self, turn: MemCube, facts: list[Fact], offered: dict[str, MemCube]) -> list[MemCube]:
        from memory.engine import MemoryPatch, NewMemory

        valid_from = isoformat(turn.event_time or turn.created_at)
        dia_id = turn.metadata.get("dia_id")
        dia_ids = [dia_id] if isinstance(dia_id, str) else []
        items = [
            NewMemory(
                content=f.content,
                kind=Kind.FACT.value,
                event_time=turn.event_time,
                metadata={
                    "valid_from": valid_from,
                    "supersedes": list(f.supersedes),
                    "source_dia_ids": dia_ids,
                    "extractor": self.settings.model,
                },
                session=turn.owner.session,
                source_ids=(turn.id,),
            )
            for f in facts
        ]
        provenance = Provenance(request_id=turn.provenance.request_id, model=self.settings.model, roles=turn.provenance.roles)
        try:
            stored = await self.engine.add(turn.owner, items, provenance=provenance)
        except Exception as exc:
            self.failed += 1
            log.warning("fact extraction could not store facts of turn %s: %r", turn.id, exc)
            return []
        self.stored += len(stored)
        for fact, cube in zip(facts, stored, strict=True):
            for old_id in fact.supersedes:
                old = offered[old_id]
                metadata = {**old.metadata, "superseded_by": cube.id, "valid_until": valid_from}
                try:
                    await self.engine.update(old_id, MemoryPatch(state=State.SUPERSEDED.value, metadata=metadata))
                    self.superseded += 1
                except Exception as exc:
                    log.warning("fact extraction could not supersede %s: %r", old_id, exc)
        return stored


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


async def _import_litellm() -> ModuleType:
    """litellm, imported on a worker thread the first time (~1.6 s; never on the event loop)."""
    module = sys.modules.get("litellm")
    if module is not None and getattr(module, "acompletion", None) is not None:
        return module
    return await asyncio.to_thread(importlib.import_module, "litellm")
