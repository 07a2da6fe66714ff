"""Schedule expressions and their fire times, computed in wall-clock time with zoneinfo.

Four kinds of expression:

- 5-field cron ``m h dom mon dow`` (Vixie cron: dow 0-7, 0 and 7 are Sunday, names JAN…DEC
  and SUN…SAT; when both dom and dow are restricted a day matches either, as cron does),
  plus ``L`` / ``nW`` / ``LW`` in dom and ``nL`` / ``n#k`` in dow, and @hourly, @daily,
  @weekly, @monthly, @yearly.
- AWS-style ``cron(m h dom mon dow year)`` (EventBridge's: dow 1-7 is SUN-SAT, exactly one
  of dom and dow is ``?``, a year field 1970-2199, the same L/W/#).
- ``rate(5 minutes)``: every N minutes/hours/days of elapsed time, from the trigger's start.
- ``at(2026-12-01T09:00)``: once, at that wall-clock time in the trigger's timezone.

Why no library: croniter iterates in a fixed UTC offset and its own tracker lists double
and missed runs across daylight saving (the hermes-agent and temporal threads describe the
same class of bug); here a cron expression is matched against *wall-clock* minutes and each
match is mapped to instants by zoneinfo, so the rules are few and testable:

- A wall time that happens twice (the fall-back hour) fires once, at its first occurrence
  -- except when the expression fires every hour (hour field ``*`` or a step covering all
  24), where it fires at both: "every 15 minutes" keeps firing every 15 real minutes
  through the repeated hour (ISC cron's rule).
- A wall time that does not exist (the spring-forward gap) fires at the instant the gap
  ends (03:00 in America/New_York on 2026-03-08 for a daily 02:30); several such times
  collapse into that one fire (ISC cron runs the skipped jobs "immediately" too).
- ``rate()`` counts elapsed time: ``rate(1 day)`` is every 24 h, so its local time moves by
  an hour across a transition. ``at()`` in a gap or a repeated hour follows the cron rules.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
DAY_NAMES = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
MONTH_NAMES = list(calendar.month_name)[1:]
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
YEAR_MIN, YEAR_MAX = 1970, 2199
# How far ahead a search for the next match looks before it calls an expression one that
# never fires (e.g. February 30th): 28 years hold every (date, weekday) combination.
SEARCH_YEARS = 29
# A daylight-saving shift moves wall time against real time by at most this much.
MAX_SHIFT = timedelta(hours=3)


class ExpressionError(ValueError):
    """An expression, timezone or date that cannot be used; ``field`` names the input."""

    def __init__(self, message: str, field: str = "expression") -> None:
        super().__init__(message)
        self.field = field


def zone_get(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name or name not in _zones():
        raise ExpressionError(
            f"'{name}' is not an IANA timezone (for example Europe/Berlin, America/New_York, UTC).", "timezone"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover - listed but unreadable
        raise ExpressionError(f"'{name}' is not an IANA timezone.", "timezone")


_ZONES: set[str] | None = None


def _zones() -> set[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = set(available_timezones()) | {"UTC"}
    return _ZONES


# --- cron fields ------------------------------------------------------------------------------


@dataclass
class CronSpec:
    minutes: list[int]
    hours: list[int]
    months: set[int]
    years: set[int] | None  # None: every year
    dom: set[int] = field(default_factory=set)  # plain days of month
    dom_last: bool = False  # L
    dom_weekday: set[int] = field(default_factory=set)  # nW
    dom_last_weekday: bool = False  # LW
    dow: set[int] = field(default_factory=set)  # 0 = Sunday
    dow_last: set[int] = field(default_factory=set)  # nL: the last such weekday of the month
    dow_nth: set[tuple[int, int]] = field(default_factory=set)  # (weekday, k): n#k
    dom_star: bool = True
    dow_star: bool = True
    every_hour: bool = False  # the hour field covers all 24: fire in both repeated hours
    aws: bool = False

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months or (self.years is not None and d.year not in self.years):
            return False
        dom_ok = self._dom_matches(d)
        dow_ok = self._dow_matches(d)
        if self.aws:
            return dom_ok and dow_ok  # one of them is '?' (always true)
        if self.dom_star or self.dow_star:
            return dom_ok and dow_ok
        return dom_ok or dow_ok  # Vixie cron: both restricted → either

    def _dom_matches(self, d: date) -> bool:
        if self.dom_star:
            return True
        last = calendar.monthrange(d.year, d.month)[1]
        if d.day in self.dom or (self.dom_last and d.day == last):
            return True
        if self.dom_last_weekday and d.day == _nearest_weekday(d.year, d.month, last):
            return True
        return any(d.day == _nearest_weekday(d.year, d.month, n) for n in self.dom_weekday if n <= last)

    def _dow_matches(self, d: date) -> bool:
        if self.dow_star:
            return True
        wd = (d.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        if wd in self.dow:
            return True
        last = calendar.monthrange(d.year, d.month)[1]
        if wd in self.dow_last and d.day + 7 > last:
            return True
        return (wd, (d.day - 1) // 7 + 1) in self.dow_nth


def _nearest_weekday(year: int, month: int, day: int) -> int:
    """nW: the weekday (Mon-Fri) nearest to ``day`` within the same month (Quartz's rule)."""
    wd = date(year, month, day).weekday()
    last = calendar.monthrange(year, month)[1]
    if wd == 5:  # Saturday → Friday, or Monday when the 1st is a Saturday
        return day - 1 if day > 1 else day + 2
    if wd == 6:  # Sunday → Monday, or Friday when it is the month's last day
        return day + 1 if day < last else day - 2
    return day


def _names(token: str, names: list[str], offset: int) -> str:
    upper = token.upper()
    for i, name in enumerate(names):
        upper = re.sub(rf"\b{name}\b", str(i + offset), upper)
    return upper


def _parse_range(
    token: str, low: int, high: int, what: str, field_name: str, *, star_ok: bool = True
) -> tuple[list[int], bool]:
    """A comma list of *, n, a-b, with /step. Returns the values and whether it was '*'."""
    values: set[int] = set()
    star = False
    for part in token.split(","):
        step = 1
        stepped = "/" in part
        if stepped:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise ExpressionError(f"{what}: the step in '{token}' must be a positive number.", field_name)
            step = int(step_text)
        if part in ("*", ""):
            if part == "":
                raise ExpressionError(f"{what}: '{token}' has an empty item.", field_name)
            a, b = low, high
            star = star or step == 1
        elif "-" in part:
            a_text, b_text = part.split("-", 1)
            if not (a_text.isdigit() and b_text.isdigit()):
                raise ExpressionError(f"{what}: '{part}' is not a range of numbers ({low}-{high}).", field_name)
            a, b = int(a_text), int(b_text)
            if a > b:
                raise ExpressionError(f"{what}: the range '{part}' runs backwards.", field_name)
        elif part.isdigit():
            a = int(part)
            b = high if stepped else a  # "5/15": from 5 to the end, every 15
        else:
            raise ExpressionError(f"{what}: '{part}' is not a number, a range or *.", field_name)
        if a < low or b > high:
            raise ExpressionError(f"{what}: '{part}' is outside {low}-{high}.", field_name)
        values.update(range(a, b + 1, step))
    if star and not star_ok:
        star = False
    return sorted(values), star


def _parse_dom(spec: CronSpec, token: str, aws: bool) -> None:
    if token == "?" or token == "*":
        if token == "?" and not aws:
            raise ExpressionError("day of month: '?' is AWS cron(...) syntax; use '*' in a 5-field cron.")
        spec.dom_star = True
        return
    spec.dom_star = False
    for part in token.upper().split(","):
        if part == "L":
            spec.dom_last = True
        elif part == "LW":
            spec.dom_last_weekday = True
        elif part.startswith("L-"):
            raise ExpressionError("day of month: 'L-n' (n days before the last) is not supported; use 'L'.")
        elif re.fullmatch(r"\d{1,2}W", part):
            n = int(part[:-1])
            if not 1 <= n <= 31:
                raise ExpressionError(f"day of month: '{part}' is outside 1-31.")
            spec.dom_weekday.add(n)
        elif "W" in part or "L" in part:
            raise ExpressionError(f"day of month: '{part}': L and W stand alone ('L', 'LW', '15W'), not in ranges.")
        else:
            values, star = _parse_range(part, 1, 31, "day of month", "expression")
            spec.dom.update(values)
            if star:
                spec.dom_star = True


def _parse_dow(spec: CronSpec, token: str, aws: bool) -> None:
    # AWS numbers days 1-7 from Sunday; cron 0-7 with 0 and 7 Sunday. Internally 0 = Sunday.
    offset = 1 if aws else 0
    if token == "?" or token == "*":
        if token == "?" and not aws:
            raise ExpressionError("day of week: '?' is AWS cron(...) syntax; use '*' in a 5-field cron.")
        spec.dow_star = True
        return
    spec.dow_star = False
    low, high = (1, 7) if aws else (0, 7)
    for part in _names(token, DAYS, offset).split(","):
        if re.fullmatch(r"\d#\d", part):
            wd, k = int(part[0]), int(part[2])
            if not (low <= wd <= high and 1 <= k <= 5):
                raise ExpressionError(f"day of week: '{part}' needs a day {low}-{high} and an occurrence 1-5.")
            spec.dow_nth.add(((wd - offset) % 7, k))
        elif re.fullmatch(r"\dL", part):
            wd = int(part[0])
            if not low <= wd <= high:
                raise ExpressionError(f"day of week: '{part}' is outside {low}-{high}.")
            spec.dow_last.add((wd - offset) % 7)
        elif part == "L":
            spec.dow.add(6)  # Quartz/AWS: L alone in day of week is the week's last day, Saturday
        elif "#" in part or "L" in part:
            raise ExpressionError(f"day of week: '{part}': use 'n#k' (the k-th such day) or 'nL' (the last).")
        else:
            values, star = _parse_range(part, low, high, "day of week", "expression")
            spec.dow.update((v - offset) % 7 for v in values)
            if star:
                spec.dow_star = True


def parse_cron(text: str, *, aws: bool) -> CronSpec:
    fields = text.split()
    expected = 6 if aws else 5
    if len(fields) != expected:
        form = (
            "cron(minute hour day-of-month month day-of-week year)"
            if aws
            else "minute hour day-of-month month day-of-week"
        )
        raise ExpressionError(
            f"a {'AWS ' if aws else ''}cron expression has {expected} fields ({form}); got {len(fields)}."
        )
    minute, hour, dom, month, dow = fields[:5]
    for name, token in (("minute", minute), ("hour", hour), ("month", month)):
        if "#" in token or "?" in token:
            raise ExpressionError(f"{name}: '#' and '?' belong in the day fields only.")
    minutes, _ = _parse_range(minute, 0, 59, "minute", "expression")
    hours, hour_star = _parse_range(hour, 0, 23, "hour", "expression")
    months, _ = _parse_range(_names(month, MONTHS, 1), 1, 12, "month", "expression")
    spec = CronSpec(minutes=minutes, hours=hours, months=set(months), years=None, aws=aws)
    spec.every_hour = hour_star or len(hours) == 24
    _parse_dom(spec, dom, aws)
    _parse_dow(spec, dow, aws)
    if aws:
        if (dom == "?") == (dow == "?"):
            raise ExpressionError(
                "AWS cron(...): exactly one of day-of-month and day-of-week must be '?' "
                "(e.g. cron(0 2 ? * MON-FRI *) or cron(0 2 1 * ? *))."
            )
        year = fields[5]
        if year != "*":
            years, _ = _parse_range(year, YEAR_MIN, YEAR_MAX, "year", "expression")
            spec.years = set(years)
    return spec


# --- expressions ------------------------------------------------------------------------------


@dataclass
class Expression:
    kind: str  # cron | rate | at
    text: str
    cron: CronSpec | None = None
    rate_s: int = 0
    at: datetime | None = None  # naive wall-clock time


def parse(text: str) -> Expression:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression is required: a cron expression, rate(5 minutes) or at(2026-12-01T09:00).")
    text = " ".join(text.strip().split())
    if len(text) > 200:
        raise ExpressionError("an expression is at most 200 characters.")
    lowered = text.lower()
    if lowered.startswith("rate(") and text.endswith(")"):
        m = re.fullmatch(r"(\d+) ([a-z]+)", lowered[5:-1].strip())
        if not m or m.group(2) not in RATE_UNITS:
            raise ExpressionError(
                "rate(...) is 'rate(N unit)', unit minute(s), hour(s) or day(s): e.g. rate(5 minutes)."
            )
        n, unit = int(m.group(1)), m.group(2)
        if n < 1:
            raise ExpressionError("rate(...): the value must be 1 or more.")
        if (n == 1) != unit.endswith(("minute", "hour", "day")):
            raise ExpressionError(
                f"rate(...): write 'rate(1 {unit.rstrip('s')})' and 'rate({max(n, 2)} {unit.rstrip('s')}s)'."
            )
        if n * RATE_UNITS[unit] > 366 * 86400:
            raise ExpressionError("rate(...): at most one year between fires.")
        return Expression(kind="rate", text=text, rate_s=n * RATE_UNITS[unit])
    if lowered.startswith("at(") and text.endswith(")"):
        inner = text[3:-1].strip()
        try:
            at = datetime.fromisoformat(inner)
        except ValueError:
            raise ExpressionError("at(...) takes a local date and time: at(2026-12-01T09:00).")
        if at.tzinfo is not None:
            raise ExpressionError("at(...) takes a wall-clock time without an offset; the trigger's timezone applies.")
        return Expression(kind="at", text=text, at=at.replace(second=0, microsecond=0) if at.second == 0 else at)
    if lowered.startswith("cron(") and text.endswith(")"):
        return Expression(kind="cron", text=text, cron=parse_cron(text[5:-1], aws=True))
    if text.startswith("@"):
        if lowered not in MACROS:
            raise ExpressionError(f"'{text}' is not a known macro ({', '.join(MACROS)}).")
        return Expression(kind="cron", text=text, cron=parse_cron(MACROS[lowered], aws=False))
    if "(" in text:
        raise ExpressionError("an expression is a cron expression, cron(...), rate(...) or at(...).")
    return Expression(kind="cron", text=text, cron=parse_cron(text, aws=False))


# --- fire times -------------------------------------------------------------------------------


def _wall_matches(spec: CronSpec, start: datetime) -> Iterator[datetime]:
    """Naive wall-clock datetimes matching ``spec``, from ``start`` (inclusive) on."""
    day = start.date()
    stop = date(min(start.year + SEARCH_YEARS, 9999), 1, 1)
    first = True
    while day < stop:
        if day.month not in spec.months or (spec.years is not None and day.year not in spec.years):
            # Jump to the first of the next month.
            day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
            first = False
            continue
        if spec.day_matches(day):
            for h in spec.hours:
                if first and h < start.hour:
                    continue
                for m in spec.minutes:
                    candidate = datetime(day.year, day.month, day.day, h, m)
                    if candidate >= start:
                        yield candidate
        day += timedelta(days=1)
        first = False


def _gap_end(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a daylight-saving gap containing wall time ``local`` ends."""
    late = local.replace(tzinfo=tz, fold=0).astimezone(UTC)  # read with the offset before the gap
    early = local.replace(tzinfo=tz, fold=1).astimezone(UTC)  # read with the offset after it
    lo, hi = min(early, late), max(early, late)
    after = hi.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):  # the first second with the new offset
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def wall_instants(local: datetime, tz: ZoneInfo, *, both_folds: bool) -> list[datetime]:
    """The UTC instants of wall time ``local`` (see the module's rules for gaps and folds)."""
    first = local.replace(tzinfo=tz, fold=0)
    second = local.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local
    if not exists:
        return [_gap_end(local, tz)]
    instants = [first.astimezone(UTC)]
    if both_folds:
        instants.append(second.astimezone(UTC))
    return instants


def next_fire(expr: Expression, tz: ZoneInfo, after: datetime, *, anchor: datetime | None = None) -> datetime | None:
    """The first fire time strictly after ``after`` (aware), or None when there is none.
    ``anchor`` is where a rate() counts from (the trigger's start or creation)."""
    after = after.astimezone(UTC)
    if expr.kind == "rate":
        base = (anchor or after).astimezone(UTC).replace(microsecond=0)
        if base > after:
            return base
        steps = int((after - base).total_seconds() // expr.rate_s) + 1
        return base + timedelta(seconds=steps * expr.rate_s)
    if expr.kind == "at":
        assert expr.at is not None
        instant = wall_instants(expr.at, tz, both_folds=False)[0]
        return instant if instant > after else None
    assert expr.cron is not None
    spec = expr.cron
    start_wall = (after - MAX_SHIFT).astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    best: datetime | None = None
    horizon: datetime | None = None
    for wall in _wall_matches(spec, start_wall):
        if horizon is not None and wall > horizon:
            break
        for instant in wall_instants(wall, tz, both_folds=spec.every_hour):
            if instant > after and (best is None or instant < best):
                best = instant
        if best is not None and horizon is None:
            # A later wall time can map to an earlier instant only across a shift: look
            # MAX_SHIFT further in wall time, unless the offset is the same on both sides.
            if after.astimezone(tz).utcoffset() == (best + MAX_SHIFT).astimezone(tz).utcoffset():
                return best
            horizon = wall + MAX_SHIFT
    return best


def fire_times(
    expr: Expression,
    tz: ZoneInfo,
    after: datetime,
    count: int,
    *,
    anchor: datetime | None = None,
    end: datetime | None = None,
) -> list[datetime]:
    out: list[datetime] = []
    cursor = after
    while len(out) < count:
        nxt = next_fire(expr, tz, cursor, anchor=anchor)
        if nxt is None or (end is not None and nxt > end):
            break
        out.append(nxt)
        cursor = nxt
    return out


def validate(text: str, timezone_name: str, *, now: datetime) -> tuple[Expression, ZoneInfo]:
    """Parse and check that a cron expression fires at all (February 30th never does)."""
    expr = parse(text)
    tz = zone_get(timezone_name)
    if expr.kind == "cron" and next_fire(expr, tz, now) is None:
        raise ExpressionError(f"'{expr.text}' never fires (no date matches it in the next {SEARCH_YEARS} years).")
    return expr, tz


# --- description ------------------------------------------------------------------------------


def _list(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _runs(values: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _days_text(values: set[int]) -> str:
    order = sorted(values, key=lambda d: (d + 6) % 7)  # Monday first
    monday_first = [(d + 6) % 7 for d in order]
    parts = []
    for a, b in _runs(monday_first):
        name_a, name_b = DAY_NAMES[(a + 1) % 7], DAY_NAMES[(b + 1) % 7]
        parts.append(name_a if a == b else (f"{name_a} and {name_b}" if b == a + 1 else f"{name_a} through {name_b}"))
    return _list(parts)


def _step(values: list[int], low: int, high: int) -> int | None:
    if len(values) < 2 or values[0] != low:
        return None
    step = values[1] - values[0]
    if values == list(range(low, high + 1, step)):
        return step
    return None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def describe(expr: Expression, timezone_name: str) -> str:
    if expr.kind == "rate":
        n, unit = expr.rate_s, "second"
        for size, name in ((86400, "day"), (3600, "hour"), (60, "minute")):
            if n % size == 0:
                n, unit = n // size, name
                break
        return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    if expr.kind == "at":
        assert expr.at is not None
        return f"once, at {expr.at:%Y-%m-%d %H:%M}, {timezone_name}"
    spec = expr.cron
    assert spec is not None
    parts: list[str] = []
    minutes, hours = spec.minutes, spec.hours
    if len(minutes) == 1 and len(hours) <= 6:
        parts.append("at " + _list([f"{h:02d}:{minutes[0]:02d}" for h in hours]))
    else:
        if len(minutes) == 60:
            parts.append("every minute")
        elif (step := _step(minutes, 0, 59)) is not None:
            parts.append(f"every {step} minutes")
        else:
            parts.append("at minute " + _list([str(m) for m in minutes]) + " past the hour")
        if len(hours) < 24:
            if (step := _step(hours, 0, 23)) is not None:
                parts.append(f"every {step} hours")
            else:
                ranges = [
                    f"{a:02d}:00 to {b:02d}:59" if a != b else f"{a:02d}:00 to {a:02d}:59" for a, b in _runs(hours)
                ]
                parts.append("from " + _list(ranges))
    days: list[str] = []
    if not spec.dom_star:
        if spec.dom:
            days.append("on day " + _list([str(d) for d in sorted(spec.dom)]) + " of the month")
        if spec.dom_last:
            days.append("on the last day of the month")
        if spec.dom_last_weekday:
            days.append("on the last weekday of the month")
        for n in sorted(spec.dom_weekday):
            days.append(f"on the weekday nearest day {n} of the month")
    if not spec.dow_star:
        if spec.dow:
            days.append(_days_text(spec.dow))
        for wd in sorted(spec.dow_last):
            days.append(f"on the last {DAY_NAMES[wd]} of the month")
        for wd, k in sorted(spec.dow_nth):
            days.append(f"on the {_ordinal(k)} {DAY_NAMES[wd]} of the month")
    if days:
        parts.append(" or ".join(days) if not spec.aws else ", ".join(days))
    if len(spec.months) < 12:
        parts.append("in " + _list([MONTH_NAMES[m - 1] for m in sorted(spec.months)]))
    if spec.years is not None:
        parts.append("in " + _list([str(y) for y in sorted(spec.years)][:5]) + ("…" if len(spec.years) > 5 else ""))
    parts.append(timezone_name)
    return ", ".join(parts)
