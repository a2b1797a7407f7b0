"""Dates in text: relative expressions resolved against an event time, and
the time a query names.

- :func:`resolve_relative` turns "yesterday", "last week", "next month",
  "3 days ago", "last Friday" … in a memory written at ``event_time`` into
  absolute dates or months (ISO strings), meant to be stored alongside the
  memory so that "when did X happen?" can be answered with a date.
- :func:`query_time` reads the time a query names ("on 16 June, 2023",
  "in May 2023", "in 2022", "summer 2021", "in June"; and, against the
  query's reference time ``now``, "last summer", "yesterday", "last week",
  "two months ago", "last Friday"), for boosting memories whose event time,
  or a date they mention, falls in it (see :mod:`memory.recall`). Only
  expressions pointing back in time are read in a query ("what did I do
  last week?"); "today" or "next month" in a request say nothing about
  which memories it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MONTHS = ("january february march april may june july august september october november december").split()
WEEKDAYS = ("monday tuesday wednesday thursday friday saturday sunday").split()
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "a few": 3, "couple of": 2}

_AGO = re.compile(r"\b(\d+|a|an|one|two|three|four|five|six|a few|couple of) (day|week|month|year)s? ago\b", re.I)
_SIMPLE = re.compile(r"\b(yesterday|today|tonight|tomorrow|(last|next|this) (week|weekend|month|year))\b", re.I)
_WEEKDAY = re.compile(r"\b(last|this past|next) (" + "|".join(WEEKDAYS) + r")\b", re.I)
_MONTH_YEAR = re.compile(r"\b(" + "|".join(MONTHS) + r")(?:,)? (\d{4})\b", re.I)
_YEAR = re.compile(r"\b(?:in|during) (\d{4})\b", re.I)
_SEASON = re.compile(r"\b(last|this) (spring|summer|autumn|fall|winter)\b", re.I)
SEASON_START = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9, "winter": 12}


def _month_shift(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def resolve_relative(text: str, event_time: datetime) -> list[str]:
    """Absolute dates (``YYYY-MM-DD``), weeks (``week of YYYY-MM-DD``), months
    (``YYYY-MM``) or years (``YYYY``) for the relative expressions in ``text``.
    An expression that leaves the calendar ("99999999 days ago") is skipped."""
    base = event_time.date()
    out: list[str] = []
    for resolve, pattern in ((_simple, _SIMPLE), (_ago, _AGO), (_weekday, _WEEKDAY)):
        for match in pattern.finditer(text):
            try:
                out.append(resolve(match, base))
            except (OverflowError, ValueError):  # out of the calendar's range
                continue
    return list(dict.fromkeys(out))


def _simple(match: re.Match[str], base: date) -> str:
    word = match.group(0).lower()
    if word in ("today", "tonight"):
        return base.isoformat()
    if word == "yesterday":
        return (base - timedelta(days=1)).isoformat()
    if word == "tomorrow":
        return (base + timedelta(days=1)).isoformat()
    step = {"last": -1, "next": 1, "this": 0}[match.group(2).lower()]
    unit = match.group(3).lower()
    if unit in ("week", "weekend"):
        monday = base - timedelta(days=base.weekday()) + timedelta(weeks=step)
        return f"week of {monday.isoformat()}"
    if unit == "month":
        return _month(_month_shift(base, step))
    return str(date(base.year + step, 1, 1).year)


def _ago(match: re.Match[str], base: date) -> str:
    n = int(match.group(1)) if match.group(1).isdigit() else _NUMBERS[match.group(1).lower()]
    unit = match.group(2).lower()
    if unit == "day":
        return (base - timedelta(days=n)).isoformat()
    if unit == "week":
        monday = base - timedelta(days=base.weekday()) - timedelta(weeks=n)
        return f"week of {monday.isoformat()}"
    if unit == "month":
        return _month(_month_shift(base, -n))
    return str(date(base.year - n, 1, 1).year)


def _weekday(match: re.Match[str], base: date) -> str:
    target = WEEKDAYS.index(match.group(2).lower())
    if match.group(1).lower() == "next":
        delta = (target - base.weekday()) % 7 or 7
        return (base + timedelta(days=delta)).isoformat()
    delta = (base.weekday() - target) % 7 or 7
    return (base - timedelta(days=delta)).isoformat()


@dataclass(frozen=True, slots=True)
class QueryTime:
    """The time a query names: date spans (``[start, end)``) and months of any year."""

    spans: tuple[tuple[date, date], ...] = ()
    months: frozenset[int] = frozenset()

    def overlaps(self, start: date, end: date) -> bool:
        """Whether ``[start, end)`` meets the named time."""
        if any(start < hi and lo < end for lo, hi in self.spans):
            return True
        return bool(self.months) and _touches_months(start, end, self.months)


def _touches_months(start: date, end: date, months: frozenset[int]) -> bool:
    day = date(start.year, start.month, 1)
    while day < end:
        if day.month in months:
            return True
        day = _month_shift(day, 1)
    return False


_MONTH = "(" + "|".join(MONTHS) + ")"
_DAY_MONTH_YEAR = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)? " + _MONTH + r",? (\d{4})\b", re.I)
_MONTH_DAY_YEAR = re.compile(r"\b" + _MONTH + r" (\d{1,2})(?:st|nd|rd|th)?,? (\d{4})\b", re.I)
_SEASON_YEAR = re.compile(r"\b(spring|summer|autumn|fall|winter)(?: of)?,? (\d{4})\b", re.I)
_MONTH_ALONE = re.compile(r"\b(?:in|during|since|early|late|mid|of|this|last) " + _MONTH + r"\b(?!,? \d)", re.I)


def query_time(query: str, now: datetime | None = None) -> QueryTime | None:
    """The time a query names, or None.

    Days ("on 16 June, 2023", "October 13, 2023"), months ("in May 2023"),
    years ("in 2022"), seasons ("summer 2021"; "last summer" against ``now``)
    and bare months ("in June": June of any year).
    """
    spans: list[tuple[date, date]] = []
    taken: list[tuple[int, int]] = []  # character ranges already read as a day
    for pattern, order in ((_DAY_MONTH_YEAR, (1, 2, 3)), (_MONTH_DAY_YEAR, (2, 1, 3))):
        for m in pattern.finditer(query):
            day_text, month_text, year_text = (m.group(i) for i in order)
            try:
                day = date(int(year_text), MONTHS.index(month_text.lower()) + 1, int(day_text))
            except ValueError:
                continue
            spans.append((day, day + timedelta(days=1)))
            taken.append(m.span())
    for m in _MONTH_YEAR.finditer(query):
        if not any(lo <= m.start() < hi for lo, hi in taken):
            start = date(int(m.group(2)), MONTHS.index(m.group(1).lower()) + 1, 1)
            spans.append((start, _month_shift(start, 1)))
    for m in _YEAR.finditer(query):
        year = int(m.group(1))
        spans.append((date(year, 1, 1), date(year + 1, 1, 1)))
    for m in _SEASON_YEAR.finditer(query):
        start = date(int(m.group(2)), SEASON_START[m.group(1).lower()], 1)
        spans.append((start, _month_shift(start, 3)))
    if now is not None:
        spans += _past_spans(query, now)
    season = _SEASON.search(query)
    if season and now is not None:
        month = SEASON_START[season.group(2).lower()]
        year = now.year - (1 if season.group(1).lower() == "last" or month > now.month else 0)
        try:
            start = date(year, month, 1)
            spans.append((start, _month_shift(start, 3)))
        except ValueError:  # out of the calendar's range
            pass
    months = frozenset(MONTHS.index(m.group(1).lower()) + 1 for m in _MONTH_ALONE.finditer(query))
    if not spans and not months:
        return None
    return QueryTime(tuple(spans), months)


def _past_spans(query: str, now: datetime) -> list[tuple[date, date]]:
    """The spans of the query's expressions pointing back from ``now`` (yesterday,
    last week/weekend/month/year, N days/weeks/months/years ago, last Friday)."""
    past = [m.group(0) for m in _SIMPLE.finditer(query)
            if m.group(0).lower() == "yesterday" or (m.group(2) or "").lower() == "last"]
    past += [m.group(0) for m in _AGO.finditer(query)]
    past += [m.group(0) for m in _WEEKDAY.finditer(query) if m.group(1).lower() != "next"]
    if not past:
        return []
    found = (span_of(value) for value in resolve_relative(" | ".join(past), now))
    return [span for span in found if span is not None]


def span_of(resolved: str) -> tuple[date, date] | None:
    """The ``[start, end)`` of one :func:`resolve_relative` value."""
    try:
        if resolved.startswith("week of "):
            start = date.fromisoformat(resolved[8:])
            return start, start + timedelta(days=7)
        if len(resolved) == 10:
            day = date.fromisoformat(resolved)
            return day, day + timedelta(days=1)
        if len(resolved) == 7:
            start = date(int(resolved[:4]), int(resolved[5:]), 1)
            return start, _month_shift(start, 1)
        if len(resolved) == 4:
            return date(int(resolved), 1, 1), date(int(resolved) + 1, 1, 1)
    except ValueError:
        return None
    return None
