"""Fingerprints of finished messages: what absorbs late duplicates once the state is gone.

A finished message (`on_time` / `late`) used to keep its whole state for the dedup
retention (24 h) so that a duplicate event counts once. The runtime now replaces such a
state, once the input record that finished it is committed, by a 64-bit fingerprint
(blake2b of the message id) tagged with the hour its state would have expired in.

Memory: the fingerprints of a partition live in `SHARDS` sorted `array('Q')` shards
(by the top bits of the hash), each entry the remaining hash bits and the hour tag:
8 B per message. Durability: they are also written to the state table (so to its
changelog) in chunks of up to `CHUNK` fingerprints under
b"\\x00fp:<partition>:<hour>:<seq>", about 8 B more per message in the memory store;
the open chunk of an hour is rewritten as it fills. A restart or a rebalance loads
them back (`load`), and the chunks of an hour are deleted once the watermark has
passed it (`expire`): a duplicate counts once for at least the retention, at most an
hour longer.

Collisions: two different ids share a fingerprint with probability ~n/2^64 per new id
(n fingerprints kept): with 10^8 kept, about one message in 10^11 would wrongly be
taken for a duplicate. We accept that.

Runs inside `JoinRuntime.handle`, pure (no Kafka): `convert` works on any mutable mapping
standing for the table.
"""
from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left
from collections import deque
from typing import Callable, Iterable, MutableMapping

from pipeline.core import join
from pipeline.core.state import decode

FP_PREFIX = b"\x00fp:"
HOUR_MS = 3_600_000
CHUNK = 512
SHARD_BITS = 10
SHARDS = 1 << SHARD_BITS
TAG_BITS = SHARD_BITS  # hour tag: hour modulo 1024 (42 days); live = within half of that ahead
_TAG_MASK = (1 << TAG_BITS) - 1
_REST = 64 - SHARD_BITS
_REST_MASK = (1 << _REST) - 1
MAX_AHEAD_H = (1 << TAG_BITS) // 2 - 1  # an hour further ahead than this cannot be tagged


def fingerprint(message_id: bytes) -> int:
    """64-bit fingerprint of a message id (the table key)."""
    return int.from_bytes(hashlib.blake2b(message_id, digest_size=8).digest(), "little")


def _pack(fps: array) -> bytes:
    if sys.byteorder == "big":  # the stored chunks are little-endian everywhere
        fps = array("Q", fps)
        fps.byteswap()
    return fps.tobytes()


def _unpack(raw: bytes) -> array:
    fps = array("Q")
    fps.frombytes(raw)
    if sys.byteorder == "big":
        fps.byteswap()
    return fps


