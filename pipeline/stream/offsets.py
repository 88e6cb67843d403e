"""Input offsets, tracked by the join agent itself instead of Faust's acks.

faust-streaming can skip records after a restart or rebalance: seen here after
a SIGKILL, the agent received offsets 1785 then 1796 on a partition, and
Faust's acked-offset bookkeeping (issue #606) then either committed past the
hole or never committed again. So the input topics run with acks disabled and
this tracker decides, for every record, from the exact next offset expected
per partition:

- the expected offset: process it;
- below it: a re-delivery of something already processed: skip it;
- above it: either records were skipped, or the offsets in between hold no
  record (deleted by retention, compacted away, or transaction markers). The
  caller asks Kafka which (`absent` when no record is there); otherwise it
  seeks back and waits, however long the stream buffer takes to drain. A
  count of seeks is no evidence: after a restart with a full buffer the
  re-fetched records arrived only after ~10 s of draining, and giving up
  then lost 3,849 records (CI, 2026-11-24).

Only offsets whose records were processed are ever committed, and only after
the producer has flushed what processing them wrote (state changelog,
results), so a crash at any point re-processes, never loses. Pure: no Kafka.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

PROCESS, SKIP, REWIND = "process", "skip", "rewind"


@dataclass
class OffsetTracker:
    rewind_every_s: float = 5.0  # while still waiting for a rewound offset, check and seek again this often
    expected: dict[Hashable, int] = field(default_factory=dict)
    committed: dict[Hashable, int] = field(default_factory=dict)
    rewinding: dict[Hashable, float] = field(default_factory=dict)
    rewinds: int = 0
    skipped: int = 0
    absent: int = 0  # offsets with no record in Kafka (retention, compaction, markers): counted, not waited for
    held: dict[Hashable, int] | None = None  # while a batch's outputs are unsent: what may be committed
    # partitions processed before their start was known (records flow while `assign`'s caller
    # still asks Kafka for the committed offsets): the first offset processed of each
    trusted_from: dict[Hashable, int] = field(default_factory=dict)

    def hold(self) -> None:
        """A batch starts: records marked `done` from now on are committed only after `release`
        (their outputs are handed to the producer at the batch's end)."""
        if self.held is None:
            self.held = dict(self.expected)

    def release(self) -> None:
        """The batch's outputs are with the producer: everything `done` may be committed."""
        self.held = None

    def assign(self, start: dict[Hashable, int]) -> None:
        """Partitions (re)assigned: `start` is each one's committed (or first) offset. Records that
        arrived while the caller was still asking for `start` were processed on trust: when they
        began at or below `start` they covered it, and the next expected offset stands (re-reads
        below `start` are harmless: the join is idempotent per record); when they began above it,
        records were skipped, so `start` is expected and the caller seeks back to it. Resetting
        to `start` regardless left a partition whose records had all arrived waiting for good."""
        expected = {}
        for tp, o in start.items():
            first, now = self.trusted_from.get(tp), self.expected.get(tp)
            expected[tp] = max(o, now) if first is not None and now is not None and first <= o else o
        self.expected = expected
        self.committed = dict(start)
        self.trusted_from.clear()
        self.rewinding.clear()
        if self.held is not None:
            self.held = {tp: min(o, self.held.get(tp, o)) for tp, o in start.items()}

    def check(self, tp: Hashable, offset: int, now: float) -> str:
        """What to do with the record at `offset` of `tp`. Changes nothing for PROCESS: the caller
        calls `done` once what processing it produced has been handed to the producer."""
        want = self.expected.get(tp)
        if want is None or offset == want:
            return PROCESS
        if offset < want:
            self.skipped += 1
            return SKIP
        last = self.rewinding.get(tp)
        if last is not None and now - last < self.rewind_every_s:
            return SKIP  # already seeking back; records still buffered above the hole
        self.rewinding[tp] = now
        self.rewinds += 1
        return REWIND

    def done(self, tp: Hashable, offset: int) -> None:
        """The record at `offset` is processed and its outputs sent: it may be committed."""
        if tp not in self.expected:
            self.trusted_from[tp] = offset
        self.expected[tp] = offset + 1
        self.rewinding.pop(tp, None)

    def skip_absent(self, tp: Hashable, first: int) -> None:
        """Kafka has no record between the expected offset and `first` (its first record at or after
        the expected one): expect `first` next. Called only with what Kafka itself answered."""
        want = self.expected.get(tp)
        if want is not None and first > want:
            self.absent += first - want
            self.expected[tp] = first
            self.rewinding.pop(tp, None)

    def to_commit(self) -> dict[Hashable, int]:
        """Next offsets to commit: every processed record, nothing beyond."""
        src = self.expected if self.held is None else self.held
        return {tp: o for tp, o in src.items() if o > self.committed.get(tp, -1)}

    def did_commit(self, offsets: dict[Hashable, int]) -> None:
        for tp, o in offsets.items():
            self.committed[tp] = max(o, self.committed.get(tp, -1))

    def revoke(self, tps: set[Hashable]) -> None:
        for tp in tps:
            self.expected.pop(tp, None)
            self.committed.pop(tp, None)
            self.rewinding.pop(tp, None)
            self.trusted_from.pop(tp, None)
            if self.held is not None:
                self.held.pop(tp, None)
