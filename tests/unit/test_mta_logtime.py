"""Stamps of MTA log lines: the year of classic syslog stamps (New Year, a rotated file, Feb 29),
the configured zone (and its summer-time change), RFC 3339 and Exim stamps to the millisecond."""
from __future__ import annotations

import zoneinfo

import pytest

from pipeline.core.events import format_ts, parse_ts
from pipeline.core.mta import mapping
from pipeline.core.mta.logtime import LocalZone, StampError, YearGuess, classic, iso, rfc3339

UTC = LocalZone(zoneinfo.ZoneInfo("UTC"))


def years(reference: str, zone: LocalZone = UTC) -> YearGuess:
    return YearGuess(zone, parse_ts(reference, "reference"))


def test_the_first_stamp_takes_the_latest_year_not_after_the_reference() -> None:
    assert format_ts(classic("Dec 31 23:59:59", years("2027-01-01T00:00:10Z"))) == "2026-12-31T23:59:59.000Z"
    assert format_ts(classic("Jan  1 00:00:05", years("2027-01-01T00:00:10Z"))) == "2027-01-01T00:00:05.000Z"
    # a rotated file read in March: its last line was written then (mtime), its lines are from December
    assert format_ts(classic("Dec 03 12:16:24", years("2027-03-01T00:00:00Z"))) == "2026-12-03T12:16:24.000Z"
    # a clock a little ahead of the reference is still this year, not last year
    assert format_ts(classic("Jun 10 12:00:30", years("2026-06-10T12:00:00Z"))) == "2026-06-10T12:00:30.000Z"


def test_a_log_crossing_new_year_moves_to_the_next_year_and_stays_there() -> None:
    y = years("2026-12-31T23:00:00Z")
    stamps = ["Dec 31 23:59:58", "Dec 31 23:59:59", "Jan  1 00:00:00", "Dec 31 23:59:59", "Jan  1 00:00:01",
              "Jan 15 08:00:00"]
    got = [format_ts(classic(s, y))[:19] for s in stamps]
    assert got == ["2026-12-31T23:59:58", "2026-12-31T23:59:59", "2027-01-01T00:00:00", "2026-12-31T23:59:59",
                   "2027-01-01T00:00:01", "2027-01-15T08:00:00"]
    assert y.year == 2027  # the state `mailsla ingest` saves with its position


def test_feb_29_in_a_leap_year_and_whole_seconds_with_a_fraction() -> None:
    assert format_ts(classic("Feb 29 10:00:00", years("2028-03-01T00:00:00Z"))) == "2028-02-29T10:00:00.000Z"
    assert format_ts(classic("Dec  3 12:16:24.123456", years("2026-12-04T00:00:00Z"))) == "2026-12-03T12:16:24.123Z"


def test_the_zone_of_classic_stamps_comes_from_the_configuration_and_summer_time_keeps_order() -> None:
    berlin = LocalZone(zoneinfo.ZoneInfo("Europe/Berlin"))
    y = years("2026-12-04T00:00:00Z", berlin)
    assert format_ts(classic("Dec 03 12:16:24", y)) == "2026-12-03T11:16:24.000Z"
    # 2026-10-25: 02:00-03:00 happens twice in Berlin; a log going 02:59 (summer) -> 02:00 (winter) stays in order
    y = years("2026-10-26T00:00:00Z", berlin)
    first = classic("Oct 25 02:59:00", y)
    second = classic("Oct 25 02:00:30", y)
    assert format_ts(first) == "2026-10-25T00:59:00.000Z" and format_ts(second) == "2026-10-25T01:00:30.000Z"


def test_rfc3339_and_exim_stamps_to_the_millisecond_with_their_own_offset() -> None:
    assert format_ts(rfc3339("2026-12-03T15:28:44.112331+00:00", UTC)) == "2026-12-03T15:28:44.112Z"
    assert format_ts(rfc3339("2026-12-03T16:28:44.112331+0100", UTC)) == "2026-12-03T15:28:44.112Z"  # journalctl
    assert format_ts(rfc3339("2026-12-03T15:28:44Z", UTC)) == "2026-12-03T15:28:44.000Z"
    assert format_ts(iso("2026-12-03 15:24:06.938", "+0000", UTC)) == "2026-12-03T15:24:06.938Z"
    berlin = LocalZone(zoneinfo.ZoneInfo("Europe/Berlin"))
    assert format_ts(iso("2026-12-03 16:24:06.938", None, berlin)) == "2026-12-03T15:24:06.938Z"  # no log_timezone


@pytest.mark.parametrize("stamp,reason", [("Foo 03 12:16:24", "no_timestamp"), ("Dec 33 12:16:24", "bad_timestamp"),
                                          ("Dec 03 25:16:24", "bad_timestamp"), ("Dec 03 12:16", "no_timestamp"),
                                          ("Feb 30 12:00:00", "bad_timestamp")])
def test_bad_classic_stamps_say_why(stamp: str, reason: str) -> None:
    with pytest.raises(StampError, match=reason):
        classic(stamp, years("2026-12-04T00:00:00Z"))


def test_bad_rfc3339_stamps_say_why() -> None:
    for text in ("2026-13-03T15:28:44Z", "2026-12-03T15:28:44+2500", "2026-12-03T15:28:44.12x+00:00", "2026-12-03"):
        with pytest.raises(StampError):
            rfc3339(text, UTC)


def test_the_configured_zone_local_and_named() -> None:
    assert mapping.parse({"timezone": "Europe/Berlin"}).zone == zoneinfo.ZoneInfo("Europe/Berlin")
    assert mapping.parse({}).zone_name == "local"
    with pytest.raises(mapping.MappingError, match="timezone"):
        mapping.parse({"timezone": "Mars/Olympus"})
