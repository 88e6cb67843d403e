"""Per-worker join runtime: watermarks, deadline schedules and the state table.

Called by the Faust agent for every record of the partitions this worker
owns, inside the record's stream context (so table writes go to the right
changelog partition). It knows nothing of Faust: `table` is any mutable
mapping of bytes to bytes, and `handle` returns the records to send. Unit
tests drive it with a dict.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, MutableMapping

import orjson

from pipeline.core import join
from pipeline.core.clock import ClockTrust
from pipeline.core.deadlines import Deadlines, Waiting
from pipeline.core.dedup import (FP_PREFIX, HOUR_MS, Finished, Fingerprints, convert, convertible, fingerprint,
                                 parse_chunk_key, ticket)
from pipeline.core.state import decode, encode
from pipeline.core.config import Settings
from pipeline.core.errors import StoreError
from pipeline.core.events import BadEvent, parse_accepted, parse_ready
from pipeline.core.deadletters import dead_letter, dead_letter_key
from pipeline.core.watermark import Watermark

WM_PREFIX = b"\x00wm:"
ACC, READY = "accepted", "ready"


@dataclass
class Partition:
    wm: Watermark
    deadlines: Deadlines = field(default_factory=Deadlines)
    pending: int = 0
    waiting: Waiting = field(default_factory=Waiting)  # pending messages per class and accepted second
    persisted: tuple[int | None, int | None, int | None] | None = None  # (watermark, stream maxima) in the table
    fps: Fingerprints | None = None  # fingerprints of finished messages (set by JoinRuntime._part)
    # per input topic, the records that finished a message, in offset order (`dedup.Finished`): the
    # state becomes a fingerprint once that offset is committed (until then a re-processed
    # duplicate must find the state to re-emit its row)
    finished: dict[str, deque[Finished]] = field(default_factory=dict)


@dataclass
class Out:
    """A record to produce: kind is 'result', 'dead_letter' or 'rekey' (to `topic`)."""

    kind: str
    key: bytes | None
    value: bytes
    topic: str | None = None


class JoinRuntime:
    def __init__(self, settings: Settings, table: MutableMapping[bytes, bytes]) -> None:
        self.s = settings
        self.table = table
        self.policy = join.JoinPolicy(settings.threshold_ms, settings.never_ready_ms,
                                      settings.orphan_grace_ms, settings.dedup_retention_ms)
        self.parts: dict[int, Partition] = {}
        self.stale = True
        self.assigned: set[int] | None = None
        self.counters: Counter[str] = Counter()
        pol = settings.policy
        self.trust = ClockTrust(pol.clock_ahead_ms if pol else 600_000,
                                pol.clock_ahead_replay_ms if pol else settings.never_ready_ms,
                                settings.never_ready_ms, live=settings.idle_grace_s > 0)
        # which of a partition's input streams still have records the worker has not read; the app
        # sets this from the consumer (highwater vs processed offset); a lagging stream is never quiet
        self.lagging: Callable[[int], frozenset[str] | set[str]] = lambda p: frozenset()
        # committed(topic, partition): the input topic's committed offset (records below it are never
        # processed again); None = no tracking, everything counts as committed (unit tests). The app
        # sets it from its OffsetTracker.
        self.committed: Callable[[str, int], int | None] = lambda topic, p: None

    # -- partitions -------------------------------------------------------
    def reset(self, assigned: set[int] | None = None) -> None:
        """Partitions were reassigned: rebuild schedules from the table on the next record.

        `assigned` are this worker's partitions now; the memory store keeps the states of
        partitions that moved to another worker, and those must not be scheduled here."""
        self.parts.clear()
        self.assigned = assigned
        self.stale = True

    def _mine(self, p: int) -> bool:
        return self.assigned is None or p in self.assigned

    def _part(self, p: int, wall: float) -> Partition:
        part = self.parts.get(p)
        if part is None:
            part = self.parts[p] = Partition(Watermark(self.s.lateness_ms, self.s.idle_grace_s))
            part.wm.start((ACC, READY), wall)
            part.fps = Fingerprints(p)
        return part

    def _rebuild(self, wall: float) -> list[Out]:
        """After an assignment, before the first record: schedules, pending counts and watermarks
        from the table; open verdicts re-emitted. A failure here is the store's or the stored
        state's, never the record's: StoreError, and the worker stops for a restart (a rebuild
        left undone would be retried, and fail, on every record)."""
        try:
            return self._rebuild_from_table(wall)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - see docstring
            raise StoreError(f"rebuilding the join state from the table failed: {exc!r}"[:300]) from exc

    def _rebuild_from_table(self, wall: float) -> list[Out]:
        """One pass over the local table: deadlines, pending counts, watermarks; re-emit open verdicts."""
        out: list[Out] = []
        for key, raw in list(self.table.items()):
            if key.startswith(FP_PREFIX):
                p, hour, seq = parse_chunk_key(key)
                if self._mine(p):
                    self._part(p, wall).fps.load(hour, seq, raw)  # type: ignore[union-attr]
                continue
            if key.startswith(WM_PREFIX):
                p = int(key[len(WM_PREFIX):])
                if not self._mine(p):
                    continue
                value, acc_max, ready_max = orjson.loads(raw)
                part = self._part(p, wall)
                if value is not None:
                    part.wm.value = value if part.wm.value is None else max(part.wm.value, value)
                for name, m in ((ACC, acc_max), (READY, ready_max)):
                    if m is not None:
                        part.wm.observe(name, m, part.wm.streams[name].last_wall)
                        self.trust.seen(m)
                part.persisted = (part.wm.value, part.wm.streams[ACC].max_ts, part.wm.streams[READY].max_ts)
                continue
        for key, raw in list(self.table.items()):
            if key.startswith(b"\x00"):
                continue
            state = decode(raw, key)
            if not self._mine(state["p"]):
                continue
            part = self._part(state["p"], wall)
            wm = part.wm.value
            due = join.next_due(state, self.policy, wm)
            if due is not None:
                part.deadlines.push(due, key)
            if join.is_pending(state, self.policy, wm):
                part.pending += 1
                part.waiting.add(state["a"][2], state["a"][0])
            # a verdict written at a deadline may not have reached the results topic before a
            # crash (no input record re-delivers it): write it again, same rev, the sink dedups
            if state.get("sig") and state["sig"][0] in ("overdue", "never_ready"):
                out += self._results([join.message_row(state, state["sig"][0], self.policy)])
            if state.get("os"):
                out += self._results([join.orphan_row(state)])
        for part in self.parts.values():
            part.fps.loaded()  # type: ignore[union-attr]
        self.stale = False
        return out

    # -- records ----------------------------------------------------------
    def handle(self, topic: str, partition: int, offset: int, key: bytes | None,
               value: bytes | None, wall: float | None = None) -> list[Out]:
        """Process one input record; returns what to produce. Never raises on bad input."""
        wall = time.time() if wall is None else wall
        out: list[Out] = self._rebuild(wall) if self.stale else []
        part = self._part(partition, wall)
        if topic == self.s.topic_ticks:
            self.counters["ticks"] += 1
        else:
            stream = ACC if topic == self.s.topic_accepted else READY
            self.counters[f"events_{stream}"] += 1
            try:
                ev = (parse_accepted if stream == ACC else parse_ready)(value or b"")
            except BadEvent as exc:
                self.counters["dead_letters"] += 1
                self.counters["dead_letter:" + str(exc).split(":")[0][:40]] += 1  # by reason kind (bounded)
                return out + [Out("dead_letter", dead_letter_key(key),
                                  dead_letter(topic, partition, offset, key, value or b"", str(exc)))]
            mid = ev.message_id.encode("utf-8")
            if key != mid:  # keyed wrongly: re-publish keyed by message id so it reaches its partition
                self.counters["rekeyed"] += 1
                return out + [Out("rekey", mid, value or b"", topic)]
            prev = part.wm.value
            ts = ev.accepted_at if stream == ACC else ev.ready_at  # type: ignore[union-attr]
            suspect = self.trust.judge(ts, wall, prev, ev.mta, "accepted" if stream == ACC else "queue-ready")
            if suspect:
                self.counters[f"clock_{suspect}"] += 1
            if suspect != "ahead":  # an untrusted future timestamp never moves event time
                part.wm.observe(stream, ts, wall)
            wm = part.wm.advance(wall, lagging=lambda: self.lagging(partition))
            raw = self.table.get(mid)
            if raw is None and part.fps.seen(fingerprint(mid), None if wm is None else wm // HOUR_MS):  # type: ignore[union-attr]
                # finished, its row committed, only the fingerprint kept: counted, nothing to emit
                self.counters[f"duplicate_{stream}"] += 1
                self.counters["duplicate_fingerprinted"] += 1
            else:
                state = decode(raw, mid) if raw is not None else None
                was = self._pending(state, prev)
                if stream == ACC:
                    step = join.on_accepted(state, ev, wm, self.policy, suspect)  # type: ignore[arg-type]
                else:
                    step = join.on_ready(state, ev, wm, self.policy, int(wall * 1000), suspect)  # type: ignore[arg-type]
                out += self._apply(partition, part, mid, step, was, raw, (topic, offset))
        prev = part.wm.value
        if topic == self.s.topic_ticks:
            wm = part.wm.advance(wall, self._newest(), lambda: self.lagging(partition))
        else:  # advanced above, before the join step, with the same inputs: nothing can have moved it
            wm = prev
        out += self._fire(partition, part, prev, wm)
        self._fingerprint(partition, part)
        # event time goes into the table with the states (one record per partition and batch, the
        # buffer keeps the last): a restart, in replay mode too, goes on from where the states were
        acc, ready = part.wm.streams[ACC].max_ts, part.wm.streams[READY].max_ts
        mark = (wm, acc, ready)
        if mark != part.persisted:
            self.table[WM_PREFIX + str(partition).encode()] = orjson.dumps(mark)
            part.persisted = mark
        return out

    def _pending(self, state: join.State | None, wm: int | None) -> tuple[str, int] | None:
        """(class, accepted_at) under which `state` counts as pending at `wm`; None if it does not.
        Taken before the join core changes the state (it changes it in place)."""
        if state is None or not join.is_pending(state, self.policy, wm):
            return None
        return state["a"][2], state["a"][0]

    def _apply(self, p: int, part: Partition, key: bytes, step: join.Step, was: tuple[str, int] | None,
               old: bytes | None, src: tuple[str, int] | None = None) -> list[Out]:
        """Write the state the join core decided, schedule it, count it. `src` is the input record
        (topic, offset) being processed; None when the watermark settled the state."""
        if step.counters:
            self.counters.update(step.counters)
        wm = part.wm.value
        now = None
        if step.state is None:
            if old is not None:
                del self.table[key]
        else:
            step.state.setdefault("p", p)
            new = encode(step.state)
            if new != old:
                self.table[key] = new
                if src is not None and convertible(step.state, self.policy, wm):
                    entry = (src[1], key, new, ticket(key, step.state, self.policy))
                    part.finished.setdefault(src[0], deque()).append(entry)
                else:
                    self._schedule(part, key, step.state, wm)
            now = self._pending(step.state, wm)
        if now != was:
            if was is not None:
                part.waiting.remove(*was)
            if now is not None:
                part.waiting.add(*now)
        part.pending += int(now is not None) - int(was is not None)
        return self._results(step.rows)

    def _schedule(self, part: Partition, key: bytes, state: join.State, wm: int | None) -> None:
        due = join.next_due(state, self.policy, wm)
        if due is not None:
            part.deadlines.push(due, key)

    def _fingerprint(self, p: int, part: Partition) -> None:
        """Finished states whose finishing record is committed become fingerprints; chunks of hours
        the watermark has passed go. Runs in the stream context of a record of partition `p`, so
        the table writes go to its changelog partition (`pipeline.core.dedup.convert`). Runs per
        record: returns at once unless a finishing record was committed or the hour turned."""
        wm = part.wm.value
        if wm is None or (part.fps.expired_h is not None and wm // HOUR_MS <= part.fps.expired_h):  # type: ignore[union-attr]
            for topic, queue in part.finished.items():
                if queue:
                    done = self.committed(topic, p)
                    if done is None or queue[0][0] < done:
                        break
            else:
                return
        n = convert(self.table, part.fps, part.finished, lambda topic: self.committed(topic, p),  # type: ignore[arg-type]
                    self.policy, part.wm.value, lambda key, state: self._schedule(part, key, state, part.wm.value),
                    lambda key, dues: [part.deadlines.discard(d, key) for d in dues])
        if n:
            self.counters["fingerprinted"] += n

    def _fire(self, p: int, part: Partition, prev: int | None, wm: int | None) -> list[Out]:
        """Settle every state whose next due time the watermark has reached."""
        out: list[Out] = []
        while wm is not None:
            key = part.deadlines.pop_due(wm)
            if key is None:
                break
            raw = self.table.get(key)
            if raw is None:
                continue
            state = decode(raw, key)
            was = self._pending(state, prev)
            out += self._apply(p, part, key, join.settle(state, wm, self.policy), was, raw)
        return out

    def _results(self, rows: list[dict[str, Any]]) -> list[Out]:
        return [Out("result", r["message_id"].encode("utf-8"), orjson.dumps(r)) for r in rows]

    def oldest_pending(self) -> dict[str, int | None]:
        """accepted_at of the oldest message still waiting for queue-ready, per class (None: none),
        rounded down to the second (`pipeline.core.deadlines.Waiting`)."""
        out: dict[str, int | None] = {}
        for cls in ("transactional", "campaign"):
            found = [t for t in (part.waiting.oldest(cls) for part in self.parts.values()) if t is not None]
            out[cls] = min(found, default=None)
        return out

    def _newest(self) -> int | None:
        """The newest event time this worker has seen on any partition."""
        return max((m for m in (q.wm.max_seen() for q in self.parts.values()) if m is not None), default=None)

    def unsettled(self) -> int:
        """Partitions with a deadline at or before this worker's newest event time still to fire.

        In live mode a quiet partition catches up with that time after the idle grace and
        fires them; until then the verdicts they will write are work still to do, so `status`
        counts them in `total_lag`. Pure replay (no wall clock) never catches up: 0."""
        if self.s.idle_grace_s <= 0:
            return 0
        floor = self._newest()
        if floor is None:
            return 0
        return sum(1 for p in self.parts.values() if (d := p.deadlines.first_due()) is not None and d <= floor)

    def snapshot(self) -> dict[str, Any]:
        return {
            "unsettled_partitions": self.unsettled(),
            "oldest_pending_accepted_at": self.oldest_pending(),
            "pending_messages": sum(p.pending for p in self.parts.values()),
            "scheduled": sum(len(p.deadlines) for p in self.parts.values()),
            "fingerprints": sum(len(p.fps) for p in self.parts.values() if p.fps is not None),
            "watermarks": {str(k): v.wm.value for k, v in sorted(self.parts.items())},
            "counters": dict(self.counters),
            "clock_suspects": self.trust.snapshot(),
        }
