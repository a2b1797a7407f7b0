"""The user's profile: what they said about themselves, always current, always injected.

A personal fact told in passing ("My daughter Zephyrine starts kindergarten
next week", "Please remember that I drive a teal 1987 Volvo 240 estate") is
often asked about later in words it shares nothing with ("Do I have kids?",
"What colour is my car?"): no similarity floor separates that from chatter.
So the user's own first-person *self-disclosures* are kept apart, as a small
profile injected with the core block on every request:

1. **Disclosures** (:func:`disclosures`): sentences of the user's side of a
   memory (``User:`` lines of a chat turn; the whole text of a plain fact) that
   state something durable about the user — who they are, what they have, do,
   use, like or cannot have, where they live and work, their family and pets,
   and anything they ask to be remembered. Questions, requests and passing
   intentions ("I'm thinking of…", "can you…") are not disclosures.
2. **Topics and supersession** (:func:`topic`): a disclosure about a topic
   that holds one value at a time (where they live, their job, their car, "my
   <noun>", their age, their name) replaces an older one on the same topic:
   "I moved from Porto to Lisbon" replaces "I live in Porto". Other
   disclosures are kept side by side (exact repeats once).
3. **Budget and order** (:func:`build_profile`): the newest disclosures that
   fit ``memory.profile_token_budget`` are kept and rendered oldest first, each
   with its date, so the block is byte-identical for as long as nothing
   changes (prompt and KV caches keep hitting) and a new fact appends.

The profile is derived from the stored memories (each memory's disclosures
are kept in the owner's in-process index, memoised per memory version), so it
survives a restart, follows edits and deletions, and costs no model call.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from memory.cube import MemCube
from memory.lexical import tokenize
from memory.render import render_item

EXPLICIT = re.compile(
    r"^(?:(?:please|pls|also|and|oh|btw|fyi|by the way|just so you know|for (?:the )?record)[,:]?\s+)*"
    r"(?:(?:can|could|would) you\s+)?(?:please\s+)?(?:remember|note|keep in mind|don'?t forget)"
    r"(?: that)?[,:]?\s+",
    re.IGNORECASE,
)
FILLER = re.compile(
    r"^(?:(?:by the way|btw|fyi|also|oh|and|actually|anyway|well|so|just so you know|for context|"
    r"for (?:the )?record|as you know|to be honest|honestly|quick one|big news|change of plans)[,:!]?\s+)+",
    re.IGNORECASE,
)
# the user speaking about themselves (or their household)
FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|i'll|me|my|mine|we|we're|we've|our|us)\b", re.IGNORECASE)
# requests, questions put as statements, reactions and pleasantries: not facts about the user
NOT_FACT = re.compile(
    r"^(?:tell|give|show|help|explain|write|make|list|suggest|recommend|find|describe|compare|summari[sz]e|"
    r"translate|create|generate|plan|draft|thanks|thank you|that'?s|this is|it'?s|sounds|great|ok|okay|sure|"
    r"yes|no|hi|hello|hey)\b"
    r"|\b(?:can you|could you|would you|will you|help me|let me know|i was wondering|i wonder|"
    r"i'?d like (?:to know|some|you)|i want you|i need (?:you|some (?:help|advice|ideas|tips))|"
    r"i(?:'m| am) (?:looking for|wondering|curious|interested in)|thanks|thank you|"
    r"i love (?:the|that|this|it|how|these|those|your)|sounds (?:great|good)|i (?:agree|see)|"
    r"have a question|makes sense)\b",
    re.IGNORECASE,
)
# a newer disclosure with one of these words replaces older ones sharing a term with it
CHANGE = re.compile(
    r"\b(?:switch(?:ed)?|chang(?:ed|e)|moved|sold|gave up|given up|quit|stopped|cancell?ed|no longer|anymore|"
    r"instead|left (?:my|the|our|\w+ing\b)|replaced|went to live|rehomed|got married|broke up|divorced|now)\b",
    re.IGNORECASE,
)
# a sentence ends at . ! ? ; (not after a title such as "Mr.") or at a line break
_BREAK = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!?;])\s+|,\s+(?=so\b)|\n+")
MAX_CHARS = 300  # a longer sentence is not a compact fact
# the newest disclosures looked at (a profile holds a few dozen; bounds the rebuild on large owners)
MAX_CONSIDERED = 2_000
MIN_SHARED = 4  # a shared term this long (or a shared stem of it) links a change to an older statement
# everyday words a change statement shares with unrelated older ones (stemmed as memory.lexical does)
GENERIC = frozenset(
    """home week year month day time last next still alway final start need want like love good great work
    make take going thing lot much every morning night today tomorrow people little first new old way back
    keep feel think know left right well long around actually usually sometime friend family kid""".split()
)
# topics that hold one value at a time (newest wins)
TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("home", re.compile(r"\b(?:i|we) (?:live|moved|relocated)\b|\b(?:i'?m|i am) (?:based in|from)\b", re.I)),
    ("work", re.compile(r"\b(?:i|we) work (?:as|at|for)\b|\bmy (?:job|employer)\b", re.I)),
    ("car", re.compile(r"\bi drive\b|\bmy (?:car|vehicle)\b", re.I)),
    ("name", re.compile(r"\bmy name\b|\b(?:i'?m|i am) called\b", re.I)),
    ("age", re.compile(r"\b(?:i'?m|i am) \d+(?: years old)?\b|\bi turned \d+\b", re.I)),
    ("status", re.compile(r"\b(?:i'?m|i am) (?:married|divorced|single|engaged|widowed)\b", re.I)),
    ("diet", re.compile(r"\b(?:vegetarian|vegan|pescatarian|flexitarian|carnivore|keto)\b", re.I)),
)
_MY = re.compile(
    r"\bmy ((?:(?:favou?rite|best|older|younger|eldest|oldest|youngest|new|current) )?\w+)", re.IGNORECASE
)
_WORDS = re.compile(r"[a-z0-9']+")
USER_LABEL = "User:"


@dataclass(frozen=True, slots=True)
class Disclosure:
    text: str  # the user's sentence, as said (fillers and "please remember that" dropped)
    topic: str  # one value at a time per topic; a unique key for facts that stack
    when: datetime  # when it was said (event time, else write time)
    memory_id: str  # the memory it came from (provenance)
    raw: str = ""  # the sentence exactly as it stands in the memory
    terms: frozenset[str] = frozenset()  # its index terms
    change: bool = False  # it says something changed (:data:`CHANGE`)


@dataclass(frozen=True, slots=True)
class Profile:
    lines: tuple[str, ...]  # rendered, oldest first
    version: str  # digest of the lines ("" when empty)
    tokens: int
    # memory id -> its sentences a newer disclosure replaced (recall shows them as no longer current)
    superseded: dict[str, tuple[str, ...]] = field(default_factory=dict)


EMPTY = Profile((), "", 0)


def user_text(cube: MemCube) -> str:
    """The user's words in a memory: the ``User:`` lines of a turn, else the whole
    text of a first-person memory (a fact written through the API)."""
    lines = cube.content.strip().splitlines()
    if lines and any(line.startswith(USER_LABEL) for line in lines):
        kept: list[str] = []
        mine = False
        for line in lines:
            if line.startswith(USER_LABEL):
                mine = True
                kept.append(line.removeprefix(USER_LABEL).strip())
            elif re.match(r"^[A-Z][\w .'-]{0,30}:\s", line):
                mine = False
            elif mine:
                kept.append(line.strip())
        return "\n".join(kept)
    if lines and re.match(r"^[A-Z][\w .'-]{0,30}:\s", lines[0]):
        return ""  # someone else's line (a transcript turn of a named speaker)
    return cube.content.strip()


def _clean(sentence: str) -> tuple[str, bool]:
    """The sentence without leading fillers; whether it asked to be remembered."""
    text = sentence.strip().strip("\"'").strip()
    explicit = EXPLICIT.match(text)
    if explicit:
        text = text[explicit.end():]
    text = FILLER.sub("", text).strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text, explicit is not None


def topic(text: str) -> str:
    """The disclosure's topic: a one-value topic when it names one, else its own words."""
    for name, pattern in TOPICS:
        if pattern.search(text):
            return name
    mine = _MY.search(text)
    if mine and re.search(rf"\bmy {re.escape(mine.group(1))}\b\s+(?:is|are|was|'s|has|have|named|called)\b",
                          text, re.IGNORECASE):
        return "my " + mine.group(1).lower()
    return " ".join(_WORDS.findall(text.lower()))


