"""The live monitor evaluates from a settled minute over a bounded stretch of history: it must
find exactly the faults a whole-history evaluation finds from that minute on."""
from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from pipeline.core.faults import MINUTE, lookback_ms, settled_before
from pipeline.core.policy import load
from pipeline.store.reports import find_faults

P = load()
DAY = 1440
T0 = 1_790_000_000_000 // MINUTE * MINUTE

incidents = st.lists(st.tuples(st.integers(0, 7 * DAY), st.integers(1, 900), st.sampled_from([0.05, 0.2, 0.6, 1.0]),
                               st.sampled_from(["transactional", "campaign"])), max_size=6)


def series(spec: list[tuple[int, int, float, str]], volume: int = 40) -> list[tuple[str, int, int, int]]:
    rows = []
    for cls in ("transactional", "campaign"):
        for m in range(0, 8 * DAY, 3):  # a verdict minute every 3 minutes: gaps too
            share = max([s for start, length, s, c in spec if c == cls and start <= m < start + length], default=0.0)
            rows.append((cls, T0 + m * MINUTE, int(volume * share), volume))
    return rows


@hsettings(max_examples=25, deadline=None)
@given(incidents, st.integers(0, 8 * DAY))
def test_evaluating_from_a_settled_minute_finds_the_same_faults_as_the_whole_history(spec, at: int) -> None:
    rows = series(spec)
    whole = find_faults(P, rows)
    start = settled_before(whole, T0 + at * MINUTE)
    since = start - lookback_ms(P)
    part = find_faults(P, [r for r in rows if r[1] >= since], start)
    assert part == [f for f in whole if int(f["opened_at"]) >= start]


def test_the_settled_minute_moves_back_to_the_opening_of_a_fault_open_across_it() -> None:
    found = [{"opened_at": 10 * MINUTE, "resolved_at": 50 * MINUTE},
             {"opened_at": 40 * MINUTE, "resolved_at": None},
             {"opened_at": 70 * MINUTE, "resolved_at": 80 * MINUTE}]
    assert settled_before(found, 45 * MINUTE + 7) == 10 * MINUTE  # the open one chains back to the first
    assert settled_before(found, 5 * MINUTE) == 5 * MINUTE
    assert settled_before(found[:1], 50 * MINUTE) == 10 * MINUTE  # resolves at 50: still open entering it
    assert settled_before(found[:1], 51 * MINUTE) == 51 * MINUTE
