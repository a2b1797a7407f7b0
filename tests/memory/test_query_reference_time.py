"""Relative expressions of a query, read against its reference time (``now``)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from memory.timeparse import query_time, resolve_relative

NOW = datetime(2023, 6, 23, 7, 31, tzinfo=UTC)  # a Friday


def _spans(query: str, now: datetime = NOW) -> tuple[tuple[date, date], ...]:
    found = query_time(query, now)
    assert found is not None, query
    return found.spans


def test_expressions_pointing_back_are_read_against_now() -> None:
    assert _spans("What did I buy last week?") == ((date(2023, 6, 12), date(2023, 6, 19)),)
    assert _spans("Where did I travel two months ago?") == ((date(2023, 4, 1), date(2023, 5, 1)),)
    assert _spans("what did I cook yesterday") == ((date(2023, 6, 22), date(2023, 6, 23)),)
    assert _spans("Who did I meet last Friday?") == ((date(2023, 6, 16), date(2023, 6, 17)),)
    assert _spans("What did I read last year?") == ((date(2022, 1, 1), date(2023, 1, 1)),)
    # another reference time, another span
    assert _spans("What did I buy last week?", datetime(2024, 1, 16, tzinfo=UTC)) == ((date(2024, 1, 8), date(2024, 1, 15)),)


def test_requests_about_now_or_later_name_no_past_time() -> None:
    for query in ("What should I cook today?", "Plan my trip next month", "How many days ago did I start running?"):
        assert query_time(query, NOW) is None, query


def test_expressions_off_the_calendar_are_skipped() -> None:
    assert resolve_relative("that was 99999999 days ago, and last week", NOW) == ["week of 2023-06-12"]
    assert query_time("what did I do 5 years ago, last summer?", datetime(1, 3, 1, tzinfo=UTC)) is None
    assert query_time("what did I do last year?", datetime(9999, 12, 31, tzinfo=UTC)) is not None