def disclosures(cube: MemCube) -> tuple[Disclosure, ...]:
    """The self-disclosures in a memory's user-side text (see the module docstring)."""
    said = user_text(cube)
    if not said:
        return ()
    when = cube.event_time or cube.created_at
    out: list[Disclosure] = []
    for raw in _BREAK.split(said):
        raw = raw.strip()
        if not raw or raw.endswith("?") or len(raw) > MAX_CHARS:
            continue
        text, explicit = _clean(raw)
        if len(text) < 12:
            continue
        if not explicit and (NOT_FACT.search(text) or not FIRST_PERSON.search(text)):
            continue
        text = text.rstrip(";,").strip()
        terms = frozenset(t for t in tokenize(text) if len(t) >= MIN_SHARED and t not in GENERIC)
        out.append(Disclosure(text, topic(text), when, cube.id, raw, terms, bool(CHANGE.search(text))))
    return tuple(out)


def _linked(new: Disclosure, old: Disclosure) -> bool:
    """Whether a change statement speaks of what an older statement said (a shared term or stem)."""
    if new.terms & old.terms:
        return True
    return any(a.startswith(b) or b.startswith(a) for a in new.terms for b in old.terms if min(len(a), len(b)) >= 5)


def current(found: Iterable[Disclosure]) -> tuple[list[Disclosure], list[Disclosure]]:
    """The disclosures still current, oldest first, and those replaced by newer ones."""
    latest: dict[str, Disclosure] = {}
    replaced: list[Disclosure] = []
    newest = heapq.nlargest(MAX_CONSIDERED, found, key=lambda d: (d.when, d.memory_id))
    for d in reversed(newest):
        if d.change:
            for key, old in list(latest.items()):
                if old.memory_id != d.memory_id and _linked(d, old):
                    replaced.append(latest.pop(key))
        previous = latest.pop(d.topic, None)  # re-inserted: the dict keeps newest last
        if previous is not None and previous.memory_id != d.memory_id:
            replaced.append(previous)
        latest[d.topic] = d
    return list(latest.values()), replaced


