"""``now`` on ``POST /v1/memories/search``: the reference time of the query's relative expressions."""

from __future__ import annotations

import httpx

from tests.openai_schema import validate

HIKES = [
    {"content": "User: I went hiking in the Alps with Sam, the views were great.", "event_time": "2023-03-08T10:00:00Z"},
    {"content": "User: I went hiking in the Dolomites with Sam, the views were great.", "event_time": "2024-01-10T10:00:00Z"},
]
QUERY = "Where did I go hiking last week?"


def _search(url: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{url}/v1/memories/search", json={"user": "hiker", "query": QUERY, "limit": 1, **body}, timeout=60)


def test_last_week_resolves_against_now(proxy):
    added = httpx.post(f"{proxy.url}/v1/memories", json={"user": "hiker", "memories": HIKES}, timeout=60)
    assert added.status_code == 201, added.text

    march = _search(proxy.url, {"now": "2023-03-14T09:00:00Z"})  # "last week" = the week of 6 March 2023
    january = _search(proxy.url, {"now": "2024-01-16T09:00:00+01:00"})  # the week of 8 January 2024
    assert march.status_code == january.status_code == 200, (march.text, january.text)
    assert "Alps" in march.json()["data"][0]["content"]
    assert "Dolomites" in january.json()["data"][0]["content"]


def test_a_bad_now_is_a_400(proxy):
    for now in ("last tuesday", "2023-13-40T00:00:00Z", 1687505460, "0001-01-01T00:00:00+01:00"):
        response = _search(proxy.url, {"now": now})
        assert response.status_code == 400, (now, response.text)
        validate("ErrorResponse", response.json())
        assert response.json()["error"]["param"] == "now"


def test_chat_reads_relative_expressions_at_the_time_of_the_request(make_proxy, upstream):
    """A chat has no ``now`` field: its query is read at the request's own time."""
    from datetime import UTC, datetime, timedelta

    from openai import OpenAI

    # the profile (memory/profile.py) would carry both first-person statements
    # in the core block whatever the time: off, so the prompt shows recall alone
    proxy = make_proxy(memory={"max_items": 1, "profile_token_budget": 0})
    today = datetime.now(UTC)
    two_years_ago = datetime(today.year - 2, 6, 15, 10, tzinfo=UTC)
    memories = [
        {"content": "User: I went hiking in the Tatras with Sam, the views were great.", "event_time": two_years_ago.isoformat()},
        {"content": "User: I went hiking in the Pyrenees with Sam, the views were great.",
         "event_time": (today - timedelta(days=3)).isoformat()},  # the newer one, which wins a tie
    ]
    added = httpx.post(f"{proxy.url}/v1/memories", json={"user": "walker", "memories": memories}, timeout=60)
    assert added.status_code == 201, added.text
    client = OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-test", max_retries=0,
                    default_headers={"X-Memory-User": "walker", "X-Memory": "read"})
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "Where did I go hiking two years ago?"}])
    prompt = str(upstream.chat_requests()[-1].body["messages"])
    assert "Tatras" in prompt and "Pyrenees" not in prompt
