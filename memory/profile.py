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
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from memory.cube import MemCube

EXPLICIT = re.compile(
    r"^(?:(?:please|pls|also|and|oh|btw|fyi|by the way|just so you know|for (?:the )?record)[,:]?\s+)*"
    r"(?:(?:can|could|would) you\s+)?(?:please\s+)?(?:remember|note|keep in mind|don'?t forget)"
    r"(?: that)?[,:]?\s+",
    re.IGNORECASE,
)
FILLER = re.compile(
    r"^(?:(?:by the way|btw|fyi|also|oh|and|actually|anyway|well|so|just so you know|for context|"
    r"for (?:the )?record|as you know|to be honest|honestly)[,:]?\s+)+",
    re.IGNORECASE,
)
# passing intentions, requests and hypotheticals: not facts about the user
NOT_FACT = re.compile(
    r"\b(?:thinking (?:of|about)|looking (?:for|into|at)|planning|trying to|wondering|want(?:ed)? to|"
    r"would like|i'?d like|i'?d love|can you|could you|would you|help me|recommend|suggest|"
    r"if i|should i|how (?:do|can|should) i|let me know|tell me|a bit|a little|have a (?:question|feeling|few)|"
    r"interested|curious|concerned|heard|love (?:the|that|this|it|how|these|those|your|to hear))\b",
    re.IGNORECASE,
)
_ME = r"(?:i|we)"
_BE = r"(?:i'?m|i am|we'?re|we are)"
DISCLOSURE = re.compile(
    r"\b(?:"
    # what I am
    rf"{_BE} (?:a|an|allergic|intolerant|lactose|vegan|vegetarian|pescatarian|diabetic|celiac|coeliac|"
    r"pregnant|married|divorced|single|engaged|widowed|retired|unemployed|left-handed|right-handed|"
    r"colou?r.?blind|deaf|blind|hard of hearing|sober|based in|from|originally from|\d+(?: years old)?\b)"
    # what I do, have, use, like or cannot have
    rf"|{_ME} (?:live|work|drive|own|ride|teach|study|speak|grew up|was born|moved|relocated|"
    r"volunteer|use|rent|coach|manage|run|hate|dislike|love|adore|prefer|avoid|can'?t stand|"
    r"(?:can'?t|cannot|don'?t|do not|never) (?:eat|drink|have|tolerate|fly|drive|stand)|"
    r"have (?:a|an|two|three|four|five|\d+|no) |have been (?:a|an) |got (?:a|an) |adopted|"
    r"just got (?:a|an) |bought (?:a|an) |turned \d+|play the|take \w+ (?:for|every))"
    # my family, pets, things: "my <noun> is/starts/…"
    r"|my (?:\w+[ -]){0,2}?(?:is|are|was|'s|has|have|starts|started|lives|works|goes|turns|turned|"
    r"named|called)\b"
    r")",
    re.IGNORECASE,
)
# a sentence ends at . ! ? (not after a title such as "Mr.") or at a line break
_BREAK = re.compile(r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<=[.!?])\s+|\n+")
MAX_CHARS = 300  # a longer sentence is not a compact fact
# topics that hold one value at a time (newest wins)
TOPICS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("home", re.compile(r"\b(?:i|we) (?:live|moved|relocated)\b|\b(?:i'?m|i am) (?:based in|from)\b", re.I)),
    ("work", re.compile(r"\b(?:i|we) work\b|\bmy (?:job|work|employer|company)\b", re.I)),
    ("car", re.compile(r"\bi drive\b|\bmy (?:car|vehicle)\b", re.I)),
    ("name", re.compile(r"\bmy name\b|\b(?:i'?m|i am) called\b", re.I)),
    ("age", re.compile(r"\b(?:i'?m|i am) \d+\b|\bi turned \d+\b", re.I)),
    ("status", re.compile(r"\b(?:i'?m|i am) (?:married|divorced|single|engaged|widowed)\b", re.I)),
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


@dataclass(frozen=True, slots=True)
class Profile:
    lines: tuple[str, ...]  # rendered, oldest first
    version: str  # digest of the lines ("" when empty)
    tokens: int


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
        if len(text) < 8:
            continue
        if not explicit and (NOT_FACT.search(text) or not DISCLOSURE.search(text)):
            continue
        out.append(Disclosure(text, topic(text), when, cube.id))
    return tuple(out)


def render_line(disclosure: Disclosure) -> str:
    return f"[{disclosure.when.date().isoformat()}] {disclosure.text}"


def build_profile(found: Iterable[Disclosure], budget: int, count: Callable[[str], int]) -> Profile:
    """The newest disclosure per topic, the newest that fit ``budget`` tokens, oldest first."""
    if budget <= 0:
        return EMPTY
    latest: dict[str, Disclosure] = {}
    for d in sorted(found, key=lambda d: (d.when, d.memory_id)):
        latest.pop(d.topic, None)  # re-inserted: the dict keeps newest last
        latest[d.topic] = d
    kept: list[tuple[Disclosure, str]] = []
    used = 0
    for d in reversed(list(latest.values())):
        line = render_line(d)
        cost = count(line) + 2  # "- " and the newline
        if used + cost > budget:
            continue
        kept.append((d, line))
        used += cost
    if not kept:
        return EMPTY
    lines = tuple(line for _, line in sorted(kept, key=lambda p: (p[0].when, p[0].memory_id)))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    return Profile(lines, digest, used)
