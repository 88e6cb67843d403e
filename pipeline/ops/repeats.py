"""What K runs of one bench figure give: the median as the figure, min and max beside it.

Used by `mailsla bench --repeat K` (pipeline/ops/bench.py) once all runs are in. The median is the
figure a user gets on a typical run; a best-of-K would hide the slow ones, one run alone moves
with whatever else the machine does. Pure: numbers in, numbers out.
"""
from __future__ import annotations

import statistics
from typing import Any, Sequence


def spread(values: Sequence[float]) -> dict[str, float]:
    """{"median", "min", "max"} of the runs' values (at least one)."""
    if not values:
        raise ValueError("spread of no runs")
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def figure(name: str, values: Sequence[float]) -> dict[str, Any]:
    """`name` = the median, `name_min`, `name_max`, and `name_runs` (each run, in order): the flat
    keys `bench --json` reports for every rate."""
    sp = spread(values)
    return {name: sp["median"], f"{name}_min": sp["min"], f"{name}_max": sp["max"],
            f"{name}_runs": [float(v) for v in values]}


def ratio(num: float, den: float) -> float | None:
    """num / den, or None when the denominator measured nothing."""
    return num / den if den else None

