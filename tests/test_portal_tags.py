"""Times and durations as the pages write them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stacks.templatetags.portal_tags import ago, duration, elapsed, local_time, period

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        (35, "35 ms"),
        (timedelta(seconds=4.25), "4.2 s"),
        (timedelta(seconds=12.4), "12 s"),
        (timedelta(seconds=72), "1 min 12 s"),
        (timedelta(minutes=3), "3 min"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(days=1, hours=3), "1 d 3 h"),
    ],
)
def test_duration(value, text):
    assert duration(value) == text


def test_elapsed_under_a_second_and_above():
    assert elapsed(timedelta(milliseconds=400)) == "under a second"
    assert elapsed(timedelta(seconds=65)) == "1 min 5 s"


@pytest.mark.parametrize(
    ("window", "text"),
    [(timedelta(hours=1), "hour"), (timedelta(days=1), "day"), (timedelta(minutes=10), "10 min")],
)
def test_period(window, text):
    assert period(window) == text


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(seconds=4), "in 4 s"),
        (timedelta(minutes=3, seconds=20), "in 3 min"),
        (timedelta(0), "now"),
        (timedelta(seconds=-3), "just now"),
        (timedelta(seconds=-45), "45 s ago"),
        (timedelta(minutes=-2), "2 min ago"),
        (timedelta(hours=-5), "5 h ago"),
        (timedelta(days=-1), "1 day ago"),
        (timedelta(days=-3), "3 days ago"),
    ],
)
def test_ago(offset, text):
    assert ago(NOW + offset, NOW) == text


def test_local_time_renders_utc_for_the_script_to_localize():
    when = datetime(2026, 3, 1, 13, 5, 9, tzinfo=UTC)

    assert local_time(when) == (
        '<time datetime="2026-03-01T13:05:09Z" data-local="datetime">1 Mar 2026, 13:05 UTC</time>'
    )
    assert local_time(when, "time") == (
        '<time datetime="2026-03-01T13:05:09Z" data-local="time">13:05:09 UTC</time>'
    )
    assert local_time(None) == ""
