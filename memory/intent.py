"""Is a prompt a question about the user's own life?

"What speed is my new internet plan?", "Where did I redeem that coupon?",
"How many bikes do I own?" can only be answered from memory: the user asks
about something of theirs. "How do I reset my router?" or "What should I
cook tonight?" are requests for help that mention the user, and "Write a
haiku" does not mention them at all.

Recall's gate (memory/recall.py) rises with the size of the owner, because
the best of N unrelated memories creeps up with N; for a question about the
user's own life the prompt itself says memory is wanted, so the gate stays at
the base relevance floor there (:data:`memory.recall.SELF_QUESTION_GROWTH`). The test is
grammatical, not topical: a question word or a leading auxiliary, a
first-person reference, and none of the instructional forms ("how do I",
"should I", "can you", "give me", ...).
"""

from __future__ import annotations

import re

_FIRST_PERSON = re.compile(r"\b(?:i|i'm|i've|i'd|me|my|mine|myself)\b", re.IGNORECASE)
_ASKS = re.compile(
    r"^\s*(?:what|which|where|when|who|whom|whose|how\s+(?:many|much|long|often|old|far)"
    r"|did|do|does|have|has|had|was|were|am|is|are)\b",
    re.IGNORECASE,
)
# help with a task, advice, or something to produce: not a question about the user's past
_INSTRUCTS = re.compile(
    r"\b(?:how\s+(?:do|can|should|would|could|to)|(?:what|which|where|when|who)\s+(?:should|can|could|would)"
    r"|should\s+i|can\s+i|could\s+i|would\s+i|shall\s+i|can\s+you|could\s+you|would\s+you|will\s+you"
    r"|give\s+me|tell\s+me|show\s+me|help\s+me|let\s+me|remind\s+me\s+how|do\s+i\s+need)\b",
    re.IGNORECASE,
)


def is_self_question(query: str) -> bool:
    """A question asking about the user themselves (see the module docstring)."""
    text = query.strip()
    if not text or len(text) > 300:  # a pasted document is not a question about oneself
        return False
    return bool(_ASKS.search(text) and _FIRST_PERSON.search(text) and not _INSTRUCTS.search(text))