class Fingerprints:
    """The fingerprints of one partition."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.shards: list[array | None] = [None] * SHARDS
        self.purged: list[int] = [0] * SHARDS  # hour up to which each shard was cleaned
        self.chunks: dict[int, int] = {}  # hour -> number of chunks written for it
        self.open: dict[int, array] = {}  # hour -> fingerprints of its last, not yet full chunk
        self.count = 0
        self.expired_h: int | None = None  # watermark hour up to which chunks were expired

    def __len__(self) -> int:
        return self.count

    def chunk_key(self, hour: int, seq: int) -> bytes:
        return FP_PREFIX + f"{self.partition}:{hour}:{seq}".encode()

    @staticmethod
    def _live(tag: int, now_h: int | None) -> bool:
        return now_h is None or (tag - now_h) & _TAG_MASK <= MAX_AHEAD_H

    def seen(self, fp: int, now_h: int | None) -> bool:
        """Whether `fp` is kept (its hour not yet passed by the watermark's hour `now_h`)."""
        shard = self.shards[fp >> _REST]
        if not shard:
            return False
        rest = fp & _REST_MASK
        i = bisect_left(shard, rest << TAG_BITS)
        while i < len(shard) and shard[i] >> TAG_BITS == rest:
            if self._live(shard[i] & _TAG_MASK, now_h):
                return True
            i += 1
        return False

    def _insert(self, fp: int, hour: int, now_h: int | None) -> None:
        s = fp >> _REST
        shard = self.shards[s]
        if shard is None:
            shard = self.shards[s] = array("Q")
        elif now_h is not None and self.purged[s] < now_h:  # at most once an hour per shard
            kept = array("Q", (e for e in shard if self._live(e & _TAG_MASK, now_h)))
            self.count -= len(shard) - len(kept)
            shard = self.shards[s] = kept
            self.purged[s] = now_h
        e = ((fp & _REST_MASK) << TAG_BITS) | (hour & _TAG_MASK)
        shard.insert(bisect_left(shard, e), e)
        self.count += 1

    def add(self, items: Iterable[tuple[int, int]], now_h: int | None) -> list[tuple[bytes, bytes]]:
        """Keep (fingerprint, expiry hour) pairs; returns the chunk writes for the table, to be
        made before the states they replace are deleted (a crash in between keeps both)."""
        touched: dict[int, None] = {}
        writes: list[tuple[bytes, bytes]] = []
        for fp, hour in items:
            self._insert(fp, hour, now_h)
            chunk = self.open.get(hour)
            if chunk is None:
                chunk = self.open[hour] = array("Q")
                self.chunks[hour] = self.chunks.get(hour, 0) + 1
            chunk.append(fp)
            touched[hour] = None
            if len(chunk) >= CHUNK:  # full: written now, the next one starts a new key
                writes.append((self.chunk_key(hour, self.chunks[hour] - 1), _pack(chunk)))
                del self.open[hour]
                touched.pop(hour)
        for hour in touched:
            writes.append((self.chunk_key(hour, self.chunks[hour] - 1), _pack(self.open[hour])))
        return writes

    def load(self, hour: int, seq: int, raw: bytes) -> None:
        """A chunk found in the table at a rebuild."""
        fps = _unpack(raw)
        for fp in fps:
            s = fp >> _REST
            if self.shards[s] is None:
                self.shards[s] = array("Q")
            self.shards[s].append(((fp & _REST_MASK) << TAG_BITS) | (hour & _TAG_MASK))  # type: ignore[union-attr]
        self.count += len(fps)
        self.chunks[hour] = max(self.chunks.get(hour, 0), seq + 1)  # new fingerprints go to a new chunk

    def loaded(self) -> None:
        """All chunks are loaded: sort the shards."""
        for i, shard in enumerate(self.shards):
            if shard:
                self.shards[i] = array("Q", sorted(shard))

    def expire(self, now_h: int) -> list[bytes]:
        """Hours before `now_h` are over: their chunk keys to delete from the table. Their entries
        stop counting at once and leave the shards as each one is next cleaned."""
        gone = [h for h in self.chunks if h < now_h]
        keys = [self.chunk_key(h, seq) for h in gone for seq in range(self.chunks[h])]
        for h in gone:
            del self.chunks[h]
            self.open.pop(h, None)
        return keys


def convertible(state: join.State, policy: join.JoinPolicy, wm: int | None) -> bool:
    """A finished message whose fingerprint can stand for it (its expiry hour can be tagged)."""
    if wm is None or not join.is_finished(state, policy, wm):
        return False
    end = join.expire_at(state, policy)
    return end is not None and end // HOUR_MS - wm // HOUR_MS <= MAX_AHEAD_H


Ticket = tuple[int, int, list[int]]  # a finished message's (fingerprint, expiry hour, earlier due times)
Finished = tuple[int, bytes, bytes, Ticket]  # (input offset, key, the state's bytes when it finished, ticket)


def ticket(key: bytes, state: join.State, policy: join.JoinPolicy) -> Ticket:
    """What converting a `convertible` state takes, worked out while the state is decoded anyway."""
    return fingerprint(key), join.expire_at(state, policy) // HOUR_MS, join.earlier_dues(state, policy)  # type: ignore[operator]


def convert(table: MutableMapping[bytes, bytes], fps: Fingerprints, finished: dict[str, deque[Finished]],
            committed: Callable[[str], int | None], policy: join.JoinPolicy, wm: int | None,
            schedule: Callable[[bytes, join.State], None],
            unschedule: Callable[[bytes, list[int]], None] = lambda key, dues: None) -> int:
    """Replace finished states by fingerprints once the input record that finished each one is
    committed (`finished`: per input topic, `Finished` entries in offset order; `committed(topic)`:
    the committed offset, None = everything). From then on that record is never processed again,
    so its row is in the results topic for good and a duplicate only needs counting. Before,
    a re-processed record must find the state to write the row again (a crash between the
    changelog and the results write). The chunk is written before the states are deleted: a
    crash in between leaves both, never neither. A state that changed so that it no longer
    qualifies goes back to `schedule`; one that goes has its stale deadline entries dropped
    (`unschedule`, with the due times). A state still holding the bytes it had when it finished
    is converted from its ticket without decoding it: it is still convertible, since nothing
    but the watermark changed, and that only brings its expiry hour nearer. Also deletes the
    chunks of hours `wm` has passed.
    Returns how many states became fingerprints."""
    batch: dict[bytes, tuple[int, int]] = {}
    for topic, queue in finished.items():
        done = committed(topic)
        while queue and (done is None or queue[0][0] < done):
            _, key, then, tk = queue.popleft()
            raw = table.get(key)
            if raw is None or key in batch:
                continue
            if raw != then:  # changed since (a conflicting duplicate): decide again
                state = decode(raw, key)
                if not convertible(state, policy, wm):
                    schedule(key, state)
                    continue
                tk = ticket(key, state, policy)
            batch[key] = (tk[0], tk[1])
            unschedule(key, tk[2])
    now_h = None if wm is None else wm // HOUR_MS
    if batch:
        for chunk_key, value in fps.add(batch.values(), now_h):
            table[chunk_key] = value
        for key in batch:
            del table[key]
    if now_h is not None and (fps.expired_h is None or now_h > fps.expired_h):
        fps.expired_h = now_h
        for chunk_key in fps.expire(now_h):
            if chunk_key in table:
                del table[chunk_key]
    return len(batch)


def parse_chunk_key(key: bytes) -> tuple[int, int, int]:
    """(partition, hour, seq) of a chunk key; ValueError if it is not one."""
    p, hour, seq = key[len(FP_PREFIX):].split(b":")
    return int(p), int(hour), int(seq)
