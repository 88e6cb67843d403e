"""The join agent's own input offsets: never skip a record, never commit past one."""
from pipeline.stream.offsets import PROCESS, REWIND, SKIP, OffsetTracker

TP = ("accepted", 0)


def feed(t: OffsetTracker, offsets: tuple[int, ...] | range, now: float = 0.0) -> list[str]:
    """As the agent does: check each record, and mark the processed ones done after their sends."""
    out = []
    for o in offsets:
        action = t.check(TP, o, now)
        if action == PROCESS:
            t.done(TP, o)
        out.append(action)
    return out


def test_records_in_order_are_processed_and_committed_up_to_the_last_one() -> None:
    t = OffsetTracker()
    t.assign({TP: 10})
    assert t.check(TP, 10, 0.0) == PROCESS
    assert t.to_commit() == {}  # not before its outputs are sent
    t.done(TP, 10)
    assert feed(t, (11, 12)) == [PROCESS] * 2
    assert t.to_commit() == {TP: 13}
    t.did_commit({TP: 13})
    assert t.to_commit() == {}


def test_a_hole_is_never_skipped_the_agent_seeks_back_and_waits_for_the_missing_record() -> None:
    t = OffsetTracker(rewind_every_s=1.0)
    t.assign({TP: 0})
    assert feed(t, (0,)) == [PROCESS]
    assert t.check(TP, 5, 0.1) == REWIND  # 1..4 were skipped upstream
    assert t.check(TP, 6, 0.2) == SKIP  # still buffered above the hole: no second seek yet
    assert t.to_commit() == {TP: 1}  # nothing past the hole
    assert t.check(TP, 7, 1.5) == REWIND  # the seek did not take: seek again
    assert feed(t, (1, 2, 3, 4, 5), 2.0) == [PROCESS] * 5
    assert t.to_commit() == {TP: 6} and t.rewinds == 2


def test_redelivered_records_below_the_expected_offset_are_skipped() -> None:
    t = OffsetTracker()
    t.assign({TP: 3})
    assert feed(t, (3,)) == [PROCESS]
    assert t.check(TP, 2, 0.0) == SKIP and t.check(TP, 3, 0.0) == SKIP
    assert t.skipped == 2


def test_a_partition_with_no_known_start_trusts_its_first_record() -> None:
    t = OffsetTracker()
    t.assign({})
    assert feed(t, (42,)) == [PROCESS] and t.to_commit() == {TP: 43}


def test_revoked_partitions_are_forgotten_and_reassignment_restarts_from_the_committed_offset() -> None:
    t = OffsetTracker()
    t.assign({TP: 0})
    feed(t, (0,))
    t.revoke({TP})
    assert t.to_commit() == {}
    t.assign({TP: 1})
    assert t.check(TP, 0, 0.0) == SKIP and feed(t, (1,)) == [PROCESS]


def test_a_hole_is_waited_for_however_many_seeks_it_takes_while_kafka_still_has_the_records() -> None:
    t = OffsetTracker(rewind_every_s=1.0)
    t.assign({TP: 0})  # a full stream buffer drains slowly: the re-fetched records come late
    assert [t.check(TP, 10 + i, float(i * 2)) for i in range(30)] == [REWIND] * 30
    assert t.to_commit() == {} and t.absent == 0
    assert feed(t, range(0, 11), 60.0) == [PROCESS] * 11 and t.to_commit() == {TP: 11}


def test_offsets_kafka_holds_no_record_for_are_skipped_only_on_kafkas_word_and_counted() -> None:
    t = OffsetTracker(rewind_every_s=1.0)
    t.assign({TP: 0})  # retention deleted 0..9, or they were transaction markers
    assert t.check(TP, 10, 0.0) == REWIND
    t.skip_absent(TP, 10)  # the probe: the first record at or after 0 is 10
    assert t.check(TP, 10, 0.0) == PROCESS and t.absent == 10
    t.done(TP, 10)
    assert t.to_commit() == {TP: 11}


def test_a_probe_answer_below_the_expected_offset_changes_nothing() -> None:
    t = OffsetTracker()
    t.assign({TP: 5})
    t.skip_absent(TP, 5)
    t.skip_absent(TP, 3)
    assert t.expected == {TP: 5} and t.absent == 0


def test_records_processed_while_the_start_was_asked_for_stand_when_they_began_at_it() -> None:
    t = OffsetTracker()  # a rebalance: records flow while the committed offsets are still being read
    assert feed(t, range(0, 500)) == [PROCESS] * 500
    t.assign({TP: 0})
    assert t.check(TP, 500, 0.0) == PROCESS  # not a hole: 0..499 were processed
    t.done(TP, 500)
    assert t.to_commit() == {TP: 501}


def test_a_partition_whose_records_all_came_before_its_start_was_known_is_not_left_waiting() -> None:
    t = OffsetTracker()  # a finished replay: nothing more arrives to show the partition is done
    feed(t, range(10, 20))
    t.assign({TP: 5})  # redelivered from below the commit: 10 > 5 means 5..9 were never processed
    assert t.expected[TP] == 5 and t.check(TP, 20, 0.0) == REWIND
    t2 = OffsetTracker()
    feed(t2, range(3, 20))  # began below the committed offset: re-reads, harmless
    t2.assign({TP: 5})
    assert t2.expected[TP] == 20 and t2.to_commit() == {TP: 20}


def test_trust_is_forgotten_on_revoke() -> None:
    t = OffsetTracker()
    feed(t, range(0, 5))
    t.revoke({TP})
    t.assign({TP: 0})
    assert t.expected[TP] == 0
