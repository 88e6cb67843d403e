"""Timestamps of MTA log lines -> epoch milliseconds (UTC).

Runs once per log line, so the common forms are read from a cache of their minute. Three forms:

* classic syslog, `Dec 03 12:16:24` (Postfix `maillog_file`) or `Dec  3 12:16:24` (syslog),
  optionally with a fraction (`journalctl -o short-precise`): no year and no zone. The zone comes
  from the configuration; the year from `YearGuess` (below).
* RFC 3339, `2026-12-03T12:16:24.123456+01:00` (rsyslog's high-precision `RSYSLOG_FileFormat`,
  `journalctl -o short-iso-precise` writes `+0100`): read to the millisecond.
* Exim's own, `2026-12-03 12:16:24.123 +0100` (`+millisec`, `log_timezone`; both optional).

A stamp that does not parse raises `StampError` with the reason the caller counts.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                      "Nov", "Dec"), 1)}
HALF_YEAR_MS = 183 * 86_400_000
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class StampError(ValueError):
    """The line's timestamp cannot be read; str(exc) is the reason (`no_timestamp`, `bad_timestamp`)."""


def _ms(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _fraction_ms(text: str) -> int:
    """'.123456' -> 123 (milliseconds, sub-ms digits dropped); '' -> 0."""
    if not text:
        return 0
    digits = text[1:4]
    if not digits.isdigit() or not text[1:].isdigit():
        raise StampError("bad_timestamp")
    return int(digits.ljust(3, "0"))


class LocalZone:
    """Wall-clock minutes of one zone -> epoch ms, cached per minute. Ambiguous minutes (the hour
    repeated when summer time ends) are not cached: `ms` takes the first of the two unless that is
    more than 10 minutes before `after` (the previous line), so a log stays in order across the change."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._minutes: dict[tuple[int, int, int, int, int], int] = {}

    def ms(self, y: int, mo: int, d: int, h: int, mi: int, s: int, frac_ms: int = 0, after: int | None = None) -> int:
        key = (y, mo, d, h, mi)
        base = self._minutes.get(key)
        if base is None:
            try:
                first = datetime(y, mo, d, h, mi, tzinfo=self.zone)
            except ValueError:
                raise StampError("bad_timestamp") from None
            second = first.replace(fold=1)
            a, b = _ms(first), _ms(second)
            if a != b:  # ambiguous: the second time when the first is well before the previous line
                base = b if after is not None and a + s * 1000 < after - 600_000 else a
                return base + s * 1000 + frac_ms
            if len(self._minutes) > 100_000:
                self._minutes.clear()
            self._minutes[key] = base = a
        return base + s * 1000 + frac_ms


class YearGuess:
    """The year of classic syslog stamps, which have none.

    The first stamp takes the latest year in which it is not more than a day after `reference_ms`
    (the wall clock when following a live log; the file's modification time when reading a rotated
    one: its last line was written then). Each later stamp keeps the previous line's year unless the
    date jumps back by more than half a year (the log crossed New Year: next year) or forward by
    more than half a year (a line from before New Year written late: the year before). Its state
    (`year`, `last_ms`) is saved with the ingest position, so a restart goes on where it stopped."""

    def __init__(self, zone: LocalZone, reference_ms: int, year: int | None = None, last_ms: int | None = None) -> None:
        self.zone, self.reference_ms = zone, reference_ms
        self.year, self.last_ms = year, last_ms

    def ms(self, mo: int, d: int, h: int, mi: int, s: int, frac_ms: int) -> int:
        if self.year is None or self.last_ms is None:
            ref_year = datetime.fromtimestamp(self.reference_ms / 1000, timezone.utc).year
            year = ref_year + 1
            t = self._at(year, mo, d, h, mi, s, frac_ms)
            while t > self.reference_ms + DAY_MS and year > ref_year - 2:
                year -= 1
                t = self._at(year, mo, d, h, mi, s, frac_ms)
        else:
            year = self.year
            t = self._at(year, mo, d, h, mi, s, frac_ms)
            if t < self.last_ms - HALF_YEAR_MS:
                year += 1
                t = self._at(year, mo, d, h, mi, s, frac_ms)
            elif t > self.last_ms + HALF_YEAR_MS:
                year -= 1
                t = self._at(year, mo, d, h, mi, s, frac_ms)
        self.year, self.last_ms = year, t
        return t

    def _at(self, y: int, mo: int, d: int, h: int, mi: int, s: int, frac_ms: int) -> int:
        if mo == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
            return self.zone.ms(y, 3, 1, h, mi, s, frac_ms, self.last_ms) - DAY_MS  # Feb 29 of a guess that is no leap year
        return self.zone.ms(y, mo, d, h, mi, s, frac_ms, self.last_ms)


def _int2(text: str) -> int:
    if len(text) != 2 or not text.isdigit():
        raise StampError("bad_timestamp")
    return int(text)


def classic(text: str, years: YearGuess) -> int:
    """`Mmm dd HH:MM:SS[.ffffff]` (day zero- or space-padded) -> epoch ms."""
    mo = MONTHS.get(text[:3])
    if mo is None or len(text) < 15 or text[3] != " " or text[6] != " " or text[9] != ":" or text[12] != ":":
        raise StampError("no_timestamp")
    day = text[4:6]
    d = int(day[1]) if day[0] == " " and day[1].isdigit() else _int2(day)
    h, mi, s = _int2(text[7:9]), _int2(text[10:12]), _int2(text[13:15])
    if not (1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise StampError("bad_timestamp")
    return years.ms(mo, d, h, mi, min(s, 59), _fraction_ms(text[15:]))


_OFFSETS: dict[str, timezone] = {}


def _offset(text: str) -> timezone:
    """'Z', '+01:00', '+0100' -> a fixed zone."""
    zone = _OFFSETS.get(text)
    if zone is None:
        if text in ("Z", "z"):
            zone = timezone.utc
        else:
            body = text[1:].replace(":", "")
            if text[0] not in "+-" or len(body) != 4 or not body.isdigit() or int(body[2:]) >= 60 or int(body[:2]) > 23:
                raise StampError("bad_timestamp")
            minutes = int(body[:2]) * 60 + int(body[2:])
            zone = timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))
        if len(_OFFSETS) < 1000:
            _OFFSETS[text] = zone
    return zone


_ISO_MINUTES: dict[tuple[str, str], int] = {}


def iso(date_time: str, offset: str | None, local: LocalZone) -> int:
    """`YYYY-MM-DD[T ]HH:MM:SS[.fff...]` with an offset (or none: the configured zone) -> epoch ms."""
    if len(date_time) < 19 or date_time[4] != "-" or date_time[7] != "-" or date_time[10] not in "Tt " \
            or date_time[13] != ":" or date_time[16] != ":":
        raise StampError("no_timestamp")
    s = _int2(date_time[17:19])
    frac = _fraction_ms(date_time[19:])
    key = (date_time[:16], offset or "")
    base = _ISO_MINUTES.get(key)
    if base is None:
        y, mo, d = date_time[:4], date_time[5:7], date_time[8:10]
        if not y.isdigit():
            raise StampError("bad_timestamp")
        if offset is None:
            return local.ms(int(y), _int2(mo), _int2(d), _int2(date_time[11:13]), _int2(date_time[14:16]), min(s, 59), frac)
        try:
            base = _ms(datetime(int(y), _int2(mo), _int2(d), _int2(date_time[11:13]), _int2(date_time[14:16]),
                                tzinfo=_offset(offset)))
        except ValueError:
            raise StampError("bad_timestamp") from None
        if len(_ISO_MINUTES) > 100_000:
            _ISO_MINUTES.clear()
        _ISO_MINUTES[key] = base
    if s > 60:
        raise StampError("bad_timestamp")
    return base + min(s, 59) * 1000 + frac


def rfc3339(text: str, local: LocalZone) -> int:
    """One token such as `2026-12-03T12:16:24.123456+01:00` (or `...Z`, `...+0100`) -> epoch ms."""
    if len(text) < 20:
        raise StampError("no_timestamp")
    if text[-1] in "Zz":
        return iso(text[:-1], "Z", local)
    cut = max(text.rfind("+"), text.rfind("-"))
    if cut < 19:
        raise StampError("bad_timestamp")
    return iso(text[:cut], text[cut:], local)
