"""Rates of counters over a sliding window of samples.

The join workers rewrite their counters every 2 s (status files), so whoever reads them (the live
snapshot, the demo's terminal line every 5 s) sees them move in steps: the change between two
reads jumps between 0 and a double step, and traffic that reaches the worker in bursts makes it
worse. The rate over the samples of the last `window_s` seconds is steady. Called on every read;
pure: the caller keeps the samples between calls.
"""
from __future__ import annotations

from typing import Sequence

WINDOW_S = 30.0  # the live page, `top` and the demo: long enough to span many status writes


def windowed(samples: Sequence[Sequence[float]], now: Sequence[float],
             window_s: float = WINDOW_S) -> tuple[list[list[float]], list[float]]:
    """`now` = [at, counter, ...]; `samples` = earlier ones, oldest first. Returns the samples to
    keep (those within `window_s` before `now`, then `now`) and each counter's change per second
    from the oldest kept sample to `now` (0.0 until the samples span some time). A counter below
    its last sample (a worker restarted) starts the window again."""
    kept = [list(x) for x in samples if 0 < now[0] - x[0] <= window_s]
    if kept and any(c < last for c, last in zip(now[1:], kept[-1][1:])):
        kept = []
    kept.append(list(now))
    first = kept[0]
    dt = now[0] - first[0]
    if dt <= 0:
        return kept, [0.0] * (len(now) - 1)
    return kept, [(c - c0) / dt for c, c0 in zip(now[1:], first[1:])]
