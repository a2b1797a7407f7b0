"""``memproxy bench longmemeval`` on a tiny synthetic file: the protocol and the recall arithmetic.

Real engine, real embedder, real store; two instances of a handful of turns.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

from bench import longmemeval as lme


def _session(*turns: tuple[str, str, bool]) -> list[dict[str, Any]]:
    out = []
    for role, content, answer in turns:
        turn: dict[str, Any] = {"role": role, "content": content}
        if answer:
            turn["has_answer"] = True
        out.append(turn)
    return out


def _instance(qid: str, qtype: str, question: str, sessions: list[list[dict[str, Any]]], answers: list[str]) -> dict[str, Any]:
    return {
        "question_id": qid,
        "question_type": qtype,
        "question": question,
        "question_date": "2023/06/23 (Fri) 07:31",
        "answer": "-",
        "answer_session_ids": answers,
        "haystack_session_ids": [f"{qid}-s{i}" for i in range(len(sessions))],
        "haystack_dates": [f"2023/05/{10 + i:02d} (Wed) 09:00" for i in range(len(sessions))],
        "haystack_sessions": sessions,
    }


PETS = _instance(
    "pets",
    "single-session-user",
    "What is the name of my cat?",
    [
        _session(
            ("user", "Can you suggest a weeknight pasta recipe?", False),
            ("assistant", "Try a garlic and olive oil spaghetti with chili flakes and parsley.", False),
            ("user", "My cat Mr. Pickles hates the vet. How do I calm him before appointments?", True),
            ("assistant", "Bring his carrier out days before, add a worn t-shirt, and try pheromone sprays.", False),
        ),
        _session(
            ("assistant", "Welcome back! How did the vet visit go?", False),
            ("user", "It went fine, thanks. What is a good beginner houseplant?", False),
            ("assistant", "A pothos or a snake plant: both tolerate low light and irregular watering.", False),
            ("user", "Thanks!", False),
        ),
    ],
    ["pets-s0"],
)
TRAVEL = _instance(
    "travel",
    "multi-session",
    "How many countries did I visit on my trips this year?",
    [
        _session(
            ("user", "I just got back from my trip to Japan, what souvenirs travel well?", True),
            ("assistant", "Wagashi in sealed boxes, green tea, and furoshiki cloths all travel well.", True),
        ),
        _session(
            ("user", "Planning the Portugal trip now, is Porto walkable?", True),
            ("assistant", "Yes, though hilly: comfortable shoes help on the steep streets near the river.", False),
        ),
    ],
    ["travel-s0", "travel-s1"],
)


def test_exchanges_pair_each_user_turn_with_the_next_assistant_turn() -> None:
    first = lme.instance_of(PETS)
    assert [(x.session_id, x.turns) for x in first.exchanges] == [
        ("pets-s0", (0, 1)), ("pets-s0", (2, 3)), ("pets-s1", (0,)), ("pets-s1", (1, 2)), ("pets-s1", (3,)),
    ]
    assert first.exchanges[1].content.startswith("User: My cat Mr. Pickles")
    assert "\nAssistant: Bring his carrier" in first.exchanges[1].content
    assert first.exchanges[2].content == "Assistant: Welcome back! How did the vet visit go?"
    assert first.evidence == {("pets-s0", 2)}
    assert first.now.isoformat() == "2023-06-23T07:31:00+00:00"
    assert first.exchanges[3].when.isoformat() == "2023-05-11T09:00:00+00:00"


def test_recall_arithmetic() -> None:
    travel = lme.instance_of(TRAVEL)
    assert travel.evidence == {("travel-s0", 0), ("travel-s0", 1), ("travel-s1", 0)}
    # the Japan exchange alone: 2 of 3 evidence turns, 1 of 2 answer sessions
    held = lme.held_turns({"session_id": "travel-s0", "turns": [0, 1]})
    assert lme.score(travel, held) == {"evidence": 2 / 3, "session": 0.5}
    assert lme.held_turns({"dia_id": "D1:3"}) == set()


def test_limit_takes_the_question_types_in_turn() -> None:
    raws = [{"question_type": t, "question_id": f"{t}{n}"} for n in range(3) for t in ("b-type", "multi-session")]
    picked = lme.stratified(raws, 3)
    assert [r["question_id"] for r in picked] == ["multi-session0", "b-type0", "multi-session1"]


def test_the_bench_runs_on_a_tiny_file(tmp_path: Path, embedder: Any) -> None:
    data = tmp_path / "tiny.json.gz"
    with gzip.open(data, "wt", encoding="utf-8") as handle:
        json.dump([PETS, TRAVEL], handle)
    results = asyncio.run(lme.measure(data, [1, 4096], 0, embedder=embedder))
    assert results["instances"] == 2 and results["exchanges"] == 7 and results["evidence_turns"] == 4
    ours = results["table"]["memproxy"]
    assert ours["1"]["evidence"]["overall"] == 0.0  # nothing fits one token
    assert ours["4096"]["evidence"]["single-session-user"] == 1.0  # the cat exchange is found
    assert ours["4096"]["session"]["single-session-user"] == 1.0
    dense = results["table"]["dense"]["4096"]
    assert dense["evidence"]["overall"] == 1.0 and dense["mean_tokens"] > 100  # everything fits
    assert set(results["ratio_to_best_baseline"]) == {"1", "4096"}
    assert results["search_latency_ms"]["cold"]["n"] == 2 and results["search_latency_ms"]["warm"]["n"] == 2
    assert "LongMemEval-S evidence-turn recall - 2 instances" in lme.render(results)
