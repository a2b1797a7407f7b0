"""Facts told in passing reach a later prompt asked in other words (the profile, through chat)."""

from __future__ import annotations

import httpx

from tests.conftest import wait_for_memories


def chat(url: str, user: str, text: str) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"X-Memory-User": user}, timeout=120)
    assert response.status_code == 200, response.text
    return response


def upstream_prompt(upstream) -> str:
    return "\n".join(str(m["content"]) for m in upstream.chat_requests()[-1].body["messages"])


def test_car_colour_and_kids_reach_the_prompt_in_other_words(proxy, upstream):
    chat(proxy.url, "vera", "Please remember that I drive a teal 1987 Volvo 240 estate")
    chat(proxy.url, "vera", "My daughter Zephyrine starts kindergarten next week. What should I pack for her?")
    wait_for_memories(proxy.url, "vera", 2)

    colour = chat(proxy.url, "vera", "What colour is my car?")
    assert "teal 1987 Volvo 240 estate" in upstream_prompt(upstream)
    kids = chat(proxy.url, "vera", "Do I have kids?")
    assert "My daughter Zephyrine starts kindergarten next week." in upstream_prompt(upstream)
    assert colour.headers["x-memory-status"] == "ok" == kids.headers["x-memory-status"]


def test_a_changed_fact_injects_the_current_value_not_the_stale_one(proxy, upstream):
    chat(proxy.url, "rui", "I live in Porto, so I'd like weekend ideas near the Douro.")
    wait_for_memories(proxy.url, "rui", 1)
    chat(proxy.url, "rui", "By the way, I moved from Porto to Lisbon last month. Where can I buy a bike?")
    wait_for_memories(proxy.url, "rui", 2)

    chat(proxy.url, "rui", "Which city do I live in?")
    system = upstream.chat_requests()[-1].body["messages"][0]["content"]
    start = system.index("said about themselves")
    profile = system[start:system.index("</memproxy:memories>", start)]
    assert "I moved from Porto to Lisbon last month." in profile and "I live in Porto" not in profile
    # the older turn may still be recalled, but its replaced statement is not injected
    assert "I live in Porto" not in system
