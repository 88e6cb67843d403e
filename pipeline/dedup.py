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

Runs inside `JoinRuntime.handle`, pure (no Kafka): `add` and `expire` return the table
writes and deletions for the caller to make.
"""
from __future__ import annotations

import hashlib
import sys
from array import array
from bisect import bisect_left
from typing import Iterable

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


def parse_chunk_key(key: bytes) -> tuple[int, int, int]:
    """(partition, hour, seq) of a chunk key; ValueError if it is not one."""
    p, hour, seq = key[len(FP_PREFIX):].split(b":")
    return int(p), int(hour), int(seq)