def render_line(disclosure: Disclosure) -> str:
    return f"[{disclosure.when.date().isoformat()}] {disclosure.text}"


def build_profile(found: Iterable[Disclosure], budget: int, count: Callable[[str], int]) -> Profile:
    """The newest disclosure per topic, the newest that fit ``budget`` tokens, oldest first."""
    kept_now, replaced = current(found)
    superseded: dict[str, list[str]] = {}
    for d in replaced:
        if d.raw:
            superseded.setdefault(d.memory_id, []).append(d.raw)
    gone = {k: tuple(v) for k, v in superseded.items()}
    kept: list[tuple[Disclosure, str]] = []
    used = 0
    for d in reversed(kept_now) if budget > 0 else ():
        line = render_line(d)
        cost = count(line) + 2  # "- " and the newline
        if used + cost > budget:
            continue
        kept.append((d, line))
        used += cost
    if not kept:
        return Profile((), "", 0, gone)
    lines = tuple(line for _, line in sorted(kept, key=lambda p: (p[0].when, p[0].memory_id)))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return Profile(lines, digest, used, gone)


NO_LONGER_CURRENT = "(said earlier; since changed)"


def without_superseded(cube: MemCube, sentences: tuple[str, ...], count: Callable[[str], int]) -> MemCube:
    """``cube`` as injected once newer statements replaced ``sentences`` of it
    (same id, metadata and provenance; ``tokens`` its new rendered line)."""
    content = cube.content
    for sentence in sentences:
        content = content.replace(sentence, NO_LONGER_CURRENT)
    if content == cube.content:
        return cube
    changed = cube.evolve(content=content)
    return changed.evolve(tokens=count(render_item(changed)))
