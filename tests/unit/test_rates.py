"""The demo's terminal rate (issue #22 item 6) and the live page's: counters that move in bursts
give a steady rate over the window, not 0 and a burst by turns."""
from __future__ import annotations

from pipeline.core.rates import windowed
from pipeline.ops.demo import smoothed_rate


def _bursty(t: float) -> int:
    """Events counted so far at time t: 200/s on average, arriving as 2,000 every 10 s."""
    return int(t // 10) * 2000


def test_the_demo_line_rate_is_steady_when_events_arrive_in_bursts() -> None:
    samples: list[list[float]] = []
    seen, naive = [], []
    last = None
    for i in range(1, 41):  # a line every 5 s for 200 s
        at = 1000.0 + 5 * i
        samples, rate = smoothed_rate(samples, at, _bursty(at - 1000.0))
        seen.append(rate)
        if last is not None:  # what the line showed before: the change since the previous line
            naive.append((_bursty(at - 1000.0) - _bursty(last - 1000.0)) / 5)
        last = at
    assert set(naive) == {0.0, 400.0}  # the premise: the old line alternated
    steady = seen[8:]  # once the 30 s window is full
    assert all(130 <= r <= 270 for r in steady), steady
    assert max(steady) - min(steady) < 150


def test_no_worker_report_yet_is_zero_and_keeps_no_sample() -> None:
    assert smoothed_rate([], 0.0, 0) == ([], 0.0)


def test_windowed_drops_old_samples_and_restarts_after_a_counter_went_down() -> None:
    kept, (rate,) = windowed([[0.0, 0], [10.0, 100], [20.0, 200]], [45.0, 450], window_s=30)
    assert [s[0] for s in kept] == [20.0, 45.0] and rate == 10.0
    kept, (rate,) = windowed(kept, [50.0, 5], window_s=30)  # the worker restarted: counters from 0
    assert kept == [[50.0, 5]] and rate == 0.0
    kept, rates = windowed([], [1.0, 3, 4])
    assert rates == [0.0, 0.0] and len(kept) == 1
