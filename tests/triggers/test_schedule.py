"""Schedule expressions: daylight saving pinned, parsing, refusals, descriptions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apps.triggers.schedule import ExpressionError, describe, fire_times, parse, validate, zone_get

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def fires(expression: str, tz: str, after: datetime, count: int) -> list[str]:
    return [t.isoformat() for t in fire_times(parse(expression), zone_get(tz), after, count)]


def local(expression: str, tz: str, after: datetime, count: int) -> list[str]:
    zone = zone_get(tz)
    return [t.astimezone(zone).isoformat() for t in fire_times(parse(expression), zone, after, count)]


def test_daily_0130_new_york_fires_once_on_the_2026_fall_back_day():
    # 2026-11-01: 01:00-01:59 happens twice (EDT, then EST). A daily 01:30 fires at the first.
    got = fires("30 1 * * *", "America/New_York", datetime(2026, 10, 31, 12, tzinfo=UTC), 3)
    assert got == ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00", "2026-11-03T06:30:00+00:00"]


def test_daily_0230_new_york_in_the_spring_gap_fires_when_the_gap_ends():
    # 2026-03-08: 02:00-02:59 does not exist; a daily 02:30 fires at 03:00 EDT (07:00Z).
    got = local("30 2 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC), 3)
    assert got == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]


def test_berlin_gap_and_fold():
    # Spring 2026-03-29 02:00→03:00 CEST; autumn 2026-10-25 03:00→02:00 CET.
    spring = local("30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC), 2)
    assert spring == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    autumn = fires("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert autumn == ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]


def test_every_quarter_hour_keeps_firing_through_the_repeated_hour_and_once_in_the_gap():
    fold = fires("*/15 * * * *", "America/New_York", datetime(2026, 11, 1, 5, 44, tzinfo=UTC), 9)
    # Every 15 real minutes from 01:45 EDT through the repeated hour to 02:00 EST.
    assert fold == [
        f"2026-11-01T{h:02d}:{m:02d}:00+00:00"
        for h, m in [(5, 45), (6, 0), (6, 15), (6, 30), (6, 45), (7, 0), (7, 15), (7, 30), (7, 45)]
    ]
    gap = local("*/15 * * * *", "America/New_York", datetime(2026, 3, 8, 6, 40, tzinfo=UTC), 3)
    # 02:00, 02:15, 02:30, 02:45 do not exist: one fire at 03:00, then on.
    assert gap == ["2026-03-08T01:45:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00"]


def test_a_wall_time_run_over_a_year_has_no_duplicates_and_holds_its_local_time():
    times = fire_times(parse("30 1 * * *"), zone_get("America/New_York"), NOW, 365)
    assert len(set(times)) == 365
    zone = zone_get("America/New_York")
    assert {t.astimezone(zone).strftime("%H:%M") for t in times} == {"01:30"}


def test_aws_cron_and_extensions():
    assert local("cron(0 2 ? * MON-FRI *)", "Europe/Berlin", datetime(2026, 10, 23, 12, tzinfo=UTC), 2) == [
        "2026-10-26T02:00:00+01:00",
        "2026-10-27T02:00:00+01:00",
    ]
    assert fires("cron(0 10 ? * 6L 2026)", "UTC", NOW, 2) == ["2026-01-30T10:00:00+00:00", "2026-02-27T10:00:00+00:00"]
    assert fires("cron(0 10 ? * 3#2 *)", "UTC", NOW, 1) == ["2026-01-13T10:00:00+00:00"]  # 2nd Tuesday (AWS 3)
    assert fires("0 9 LW * *", "UTC", datetime(2026, 5, 1, tzinfo=UTC), 1) == ["2026-05-29T09:00:00+00:00"]
    assert fires("0 9 15W * *", "UTC", datetime(2026, 8, 1, tzinfo=UTC), 1) == ["2026-08-14T09:00:00+00:00"]
    assert fires("0 0 L 2 *", "UTC", NOW, 2) == ["2026-02-28T00:00:00+00:00", "2027-02-28T00:00:00+00:00"]
    # A year field that is over: nothing more.
    assert fires("cron(0 0 1 1 ? 2026)", "UTC", datetime(2026, 6, 1, tzinfo=UTC), 1) == []


def test_vixie_day_rule_and_names_and_macros():
    # Both day fields restricted: either matches (1st of the month OR a Monday).
    assert fires("0 0 1 * MON", "UTC", datetime(2026, 5, 30, tzinfo=UTC), 3) == [
        "2026-06-01T00:00:00+00:00",  # a Monday and the 1st
        "2026-06-08T00:00:00+00:00",
        "2026-06-15T00:00:00+00:00",
    ]
    assert fires("0 12 * JAN,JUL 0", "UTC", NOW, 1) == ["2026-01-04T12:00:00+00:00"]
    assert fires("@daily", "UTC", NOW, 1) == ["2026-01-02T00:00:00+00:00"]
    assert fires("0 0 * * 7", "UTC", NOW, 1) == ["2026-01-04T00:00:00+00:00"]  # 7 is Sunday too


def test_rate_counts_elapsed_time_from_the_anchor_and_at_fires_once():
    anchor = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)
    times = fire_times(parse("rate(1 day)"), zone_get("America/New_York"), anchor, 2, anchor=anchor)
    assert [t.isoformat() for t in times] == ["2026-03-09T06:00:00+00:00", "2026-03-10T06:00:00+00:00"]
    assert fires("at(2026-12-01T09:00)", "Europe/Berlin", NOW, 3) == ["2026-12-01T08:00:00+00:00"]
    assert fires("at(2026-03-08T02:30)", "America/New_York", NOW, 1) == ["2026-03-08T07:00:00+00:00"]


@pytest.mark.parametrize(
    ("expression", "timezone", "field", "words"),
    [
        ("", "UTC", "expression", "required"),
        ("0 0 30 2 *", "UTC", "expression", "never fires"),
        ("61 * * * *", "UTC", "expression", "minute: '61' is outside 0-59"),
        ("0 0 * *", "UTC", "expression", "has 5 fields"),
        ("cron(0 0 * * * *)", "UTC", "expression", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 0 1 * ? 1800)", "UTC", "expression", "year: '1800' is outside 1970-2199"),
        ("0 0 ? * *", "UTC", "expression", "'?' is AWS cron(...) syntax"),
        ("0 0 L-3 * *", "UTC", "expression", "'L-n' (n days before the last) is not supported"),
        ("0 0 * * MON#6", "UTC", "expression", "occurrence 1-5"),
        ("0 L * * *", "UTC", "expression", "hour: 'L' is not a number"),
        ("rate(5 weeks)", "UTC", "expression", "unit minute(s), hour(s) or day(s)"),
        ("rate(1 minutes)", "UTC", "expression", "rate(1 minute)"),
        ("at(2026-12-01T09:00+01:00)", "UTC", "expression", "without an offset"),
        ("@fortnightly", "UTC", "expression", "not a known macro"),
        ("0 2 * * *", "Mars/Olympus", "timezone", "not an IANA timezone"),
    ],
)
def test_refusals_name_the_field_and_the_rule(expression, timezone, field, words):
    with pytest.raises(ExpressionError) as caught:
        validate(expression, timezone, now=NOW)
    assert caught.value.field == field
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("expression", "text"),
    [
        ("0 2 * * 1-5", "at 02:00, Monday through Friday, Europe/Berlin"),
        ("cron(0 2 ? * MON-FRI *)", "at 02:00, Monday through Friday, Europe/Berlin"),
        ("*/5 * * * *", "every 5 minutes, Europe/Berlin"),
        ("0 9 1 * *", "at 09:00, on day 1 of the month, Europe/Berlin"),
        ("0 8 ? * 2#1 *".join(["cron(", ")"]), "at 08:00, on the 1st Monday of the month, Europe/Berlin"),
        ("rate(5 minutes)", "every 5 minutes"),
        ("at(2026-12-01T09:00)", "once, at 2026-12-01 09:00, Europe/Berlin"),
    ],
)
def test_descriptions(expression, text):
    assert describe(parse(expression), "Europe/Berlin") == text
