"""Secrets and PII are redacted before anything is embedded or stored.

Realistic turns, told through the real chat path and the management API; the
stored memory shows a typed placeholder and the secret is in neither the
store nor anything injected later.
"""

from __future__ import annotations

import httpx
import pytest

from memory.redact import Redactor, iban_ok, luhn_ok
from tests.conftest import memories_before_barrier

OPENAI_KEY = "sk-proj-Xy7Gq2LmN4pR8sT1vW3zA5bC6dE9fH0jK2lM4nP6qR8s"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
GITHUB_TOKEN = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R"
CARD = "4242 4242 4242 4242"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----"

TURNS = [
    (f"Here is my OpenAI key {OPENAI_KEY}, use it for the script.", OPENAI_KEY, "api_key"),
    (f"Our CI uses AWS access key {AWS_KEY} in us-east-1.", AWS_KEY, "api_key"),
    (f"Clone it with my token {GITHUB_TOKEN} please", GITHUB_TOKEN, "token"),
    (f"Charge my Visa {CARD}, expiry 04/29.", CARD, "card_number"),
    ("My password is Tr0ub4dor&3 for the staging box.", "Tr0ub4dor&3", "password"),
    ("The db url is postgres://app:s3cr3t-pw@db.internal:5432/main", "s3cr3t-pw", "password"),
    (f"curl -H 'Authorization: Bearer {JWT}' https://api.example.com", JWT, "token"),
    (f"My deploy key:\n{PEM}\nkeep it safe", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUA", "private_key"),
]


@pytest.mark.parametrize(("text", "secret", "kind"), TURNS)
def test_credentials_are_replaced_by_typed_placeholders(text, secret, kind):
    redacted = Redactor().redact(text)
    assert secret not in redacted and f"[redacted:{kind}]" in redacted


def test_ordinary_text_is_left_alone():
    text = (
        "On 2024-05-01 I ran 10 km in 52:30; order #1234 5678 9012 3456 shipped; "
        "commit 3f2a9c1 fixed it; pi is 3.14159265358979; call me maybe; mail bob@example.com"
    )
    assert Redactor().redact(text) == text  # not a Luhn number, no credential, PII off by default


def test_luhn_and_iban_checks():
    assert luhn_ok("4111 1111 1111 1111") and luhn_ok("5500-0000-0000-0004") and not luhn_ok("4111 1111 1111 1112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE88 3704 0044 0532 0130 00")


def test_pii_is_redacted_only_when_configured():
    text = "Reach me at jane.doe@example.com or +44 20 7946 0958; IBAN GB82 WEST 1234 5698 7654 32; I live at 221B Baker Street."
    assert Redactor().redact(text) == text
    redacted = Redactor(pii=["email", "phone", "iban", "address"]).redact(text)
    for kind in ("email", "phone", "iban", "address"):
        assert f"[redacted:{kind}]" in redacted
    for raw in ("jane.doe@example.com", "7946 0958", "GB82", "Baker Street"):
        assert raw not in redacted
    only_email = Redactor(pii=["email"]).redact(text)
    assert "[redacted:email]" in only_email and "7946 0958" in only_email
    with pytest.raises(ValueError):
        Redactor(pii=["ssn"])


def test_a_secret_told_in_chat_is_never_stored_nor_injected_later(make_proxy, upstream):
    proxy = make_proxy(memory={"min_score": 0.0})
    user = "redact-chat"
    told = f"Remember my OpenAI key {OPENAI_KEY} and my card {CARD} for the Paris trip."
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": told}]},
        headers={"X-Memory-User": user},
        timeout=60,
    )
    assert response.status_code == 200
    (stored,) = memories_before_barrier(proxy.url, user)
    content = stored["content"]
    assert OPENAI_KEY not in content and "4242 4242" not in content
    assert content.count("[redacted:api_key]") == 2 and content.count("[redacted:card_number]") == 2  # user + echo
    assert "Paris trip" in content

    httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "fake-model", "messages": [{"role": "user", "content": "What do you know about my Paris trip?"}]},
        headers={"X-Memory-User": user, "X-Memory": "read"},
        timeout=60,
    )
    injected = upstream.chat_requests()[-1].body["messages"][0]["content"]
    assert "[redacted:api_key]" in injected and OPENAI_KEY not in injected


def test_the_management_api_redacts_too_and_pii_follows_the_setting(make_proxy):
    proxy = make_proxy(memory={"redact": {"pii": ["email"]}})
    body = {"user": "redact-api", "memories": [{"content": f"Bob's key is {AWS_KEY}, mail bob@corp.example"}]}
    created = httpx.post(f"{proxy.url}/v1/memories", json=body, timeout=60)
    assert created.status_code == 201, created.text
    content = created.json()["data"][0]["content"]
    assert content == "Bob's key is [redacted:api_key], mail [redacted:email]"
    memory_id = created.json()["data"][0]["id"]
    patched = httpx.patch(f"{proxy.url}/v1/memories/{memory_id}", json={"content": f"New card {CARD}"}, timeout=60)
    assert patched.json()["content"] == "New card [redacted:card_number]"
    off = make_proxy(memory={"redact": {"credentials": False}})
    kept = httpx.post(f"{off.url}/v1/memories", json={"user": "u", "memories": [{"content": f"key {AWS_KEY}"}]}, timeout=60)
    assert kept.json()["data"][0]["content"] == f"key {AWS_KEY}"
