"""Secrets and PII removed from memory text before it is embedded or stored.

Every detected span is replaced by a typed placeholder, ``[redacted:<type>]``:

- credentials (``memory.redact.credentials``, on by default): the provider
  key and token patterns of detect-secrets' regex plugins (AWS, GitHub,
  GitLab, OpenAI, Stripe, Slack, Twilio, SendGrid, npm, PyPI, basic-auth
  passwords in URLs, ...), JSON Web Tokens, private key blocks, generic ``sk-...``/bearer
  tokens, passwords told in words ("my password is ...", ``password=...``)
  and card numbers that pass the Luhn check;
- PII (``memory.redact.pii``, off by default): any of ``email``, ``phone``,
  ``iban`` (mod-97 checked) and ``address`` (a street address).

Pure regular expressions: nothing is downloaded, and one turn costs well
under a millisecond (``memproxy bench`` territory, not a test assertion).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import RegexBasedDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

PII_KINDS = ("email", "phone", "iban", "address")

# detect-secrets plugin -> the placeholder type its matches get
_PLUGINS: tuple[tuple[type[RegexBasedDetector], str], ...] = (
    (AWSKeyDetector, "api_key"),
    (ArtifactoryDetector, "api_key"),
    (AzureStorageKeyDetector, "api_key"),
    (DiscordBotTokenDetector, "token"),
    (GitHubTokenDetector, "token"),
    (GitLabTokenDetector, "token"),
    (MailchimpDetector, "api_key"),
    (NpmDetector, "token"),
    (OpenAIDetector, "api_key"),
    (PypiTokenDetector, "token"),
    (SendGridDetector, "api_key"),
    (SlackDetector, "token"),
    (SquareOAuthDetector, "api_key"),
    (StripeDetector, "api_key"),
    (TelegramBotTokenDetector, "token"),
    (TwilioKeyDetector, "api_key"),
    (BasicAuthDetector, "password"),
)

Check = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Detector:
    kind: str  # the placeholder type
    pattern: re.Pattern[str]
    group: int = 0  # the group that is the secret (0: the whole match)
    check: Check | None = None  # a validity check on the matched text (Luhn, mod-97)


def luhn_ok(text: str) -> bool:
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    compact = re.sub(r"\s", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in moved)
    return int(number) % 97 == 1


def _plugin_detectors() -> list[Detector]:
    out: list[Detector] = []
    for plugin, kind in _PLUGINS:
        for pattern in plugin().denylist:
            # a capturing group of 8+ characters is the secret itself (basic auth's
            # password, AWS's secret); shorter ones are prefixes (ghp|gho|...)
            group = 1 if pattern.groups >= 1 and plugin in (BasicAuthDetector, AWSKeyDetector) else 0
            out.append(Detector(kind, pattern, group))
    return out


_OWN_CREDENTIALS = (
    Detector(
        "private_key",
        re.compile(r"-----BEGIN[A-Z ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END[A-Z ]*PRIVATE KEY( BLOCK)?-----|\Z)", re.DOTALL),
    ),
    # OpenAI project/service keys, Anthropic keys and the like: sk-..., sk-proj-..., sk-ant-...
    Detector("api_key", re.compile(r"\bsk-[A-Za-z0-9][A-Za-z0-9_-]{19,}")),
    Detector("api_key", re.compile(r"\b(?:AIza[0-9A-Za-z_-]{35}|hf_[A-Za-z0-9]{30,}|xai-[A-Za-z0-9]{30,})")),
    # JSON Web Tokens, signature included (detect-secrets' pattern stops before it)
    Detector("token", re.compile(r"\beyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")),
    Detector("token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/=-]{16,})"), group=1),
    # "my password is hunter2", "password: hunter2", "pwd=hunter2", "passcode 1234"
    Detector(
        "password",
        re.compile(
            r"(?i)(?<!redacted:)\b(?:password|passwd|passphrase|passcode|pwd|pin code|pin)\b"
            r"(?:\s+(?:is|was|for\s+\S+(?:\s+is)?))?\s*[:=]?\s*[\"'`]?([^\s\"'`]{4,})"
        ),
        group=1,
    ),
    Detector(
        "api_key",
        re.compile(
            r"(?i)(?<!redacted:)\b(?:api[_ -]?key|secret[_ -]?key|access[_ -]?key|client[_ -]?secret|auth[_ -]?token|access[_ -]?token)\b"
            r"(?:\s+(?:is|was))?\s*[:=]?\s*[\"'`]?([A-Za-z0-9_./+=-]{12,})"
        ),
        group=1,
    ),
    Detector("card_number", re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"), check=luhn_ok),
)

_PII: dict[str, Detector] = {
    "email": Detector("email", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")),
    "iban": Detector("iban", re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b"), check=iban_ok),
    "phone": Detector(
        "phone",
        re.compile(r"(?<![\w+.,])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?!\w|[.,]\d)"),
        check=lambda text: 9 <= sum(c.isdigit() for c in text) <= 15,
    ),
    "address": Detector(
        "address",
        re.compile(
            r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][A-Za-z'.-]*\s+){1,4}"
            r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq)\b\.?"
            r"|\b(?:[A-Z][a-zäöüß]+)(?:straße|strasse|weg|gasse|platz|allee)\s+\d{1,4}[a-z]?\b"
        ),
    ),
}


@lru_cache(maxsize=16)
def _detectors(credentials: bool, pii: tuple[str, ...]) -> tuple[Detector, ...]:
    out: list[Detector] = []
    if credentials:
        out.extend(_OWN_CREDENTIALS[:1])  # private key blocks first: they contain other-looking tokens
        out.extend(_plugin_detectors())
        out.extend(_OWN_CREDENTIALS[1:])
    out.extend(_PII[kind] for kind in pii)
    return tuple(out)


class Redactor:
    """Replaces detected secrets (and the chosen PII kinds) with ``[redacted:<type>]``."""

    def __init__(self, credentials: bool = True, pii: Sequence[str] = ()) -> None:
        unknown = sorted(set(pii) - set(PII_KINDS))
        if unknown:
            raise ValueError(f"unknown PII kind(s) {unknown}; expected any of {list(PII_KINDS)}")
        self.detectors = _detectors(credentials, tuple(sorted(set(pii))))

    def __bool__(self) -> bool:
        return bool(self.detectors)

    def redact(self, text: str) -> str:
        for detector in self.detectors:
            text = _apply(detector, text)
        return text

    def kinds_found(self, text: str) -> list[str]:
        """The placeholder types ``text`` would get (for tests and logs)."""
        return [d.kind for d in self.detectors if any(True for _ in _spans(d, text))]


def _spans(detector: Detector, text: str) -> Iterable[tuple[int, int]]:
    for match in detector.pattern.finditer(text):
        group = detector.group if detector.group <= (detector.pattern.groups or 0) else 0
        start, end = match.span(group)
        if start < 0 or end <= start:
            continue
        secret = text[start:end]
        if secret.startswith("[redacted:"):
            continue
        if detector.check is not None and not detector.check(secret):
            continue
        yield start, end


def _apply(detector: Detector, text: str) -> str:
    spans = list(_spans(detector, text))
    if not spans:
        return text
    placeholder = f"[redacted:{detector.kind}]"
    out: list[str] = []
    last = 0
    for start, end in spans:
        out.append(text[last:start])
        out.append(placeholder)
        last = end
    out.append(text[last:])
    return "".join(out)
