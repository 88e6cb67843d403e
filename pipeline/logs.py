"""Log lines that repeat under load, summarised.

Under a fast replay Faust and mode log the same warning many times a second
("producer buffer full size N", "Timer X is overlapping"). The first of each
kind is shown; more of the same kind within `every_s` are counted and the next
one shown after that carries the count. Nothing else is touched.
"""
from __future__ import annotations

import logging
import re
import time
from collections import Counter

NOISY = ("mode.timers", "faust.transport.producer")
_DIGITS = re.compile(r"\d+(\.\d+)?")


class Summarise(logging.Filter):
    def __init__(self, every_s: float = 60.0, clock: object = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self.last: dict[tuple[str, str], float] = {}
        self.suppressed: Counter[tuple[str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, _DIGITS.sub("N", str(record.msg)))
        now = self.clock()  # type: ignore[operator]
        last = self.last.get(key)
        if last is not None and now - last < self.every_s:
            self.suppressed[key] += 1
            return False
        self.last[key] = now
        n = self.suppressed.pop(key, 0)
        if n:
            record.msg = f"{record.getMessage()} (and {n} more like it in the last {now - last:.0f} s, not shown)"
            record.args = ()
        return True


def summarise_noisy(every_s: float = 60.0) -> None:
    """Install the summary on the loggers known to repeat (idempotent)."""
    for name in NOISY:
        logger = logging.getLogger(name)
        if not any(isinstance(f, Summarise) for f in logger.filters):
            logger.addFilter(Summarise(every_s))
