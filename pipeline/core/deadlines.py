"""Compact per-partition schedules of the join runtime: deadlines and oldest pending.

Both run inside `JoinRuntime.handle` for every state change of a partition, and are
rebuilt from the table after a rebalance or restart (they are never persisted).

`Deadlines` replaces a heap of (due, key) tuples (~90 B per entry) with buckets of
`BUCKET_MS` of due time: an int64 array of due times and a list sharing the table's
key objects (~16 B per entry). When the watermark reaches a bucket's start, that
bucket alone becomes a heap, so states are still settled exactly when their due time
is reached, in due order, as with one heap over everything.

`Waiting` replaces a heap of (accepted_at, key) per class with counts of pending
messages per class and accepted *second*. The oldest pending message is therefore
known to 1 s (its accepted second, rounded down): plenty for an alert measured in
hours (`oldest_pending`, 6 h), at no memory per message.
"""
from __future__ import annotations

import heapq
from array import array

BUCKET_MS = 10_000
_GONE = b""  # a discarded entry (no state has the empty key)


class Deadlines:
    """Keys to settle once the watermark reaches their due time. Stale entries (a state that
    changed or went away since) are allowed: settling a state that is not due changes nothing."""

    def __init__(self) -> None:
        self.buckets: dict[int, tuple[array, list[bytes]]] = {}
        self.order: list[int] = []  # heap of bucket numbers present in `buckets`
        self.active: list[tuple[int, bytes]] = []  # heap of entries of buckets already reached
        self.active_below = -(1 << 62)  # bucket numbers below this are in `active`

    def __len__(self) -> int:
        return len(self.active) + sum(len(keys) for _, keys in self.buckets.values())

    def push(self, due: int, key: bytes) -> None:
        b = due // BUCKET_MS
        if b < self.active_below:
            heapq.heappush(self.active, (due, key))
            return
        bucket = self.buckets.get(b)
        if bucket is None:
            bucket = self.buckets[b] = (array("q"), [])
            heapq.heappush(self.order, b)
        bucket[0].append(due)
        bucket[1].append(key)

    def discard(self, due: int, key: bytes) -> bool:
        """Forget `key`'s entry at `due` if it is still in a bucket (not yet reached), so the
        bucket stops keeping the key object alive: for a state replaced by a fingerprint, whose
        deadline (30 min, 12 h for campaigns) would otherwise hold its key until it passed.
        Costs a scan of that bucket (identity comparisons)."""
        bucket = self.buckets.get(due // BUCKET_MS)
        if bucket is None:
            return False
        try:
            i = bucket[1].index(key)
        except ValueError:
            return False
        bucket[1][i] = _GONE
        return True

    def pop_due(self, wm: int) -> bytes | None:
        """The key of an entry due at or before `wm` (smallest due first), or None."""
        while True:
            if self.active and self.active[0][0] <= wm:
                return heapq.heappop(self.active)[1]
            if not self.order or self.order[0] * BUCKET_MS > wm:
                return None
            b = heapq.heappop(self.order)
            dues, keys = self.buckets.pop(b)
            self.active_below = b + 1
            for entry in zip(dues, keys):
                if entry[1] is not _GONE:
                    heapq.heappush(self.active, entry)

    def first_due(self) -> int | None:
        """The smallest due time scheduled (None: nothing)."""
        best = self.active[0][0] if self.active else None
        if self.order:
            first = min(self.buckets[self.order[0]][0])
            best = first if best is None or first < best else best
        return best


class Waiting:
    """Pending (accepted, not yet ready) messages counted per class and accepted second."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[int, int]] = {}

    def add(self, cls: str, accepted_at: int) -> None:
        c = self.counts.setdefault(cls, {})
        s = accepted_at // 1000
        c[s] = c.get(s, 0) + 1

    def remove(self, cls: str, accepted_at: int) -> None:
        c = self.counts.get(cls)
        s = accepted_at // 1000
        if c is None or s not in c:
            return  # not counted (cannot happen when add/remove pair up; never go negative)
        if c[s] <= 1:
            del c[s]
        else:
            c[s] -= 1

    def oldest(self, cls: str) -> int | None:
        """accepted_at of the oldest pending message of `cls`, rounded down to the second."""
        c = self.counts.get(cls)
        return min(c) * 1000 if c else None
