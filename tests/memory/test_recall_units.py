"""Pure unit tests of fusion, gating, packing, supersession and date handling (no model, no store)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np

from memory import recall
from memory.cube import MemCube, Owner
from memory.engine import stamp_dates
from memory.lexcache import OwnerIndex
from memory.recall import Candidate, fuse, gate, pack, rank, score_all
from memory.timeparse import query_time, resolve_relative, span_of

T0 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)  # a Monday


def cube(i: int, content: str, when: datetime = T0, tokens: int = 10, **meta: object) -> MemCube:
    return MemCube(id=f"mem_{i:04d}", owner=Owner("u"), content=content, event_time=when, tokens=tokens,
                   metadata=dict(meta))


def test_fusion_adds_weighted_lexical_to_cosine() -> None:
    assert fuse(0.4, 0.0) == 0.4
    assert abs(fuse(0.4, 1.0) - (0.4 + recall.LEXICAL_WEIGHT)) < 1e-9
    assert fuse(0.3, 0.8) > fuse(0.35, 0.0)  # an exact-term match lifts a weaker cosine


def test_score_all_uses_cached_vectors_and_bm25() -> None:
    index = OwnerIndex()
    index.upsert(cube(1, "Caroline went to the LGBTQ support group"), np.array([1.0, 0.0], dtype=np.float32))
    index.upsert(cube(2, "Melanie painted a sunrise"), np.array([0.0, 1.0], dtype=np.float32))
    scored = {c.cube.id: c for c in score_all(index, "support group", np.array([1.0, 0.0], dtype=np.float32))}
    assert scored["mem_0001"].cosine == 1.0 and scored["mem_0001"].lexical > 0
    assert scored["mem_0002"].lexical == 0.0
    index.upsert(cube(3, "no vector yet"))
    assert score_all(index, "x", np.array([1.0, 0.0], dtype=np.float32)) is None  # falls back to the store


def test_gate_rises_with_owner_size() -> None:
    assert gate(0.35, 5) == 0.35
    assert gate(0.35, 10) == 0.35
    assert 0.44 < gate(0.35, 700) < 0.46
    assert gate(0.35, 7000) > gate(0.35, 700)


def test_abstention_nothing_when_best_is_below_the_gate() -> None:
    cands = [Candidate(cube(i, f"memory number {i}"), 0.40, 0.0) for i in range(700)]
    assert rank(cands, 0.35) == []  # 0.40 clears 0.35 but not the gate for 700 memories
    assert rank(cands[:5], 0.35) != []


def test_a_question_about_the_user_gets_a_gentler_gate() -> None:
    assert gate(0.35, 700, self_question=True) == 0.35 < gate(0.35, 700)
    assert gate(0.35, 5, self_question=True) == 0.35
    cands = [Candidate(cube(i, f"memory number {i}"), 0.42, 0.0) for i in range(700)]  # gates: 0.45 and 0.35
    assert rank(cands, 0.35, query="tell me a joke") == []
    assert rank(cands, 0.35, query="how do I reset my router?") == []  # help with a task, not about the user
    assert rank(cands, 0.35, query="What speed is my new internet plan?") != []


def test_self_questions_are_told_from_requests_for_help() -> None:
    from memory.intent import is_self_question

    asks = ["What speed is my new internet plan?", "Where did I redeem a $5 coupon?", "How many bikes do I own?",
            "Do I have kids?", "which trip did I take first", "What is the name of my dog?"]
    helps = ["how do I reset my router?", "What should I cook tonight?", "Can you suggest something I'd like?",
             "give me a fun fact", "tell me about my horoscope", "write a haiku", "What is the capital of France?",
             "my laptop is slow, what can I check?", ""]
    assert [q for q in asks if not is_self_question(q)] == []
    assert [q for q in helps if is_self_question(q)] == []


def test_item_floor_is_on_plain_relevance() -> None:
    strong = Candidate(cube(1, "allergic to peanuts"), 0.6, 0.0)
    weak = Candidate(cube(2, "quarterly report due friday"), 0.05, 0.0)
    ranked = rank([strong, weak], 0.35)
    assert [c.id for c, _ in ranked] == ["mem_0001"]  # the session boost does not bring the weak one in


def test_neighbour_and_speaker_context_lift_scores() -> None:
    question = Candidate(cube(1, "what did you do last weekend?", speaker="Melanie", session=1), 0.6, 0.0)
    answer = Candidate(cube(2, "we went camping", speaker="Caroline", session=1), 0.25, 0.0)
    other = Candidate(cube(3, "we went hiking", speaker="Caroline", session=2), 0.25, 0.0)
    scores = dict((c.id, s) for c, s in rank([question, answer, other], 0.35, query="What did Caroline do?"))
    assert scores["mem_0002"] > scores["mem_0003"]  # same session as the strong turn, and next to it
    assert scores["mem_0003"] >= 0.25 + recall.SPEAKER_BOOST - 1e-9


def test_newer_wins_ties_between_near_duplicates() -> None:
    old = cube(1, "I work as a nurse at the city hospital", when=T0)
    new = cube(2, "I work as a nurse at the city hospital", when=T0 + timedelta(days=30))
    ranked = rank([Candidate(old, 0.61, 0.0), Candidate(new, 0.60, 0.0)], 0.35)
    assert [c.id for c, _ in ranked] == ["mem_0002"]
    clearly_better = rank([Candidate(old, 0.9, 0.0), Candidate(new, 0.6, 0.0)], 0.35)
    assert [c.id for c, _ in clearly_better] == ["mem_0001"]


def test_pack_respects_budget_in_rank_order() -> None:
    ranked = [(cube(i, f"m{i}", when=T0 + timedelta(days=i), tokens=t), 1.0 - i / 10)
              for i, t in enumerate([40, 30, 50, 20])]
    result = pack(ranked, 90, 100, len)
    assert [r.cube.id for r in result.items] == ["mem_0000", "mem_0001", "mem_0003"]
    assert result.tokens == 90
    assert len(pack(ranked, 1000, 2, len).items) == 2
    assert pack(ranked, 10, 100, len).items == []


def test_pack_shares_one_date_header_per_day_in_time_order() -> None:
    def line(c: MemCube) -> str:
        return f"[{c.event_time.date().isoformat()}] {c.content}"

    a = cube(1, "Melanie: we went camping", when=T0 + timedelta(hours=1))
    b = cube(2, "Caroline: that sounds fun", when=T0 + timedelta(hours=1))
    c = cube(3, "Caroline: I painted a sunrise", when=T0 + timedelta(days=3))
    ranked = [(x.evolve(tokens=len(line(x))), s) for x, s in ((c, 0.9), (b, 0.8), (a, 0.7))]
    result = pack(ranked, 1000, 100, len)
    assert [i.text for i in result.items] == [
        "[2023-05-11] Caroline: I painted a sunrise", "[2023-05-08] Melanie: we went camping", "Caroline: that sounds fun"
    ]  # best day first, write order within a day
    assert [round(i.score, 1) for i in result.items] == [0.9, 0.7, 0.8]
    assert result.tokens == sum(len(i.text) for i in result.items)
    # the second memory of a day costs only its body, so it fits where a full line would not
    budget = len(line(c)) + len(line(a)) + len(b.content)
    assert len(pack(ranked, budget, 100, len).items) == 3
    assert len(pack(ranked, budget - 1, 100, len).items) == 2


def test_resolve_relative_dates_against_event_time() -> None:
    assert resolve_relative("I went to the support group yesterday", T0) == ["2023-05-07"]
    assert resolve_relative("we moved last month", T0) == ["2023-04"]
    assert resolve_relative("the race is next month", T0) == ["2023-06"]
    assert resolve_relative("I ran a charity race last Saturday", T0) == ["2023-05-06"]
    assert resolve_relative("two weeks ago I started pottery", T0) == ["week of 2023-04-24"]
    assert resolve_relative("3 days ago", T0) == ["2023-05-05"]
    assert resolve_relative("last week was busy", T0) == ["week of 2023-05-01"]
    assert resolve_relative("last year", T0) == ["2022"]
    assert resolve_relative("nothing relative here", T0) == []


def test_query_time_reads_days_months_years_and_seasons() -> None:
    def spans(query: str, now: datetime | None = None) -> tuple[tuple[date, date], ...]:
        found = query_time(query, now)
        assert found is not None, query
        return found.spans

    day = (date(2023, 6, 16), date(2023, 6, 17))
    assert spans("What exciting news did Maria share on 16 June, 2023?") == (day,)
    assert spans("what happened on June 16, 2023") == (day,)
    assert spans("What did Caroline do in May 2023?") == ((date(2023, 5, 1), date(2023, 6, 1)),)
    assert spans("Where did they travel in 2022?") == ((date(2022, 1, 1), date(2023, 1, 1)),)
    assert spans("What state did Joanna visit in summer 2021?") == ((date(2021, 6, 1), date(2021, 9, 1)),)
    assert spans("what did I do last summer?", now=T0) == ((date(2022, 6, 1), date(2022, 9, 1)),)
    june = query_time("When did Melanie go camping in June?")
    assert june is not None and june.months == {6} and not june.spans
    assert june.overlaps(date(2021, 6, 3), date(2021, 6, 4)) and not june.overlaps(date(2021, 7, 1), date(2021, 7, 2))
    assert query_time("what is my dog's name?") is None
    assert query_time("May I ask you something?") is None
    assert query_time("what did I do last summer?") is None  # relative, and no "now" to read it against


def test_span_of_resolved_values() -> None:
    assert span_of("2023-05-07") == (date(2023, 5, 7), date(2023, 5, 8))
    assert span_of("week of 2023-05-01") == (date(2023, 5, 1), date(2023, 5, 8))
    assert span_of("2023-04") == (date(2023, 4, 1), date(2023, 5, 1))
    assert span_of("2022") == (date(2022, 1, 1), date(2023, 1, 1))
    assert span_of("soon") is None


def test_time_boost_lifts_memories_in_the_named_time() -> None:
    may = cube(1, "Maria: we volunteered at the shelter", when=T0)
    july = cube(2, "Maria: we cooked dinner at the shelter", when=T0 + timedelta(days=60))
    mention = cube(3, "Maria: last month we packed food boxes", when=T0 + timedelta(days=30))  # June: "last month" = May
    cands = [Candidate(may, 0.5, 0.0), Candidate(july, 0.55, 0.0), Candidate(mention, 0.45, 0.0)]
    when = query_time("What did Maria do in May 2023?")
    scores = dict((c.id, s) for c, s in rank(cands, 0.35, query="What did Maria do in May 2023?", when=when))
    plain = dict((c.id, s) for c, s in rank(cands, 0.35, query="What did Maria do in May 2023?"))
    assert scores["mem_0001"] > scores["mem_0002"]  # in May, so it now outranks the closer July match
    # by the date it mentions; alone in its session, it is also its session's best memory
    assert abs(scores["mem_0003"] - plain["mem_0003"] - recall.TIME_BOOST * (1 + recall.SESSION_WEIGHT)) < 1e-9
    assert abs(scores["mem_0002"] - plain["mem_0002"]) < 1e-9


def test_stamp_dates_records_resolved_dates_and_keeps_other_marks() -> None:
    stamped = stamp_dates(cube(1, "I went to the support group yesterday", keep="me"))
    assert stamped.metadata == {"keep": "me", "_memproxy": {"dates": ["2023-05-07"]}}
    assert recall.mentioned_spans(stamped) == ((date(2023, 5, 7), date(2023, 5, 8)),)
    promoted = cube(2, "I like tea", _memproxy={"promoted_at": "2023-05-08T00:00:00Z", "dates": ["2023-05-07"]})
    assert stamp_dates(promoted).metadata == {"_memproxy": {"promoted_at": "2023-05-08T00:00:00Z"}}
    plain = cube(3, "I like tea")
    assert stamp_dates(plain) is plain
