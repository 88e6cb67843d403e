"""Deadline buckets settle exactly what one heap of (due, key) would, in the same order."""
from __future__ import annotations

import heapq

from hypothesis import given, settings as hsettings, strategies as st

from pipeline.core.deadlines import BUCKET_MS, Deadlines, Waiting

op = st.one_of(st.tuples(st.just("push"), st.integers(-3 * BUCKET_MS, 40 * BUCKET_MS), st.integers(0, 30)),
               st.tuples(st.just("fire"), st.integers(0, 5 * BUCKET_MS), st.just(0)))


@hsettings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=120))
def test_buckets_pop_the_same_keys_in_the_same_order_as_a_heap(ops) -> None:
    dl, heap, wm = Deadlines(), [], -4 * BUCKET_MS
    for kind, a, b in ops:
        if kind == "push":
            due, key = wm + a, f"k{b}".encode()  # due may lie behind the watermark, in reached buckets too
            dl.push(due, key)
            heapq.heappush(heap, (due, key))
        else:
            wm += a
            got, want = [], []
            while (k := dl.pop_due(wm)) is not None:
                got.append(k)
            while heap and heap[0][0] <= wm:
                want.append(heapq.heappop(heap)[1])
            assert got == want
        assert len(dl) == len(heap)
        assert dl.first_due() == (heap[0][0] if heap else None)


def test_oldest_pending_is_kept_to_the_second_and_forgotten_when_the_last_one_goes() -> None:
    w = Waiting()
    w.add("campaign", 5_999)
    w.add("campaign", 5_001)
    w.add("campaign", 9_000)
    assert w.oldest("campaign") == 5_000 and w.oldest("transactional") is None
    w.remove("campaign", 5_999)
    assert w.oldest("campaign") == 5_000
    w.remove("campaign", 5_001)
    assert w.oldest("campaign") == 9_000
    w.remove("campaign", 5_001)  # never counted twice below zero
    w.remove("campaign", 9_000)
    assert w.oldest("campaign") is None and w.counts["campaign"] == {}


def test_a_discarded_entry_is_never_popped_and_releases_its_key() -> None:
    dl = Deadlines()
    key = b"k-" + b"1" * 20
    dl.push(5 * BUCKET_MS + 3, key)
    dl.push(5 * BUCKET_MS + 4, b"other")
    assert dl.discard(5 * BUCKET_MS + 3, key) and not dl.discard(5 * BUCKET_MS + 3, key)
    assert not dl.discard(9 * BUCKET_MS, key)  # no such bucket
    assert all(k is not key for _, keys in dl.buckets.values() for k in keys)
    assert dl.pop_due(6 * BUCKET_MS) == b"other" and dl.pop_due(6 * BUCKET_MS) is None
