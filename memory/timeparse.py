"""Dates in text: relative expressions resolved against an event time, and
the time a query names.

- :func:`resolve_relative` turns "yesterday", "last week", "next month",
  "3 days ago", "last Friday" … in a memory written at ``event_time`` into
  absolute dates or months (ISO strings), meant to be stored alongside the
  memory so that "when did X happen?" can be answered with a date.
- :func:`query_range` reads the time a query names ("in May 2023",
  "in 2022", "last summer" relative to ``now``) as a ``[start, end)`` range,
  for filtering or boosting by ``event_time``.

Not yet wired into ranking: the LoCoMo bench did not get to measure it.
"""

from __future__ import annotations

import re
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
    (``YYYY-MM``) or years (``YYYY``) for the relative expressions in ``text``."""
    base = event_time.date()
    out: list[str] = []
    for match in _SIMPLE.finditer(text):
        word = match.group(0).lower()
        if word in ("today", "tonight"):
            out.append(base.isoformat())
        elif word == "yesterday":
            out.append((base - timedelta(days=1)).isoformat())
        elif word == "tomorrow":
            out.append((base + timedelta(days=1)).isoformat())
        else:
            step = {"last": -1, "next": 1, "this": 0}[match.group(2).lower()]
            unit = match.group(3).lower()
            if unit in ("week", "weekend"):
                monday = base - timedelta(days=base.weekday()) + timedelta(weeks=step)
                out.append(f"week of {monday.isoformat()}")
            elif unit == "month":
                out.append(_month(_month_shift(base, step)))
            else:
                out.append(str(base.year + step))
    for match in _AGO.finditer(text):
        n = int(match.group(1)) if match.group(1).isdigit() else _NUMBERS[match.group(1).lower()]
        unit = match.group(2).lower()
        if unit == "day":
            out.append((base - timedelta(days=n)).isoformat())
        elif unit == "week":
            monday = base - timedelta(days=base.weekday()) - timedelta(weeks=n)
            out.append(f"week of {monday.isoformat()}")
        elif unit == "month":
            out.append(_month(_month_shift(base, -n)))
        else:
            out.append(str(base.year - n))
    for match in _WEEKDAY.finditer(text):
        target = WEEKDAYS.index(match.group(2).lower())
        if match.group(1).lower() == "next":
            delta = (target - base.weekday()) % 7 or 7
            out.append((base + timedelta(days=delta)).isoformat())
        else:
            delta = (base.weekday() - target) % 7 or 7
            out.append((base - timedelta(days=delta)).isoformat())
    return list(dict.fromkeys(out))


def query_range(query: str, now: datetime | None = None) -> tuple[date, date] | None:
    """The ``[start, end)`` dates a query names, or None."""
    match = _MONTH_YEAR.search(query)
    if match:
        start = date(int(match.group(2)), MONTHS.index(match.group(1).lower()) + 1, 1)
        return start, _month_shift(start, 1)
    match = _YEAR.search(query)
    if match:
        year = int(match.group(1))
        return date(year, 1, 1), date(year + 1, 1, 1)
    match = _SEASON.search(query)
    if match and now is not None:
        month = SEASON_START[match.group(2).lower()]
        year = now.year - (1 if match.group(1).lower() == "last" or month > now.month else 0)
        start = date(year, month, 1)
        return start, _month_shift(start, 3)
    return None


def in_range(when: datetime | None, span: tuple[date, date] | None) -> bool:
    """Whether ``when`` falls in ``span`` (no span: everything does; no time: nothing)."""
    if span is None:
        return True
    return when is not None and span[0] <= when.date() < span[1]
