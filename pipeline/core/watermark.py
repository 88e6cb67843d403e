"""Event-time watermark of one partition, fed by the two input streams.

Pure. The watermark is the minimum over the streams of the largest event time
seen, minus the allowed lateness (as a Flink watermark over two inputs): a
queue-ready topic that lags behind the accepted topic never makes deadlines
fire early. In live mode a stream that has been quiet for `idle_grace_s` of
wall time stops holding the watermark back, and when every stream is quiet the
watermark advances with the wall clock: mail that stops flowing still turns
overdue. `idle_grace_s <= 0` turns the wall clock off (pure replay).

Quiet means quiet in the log, not just in arrival: a stream whose partition
still has records the worker has not read (`lagging`) is never quiet, however
long it waits behind a full stream buffer, a restart's catch-up or a broker
outage. Before this rule a partition starved for 5 s after a SIGKILL restart
jumped to the event time of the partitions read ahead of it, expired the state
of messages whose other event was still unread, and left them overdue (#14).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class StreamClock:
    max_ts: int | None = None
    last_wall: float = 0.0


@dataclass
class Watermark:
    lateness_ms: int
    idle_grace_s: float
    streams: dict[str, StreamClock] = field(default_factory=dict)
    value: int | None = None  # monotonic; persisted by the adapter

    def observe(self, stream: str, ts: int, wall: float) -> None:
        clock = self.streams.setdefault(stream, StreamClock())
        if clock.max_ts is None or ts > clock.max_ts:
            clock.max_ts = ts
        clock.last_wall = wall

    def start(self, streams: tuple[str, ...], wall: float) -> None:
        """Register the inputs so an input with no event yet holds the watermark back."""
        for name in streams:
            self.streams.setdefault(name, StreamClock(last_wall=wall))

    def max_seen(self) -> int | None:
        seen = [c.max_ts for c in self.streams.values() if c.max_ts is not None]
        return max(seen) if seen else None

    def advance(self, wall: float, floor: int | None = None,
                lagging: "frozenset[str] | set[str] | Callable[[], frozenset[str] | set[str]]" = frozenset()
                ) -> int | None:
        """Recompute at wall time `wall`; returns the (never decreasing) watermark.

        `floor` is the newest event time the worker has seen on any partition: a partition
        whose inputs are all quiet catches up with it (as an idle source in Flink stops
        holding back the operator's watermark), so event time is one clock per worker.
        `lagging` names streams with unread records in the log (or returns them: asked only when
        a stream is idle by the wall clock): they are never quiet."""
        live = self.idle_grace_s > 0
        clocks = self.streams.values()
        if clocks and (not live or all(wall - c.last_wall <= self.idle_grace_s for c in clocks)):
            # the common case, once per record: no stream idle, the slowest one decides
            low = None
            for c in clocks:
                if c.max_ts is None:
                    return self.value
                if low is None or c.max_ts < low:
                    low = c.max_ts
            candidate = low - self.lateness_ms  # type: ignore[operator]
            if self.value is None or candidate > self.value:
                self.value = candidate
            return self.value
        idle = {name for name, c in self.streams.items() if live and wall - c.last_wall > self.idle_grace_s}
        if idle and callable(lagging):
            idle -= lagging()
        elif idle:
            idle -= lagging
        active = [c for name, c in self.streams.items() if name not in idle]
        seen = [c for c in self.streams.values() if c.max_ts is not None]
        candidate: int | None = None
        if active:
            if all(c.max_ts is not None for c in active):
                candidate = min(c.max_ts for c in active) - self.lateness_ms  # type: ignore[type-var]
        elif seen or floor is not None:
            last_wall = max((c.last_wall for c in self.streams.values()), default=wall)
            quiet_ms = max(0, int((wall - last_wall - self.idle_grace_s) * 1000))
            newest = max([c.max_ts for c in seen] + ([floor] if floor is not None else []))  # type: ignore[type-var]
            candidate = newest - self.lateness_ms + quiet_ms
        if candidate is not None and (self.value is None or candidate > self.value):
            self.value = candidate
        return self.value
