"""The partition watermark: minimum over inputs, idle inputs, wall-clock advance."""
from __future__ import annotations

from pipeline.core.watermark import Watermark


def wm(idle: float = 10.0, lateness: int = 0) -> Watermark:
    w = Watermark(lateness, idle)
    w.start(("accepted", "ready"), wall=0.0)
    return w


def test_the_watermark_waits_for_both_inputs() -> None:
    w = wm()
    w.observe("accepted", 1000, 1.0)
    assert w.advance(1.0) is None
    w.observe("ready", 500, 1.0)
    assert w.advance(1.0) == 500


def test_a_lagging_input_holds_the_watermark_back() -> None:
    w = wm()
    w.observe("accepted", 10_000, 1.0)
    w.observe("ready", 2_000, 1.0)
    assert w.advance(2.0) == 2_000


def test_a_quiet_input_stops_holding_it_back_after_the_idle_grace() -> None:
    w = wm()
    w.observe("ready", 2_000, 1.0)
    w.observe("accepted", 10_000, 20.0)
    assert w.advance(20.0) == 10_000


def test_when_everything_is_quiet_the_watermark_follows_the_wall_clock() -> None:
    w = wm()
    w.observe("accepted", 10_000, 1.0)
    w.observe("ready", 10_000, 1.0)
    assert w.advance(11.0) == 10_000
    assert w.advance(16.0) == 15_000


def test_replay_mode_ignores_the_wall_clock_and_the_watermark_never_goes_back() -> None:
    w = wm(idle=0)
    w.observe("accepted", 10_000, 1.0)
    w.observe("ready", 9_000, 1.0)
    assert w.advance(1000.0) == 9_000
    w.observe("ready", 5_000, 1001.0)
    assert w.advance(1001.0) == 9_000


def test_allowed_lateness_is_subtracted() -> None:
    w = wm(lateness=300)
    w.observe("accepted", 1000, 1.0)
    w.observe("ready", 1000, 1.0)
    assert w.advance(1.0) == 700


def test_a_quiet_partition_catches_up_with_the_newest_event_time_of_the_worker() -> None:
    w = wm()
    w.observe("accepted", 10_000, 1.0)
    w.observe("ready", 8_000, 1.0)
    assert w.advance(2.0, floor=50_000) == 8_000  # still active: the floor does not apply
    assert w.advance(12.0, floor=50_000) == 51_000  # quiet: the floor, then the wall clock


def test_the_floor_is_ignored_in_replay_mode() -> None:
    w = wm(idle=0)
    w.observe("accepted", 10_000, 1.0)
    w.observe("ready", 8_000, 1.0)
    assert w.advance(100.0, floor=50_000) == 8_000
