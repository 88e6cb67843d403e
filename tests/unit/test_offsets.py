"""The join agent's own input offsets: never skip a record, never commit past one."""
from pipeline.offsets import PROCESS, REWIND, SKIP, OffsetTracker

TP = ("accepted", 0)


def test_records_in_order_are_processed_and_committed_up_to_the_last_one() -> None:
    t = OffsetTracker()
    t.assign({TP: 10})
    assert [t.check(TP, o, 0.0) for o in (10, 11, 12)] == [PROCESS] * 3
    assert t.to_commit() == {TP: 13}
    t.did_commit({TP: 13})
    assert t.to_commit() == {}


def test_a_hole_is_never_skipped_the_agent_seeks_back_and_waits_for_the_missing_record() -> None:
    t = OffsetTracker(rewind_every_s=1.0)
    t.assign({TP: 0})
    assert t.check(TP, 0, 0.0) == PROCESS
    assert t.check(TP, 5, 0.1) == REWIND  # 1..4 were skipped upstream
    assert t.check(TP, 6, 0.2) == SKIP  # still buffered above the hole: no second seek yet
    assert t.to_commit() == {TP: 1}  # nothing past the hole
    assert t.check(TP, 7, 1.5) == REWIND  # the seek did not take: seek again
    assert [t.check(TP, o, 2.0) for o in (1, 2, 3, 4, 5)] == [PROCESS] * 5
    assert t.to_commit() == {TP: 6} and t.rewinds == 2


def test_redelivered_records_below_the_expected_offset_are_skipped() -> None:
    t = OffsetTracker()
    t.assign({TP: 3})
    assert t.check(TP, 3, 0.0) == PROCESS
    assert t.check(TP, 2, 0.0) == SKIP and t.check(TP, 3, 0.0) == SKIP
    assert t.skipped == 2


def test_a_partition_with_no_known_start_trusts_its_first_record() -> None:
    t = OffsetTracker()
    t.assign({})
    assert t.check(TP, 42, 0.0) == PROCESS and t.to_commit() == {TP: 43}


def test_revoked_partitions_are_forgotten_and_reassignment_restarts_from_the_committed_offset() -> None:
    t = OffsetTracker()
    t.assign({TP: 0})
    t.check(TP, 0, 0.0)
    t.revoke({TP})
    assert t.to_commit() == {}
    t.assign({TP: 1})
    assert t.check(TP, 0, 0.0) == SKIP and t.check(TP, 1, 0.0) == PROCESS
