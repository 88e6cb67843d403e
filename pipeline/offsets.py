"""Input offsets, tracked by the join agent itself instead of Faust's acks.

faust-streaming can skip records after a restart or rebalance: seen here after
a SIGKILL, the agent received offsets 1785 then 1796 on a partition, and
Faust's acked-offset bookkeeping (issue #606) then either committed past the
hole or never committed again. So the input topics run with acks disabled and
this tracker decides, for every record, from the exact next offset expected
per partition:

- the expected offset: process it;
- below it: a re-delivery of something already processed: skip it;
- above it: records were skipped: do not process, seek back to the expected
  offset (the caller does the seek) and wait for it.

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
    rewind_every_s: float = 1.0  # while still waiting for a rewound offset, seek again this often
    max_rewinds: int = 10  # seeks for the same missing offset before accepting that Kafka no longer has it
    expected: dict[Hashable, int] = field(default_factory=dict)
    committed: dict[Hashable, int] = field(default_factory=dict)
    rewinding: dict[Hashable, float] = field(default_factory=dict)
    attempts: dict[Hashable, int] = field(default_factory=dict)
    rewinds: int = 0
    skipped: int = 0
    lost: int = 0  # records Kafka no longer had (retention ran past them): counted, not waited for

    def assign(self, start: dict[Hashable, int]) -> None:
        """Partitions (re)assigned: `start` is each one's committed (or first) offset."""
        self.expected = dict(start)
        self.committed = dict(start)
        self.rewinding.clear()

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
        self.attempts[tp] = self.attempts.get(tp, 0) + 1
        if self.attempts[tp] > self.max_rewinds:  # the hole is real (deleted by retention)
            self.lost += offset - want
            return PROCESS
        self.rewinding[tp] = now
        self.rewinds += 1
        return REWIND

    def done(self, tp: Hashable, offset: int) -> None:
        """The record at `offset` is processed and its outputs sent: it may be committed."""
        self.expected[tp] = offset + 1
        self.rewinding.pop(tp, None)
        self.attempts.pop(tp, None)

    def to_commit(self) -> dict[Hashable, int]:
        """Next offsets to commit: every processed record, nothing beyond."""
        return {tp: o for tp, o in self.expected.items() if o > self.committed.get(tp, -1)}

    def did_commit(self, offsets: dict[Hashable, int]) -> None:
        for tp, o in offsets.items():
            self.committed[tp] = max(o, self.committed.get(tp, -1))

    def revoke(self, tps: set[Hashable]) -> None:
        for tp in tps:
            self.expected.pop(tp, None)
            self.committed.pop(tp, None)
            self.rewinding.pop(tp, None)
