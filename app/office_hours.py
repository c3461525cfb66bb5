"""Office hours: when a target's mail system may receive letters, read from the campaign file.

A campaign (top level) or a target (``[[targets]]``) may say::

    timezone = "Asia/Almaty"
    hours = "09:00-18:00"
    days = "mon-fri"          # optional; "mon,wed,fri", "sat-sun", "fri-mon" (wraps) …

Each key a target gives wins over the campaign's, key by key: a campaign may
set ``hours`` and ``days`` once and each target its own ``timezone``. The
result is resolved when the file is loaded (:func:`with_office_hours`), so the
worker reads one :class:`OfficeHours` per target, or None: any hour, as before.

Times are wall-clock times in the target's zone (``zoneinfo``, with the
``tzdata`` package for systems without a time-zone database), so a window
stays 09:00-18:00 local across a change to or from summer time.
"""

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The campaign-file keys this module reads, at the top level and in ``[[targets]]``.
KEYS = ("timezone", "hours", "days")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MINUTES_A_DAY = 24 * 60


@dataclass(frozen=True)
class OfficeHours:
    """A weekly window, in one time zone, inside which letters to a target may be sent.

    ``opens`` and ``closes`` are minutes after local midnight (``closes`` may
    be 1440, "24:00"); ``days`` are weekday numbers, Monday 0. A window never
    crosses midnight (the loader refuses one that would).
    """

    timezone: str
    opens: int
    closes: int
    days: frozenset[int] = frozenset(range(7))
    #: How the file wrote them, for notes: "09:00-18:00", "mon-fri".
    hours_text: str = ""
    days_text: str = ""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        """True when ``at`` (UTC: naive as :func:`app.models.utcnow` gives, or aware) is inside the hours."""
        local = _as_utc(at).astimezone(self.zone)
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        return local.weekday() in self.days and self.opens * 60 <= seconds < self.closes * 60

    def next_opening(self, at: datetime) -> datetime:
        """The first moment at or after ``at`` inside the hours: ``at`` itself when open.

        Returned in UTC, naive when ``at`` is naive (as :func:`app.models.utcnow`).
        The opening is the local wall-clock time on each day, so it moves by
        an hour in UTC when the zone changes to or from summer time. An
        opening time that a spring change skips (02:30 on the night clocks go
        from 02:00 to 03:00) counts from the same offset as before the change.
        """
        if self.is_open(at):
            return at
        moment = _as_utc(at)
        today = moment.astimezone(self.zone).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = self._opening_on(day)
            if opening > moment:
                return opening if at.tzinfo else opening.replace(tzinfo=None)
        raise AssertionError("a week always has an opening: days is never empty")  # pragma: no cover

    def _opening_on(self, day: date) -> datetime:
        local = datetime.combine(day, time(self.opens // 60, self.opens % 60), tzinfo=self.zone)
        return local.astimezone(UTC)

    def __str__(self) -> str:
        """How a note names these hours: "Asia/Almaty office hours 09:00-18:00 mon-fri"."""
        return f"{self.timezone} office hours {self.hours_text}" + (f" {self.days_text}" if self.days_text else "")


def _as_utc(at):
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def with_office_hours(data: dict[str, Any], targets: Sequence[Any], fail: Callable[[str, str], None]) -> list[Any]:
    """``targets`` (as loaded from ``data["targets"]``), each with its ``hours`` resolved.

    A target's own keys win over the campaign's, one by one. Every problem
    goes to ``fail(key, message)``, ``key`` as the file writes it:
    ``timezone``, ``targets[2].hours``.
    """
    fail = _once(fail)
    defaults = _read_keys(data, "", fail)
    raw = data.get("targets")
    items = [(i, item) for i, item in enumerate(raw, 1) if isinstance(item, dict)] if isinstance(raw, list) else []
    resolved, any_hours = [], False
    # _load_targets makes one Target per table, in order: they pair up.
    for (i, item), target in zip(items, targets, strict=True):
        own = _read_keys(item, f"targets[{i}].", fail)
        keys = {**defaults, **own}
        if "hours" not in keys:
            for key in sorted(own.keys() & {"timezone", "days"}):
                fail(f"targets[{i}].{key}", 'applies to no hours: add hours = "09:00-18:00" (here or at the top)')
            resolved.append(target)
            continue
        any_hours = True
        resolved.append(dataclasses.replace(target, hours=_combine(keys, f"targets[{i}].", own, fail)))
    if not any_hours and items:
        for key in sorted(defaults.keys() & {"timezone", "days"}):
            fail(key, 'applies to no hours: add hours = "09:00-18:00" (here or in a target)')
    return resolved


def _once(fail):
    """``fail`` that reports each line once (campaign-wide hours without a timezone fail for every target)."""
    seen = set()

    def fail_once(key, message):
        if (key, message) not in seen:
            seen.add((key, message))
            fail(key, message)
    return fail_once


def _combine(keys, where, own, fail):
    """The :class:`OfficeHours` of ``keys`` (parsed values), or None when one is missing (reported)."""
    if "timezone" not in keys:
        at = where if "hours" in own else ""
        fail(f"{at}hours", 'needs a timezone, e.g. timezone = "Asia/Almaty" (here or at the top of the file)')
        return None
    if None in keys.values():
        return None  # a malformed key, reported where it was read
    (opens, closes, hours_text), (days, days_text) = keys["hours"], keys.get("days", (frozenset(range(7)), ""))
    return OfficeHours(keys["timezone"], opens, closes, days, hours_text, days_text)


def _read_keys(table, where, fail):
    """{key: parsed value, or None when malformed (reported)} for the office-hours keys ``table`` gives."""
    readers = {"timezone": parse_timezone, "hours": parse_hours, "days": parse_days}
    found = {}
    for key in KEYS:
        if key not in table:
            continue
        try:
            found[key] = readers[key](table[key])
        except ValueError as exc:
            fail(f"{where}{key}", str(exc))
            found[key] = None
    return found


def parse_timezone(value: object) -> str:
    """``value`` if it names a time zone Python knows ("Asia/Almaty"); ValueError saying why not."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('must be a time zone name in quotes, e.g. "Asia/Almaty"')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'"{value}" is not a time zone: write an IANA name such as "Asia/Almaty" '
                         'or "Europe/Paris"') from None
    return value


def parse_hours(value: object) -> tuple[int, int, str]:
    """(opens, closes, text) in minutes after midnight from "09:00-18:00"; ValueError saying what is wrong."""
    match = _HOURS_RE.match(value) if isinstance(value, str) else None
    example = 'write it as "09:00-18:00" (24-hour clock, opening-closing)'
    if not match:
        raise ValueError(f"{value!r} is not a span of hours: {example}")
    h1, m1, h2, m2 = map(int, match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"{value!r} is not a span of hours: {example}")
    opens, closes = h1 * 60 + m1, h2 * 60 + m2
    if opens > closes:
        raise ValueError(f"{value!r} crosses midnight, which is not supported: an office's day ends before "
                         'midnight (for letters at any hour, leave hours out or write "00:00-24:00")')
    if opens == closes:
        raise ValueError(f"{value!r} is an empty span: the closing time must come after the opening time")
    return opens, closes, f"{h1:02}:{m1:02}-{h2:02}:{m2:02}"


def parse_days(value: object) -> tuple[frozenset[int], str]:
    """(weekday numbers, Monday 0, and the text) from "mon-fri", "mon,wed,fri" or "fri-mon" (a range may wrap)."""
    example = 'write days as "mon-fri", "mon,wed,fri" or "sat-sun"'
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a string: {example}")
    days = set()
    for part in value.lower().replace(" ", "").split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(end not in DAY_NAMES for end in ends):
            raise ValueError(f"{value!r}: {part!r} is not a day or a range of days ({', '.join(DAY_NAMES)}); "
                             + example)
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        days.update((first + n) % 7 for n in range((last - first) % 7 + 1))
    return frozenset(days), value.strip().lower()
