"""What every long-running process (`worker`, `sink`) shares: quiet logs during an outage and a
bounded shutdown.

* `RateLimitFilter`: while Kafka is down, aiokafka logs every failed connection and metadata
  request (measured: ~20 KB/s). The filter passes the first record of each kind, then at most one
  per `every` seconds, with how many like it were held back.
* `Guarded`: a mixin for mode/Faust `Worker` classes. It installs the filter on the root
  handlers, and on SIGTERM/SIGINT starts a watchdog: if the orderly stop (flush, commit, leave the
  group) has not finished within `shutdown_s` (a broker or ClickHouse that does not answer can
  hold it up in library code we do not control), the process exits with status 1. Nothing is
  lost: an offset is committed only after its rows are written, so what was not committed is
  read again by the next process.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from typing import Any

# loggers whose repeated records during an outage say nothing new (faust.topics: one warning per
# record the producer gave up on, thousands; mailsla.worker: per-partition "could not check offset"
# every 5 s while Kafka is down)
NOISY = ("aiokafka", "faust", "kafka", "asyncio", "mailsla.worker", "mode.timers")
_NUMBERS = re.compile(r"\d+(\.\d+)?")  # "producer buffer full size 117", "runtime=1.03": one kind


class RateLimitFilter(logging.Filter):
    def __init__(self, every: float = 30.0, prefixes: tuple[str, ...] = NOISY) -> None:
        super().__init__()
        self.every = every
        self.prefixes = prefixes
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, _NUMBERS.sub("N", str(record.msg))[:80])
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
            if len(self._last) > 1000:  # bounded memory: forget the oldest kinds
                for k in sorted(self._last, key=self._last.__getitem__)[:500]:
                    self._last.pop(k, None)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self.every:.0f}s]"
            record.exc_info = record.exc_text = None  # the first one had the traceback
        return True


def install_log_limits(root: logging.Logger | None = None, every: float = 30.0) -> RateLimitFilter:
    """Put one RateLimitFilter on every handler of the root logger (records of child loggers pass
    through handlers, not through the root logger's own filters)."""
    root = root or logging.getLogger()
    flt = RateLimitFilter(every)
    for h in root.handlers:
        if not any(isinstance(f, RateLimitFilter) for f in h.filters):
            h.addFilter(flt)
    return flt


class Guarded:
    """Mixin for `mode.Worker` subclasses (see the module doc). Set `shutdown_s` before starting."""

    shutdown_s: float = 20.0
    _watchdog: threading.Timer | None = None

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)  # type: ignore[misc]
        install_log_limits(logger)

    def _arm_watchdog(self, sig: str) -> None:
        if self._watchdog is not None:
            return

        def expire() -> None:
            sys.stderr.write(f"mailsla: {sig}: shutdown not finished after {self.shutdown_s:.0f}s (Kafka or "
                             "ClickHouse not answering); exiting, uncommitted input is read again at the next "
                             "start\n")
            sys.stderr.flush()
            logging.shutdown()
            os._exit(1)

        # a margin for the interpreter's own exit, so the process is gone within shutdown_s
        self._watchdog = threading.Timer(max(1.0, self.shutdown_s - 1.5), expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    async def crash(self, reason: BaseException) -> None:
        """A crash stops the worker like a signal does, with the same bound; then it exits non-zero."""
        self._arm_watchdog(f"crashed ({type(reason).__name__})")
        await super().crash(reason)  # type: ignore[misc]

    def _crash(self, reason: BaseException) -> None:  # how a crashing child marks its root
        self._arm_watchdog(f"crashed ({type(reason).__name__})")
        super()._crash(reason)  # type: ignore[misc]

    def _on_sigterm(self) -> None:
        self._arm_watchdog("SIGTERM")
        super()._on_sigterm()  # type: ignore[misc]

    def _on_sigint(self) -> None:
        self._arm_watchdog("SIGINT")
        super()._on_sigint()  # type: ignore[misc]


def guarded_worker(base: type, shutdown_s: float) -> type:
    """`base` (faust.Worker or mode.Worker) with the Guarded behaviour."""
    return type(f"Guarded{base.__name__}", (Guarded, base), {"shutdown_s": shutdown_s})
