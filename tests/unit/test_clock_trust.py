"""Event time no single source can move: wrong MTA clocks, late backfills, partitions that
still have unread records (issues #10 and #14). The runtime is driven with a dict table."""
from __future__ import annotations

from dataclasses import replace

import orjson

from pipeline.core.clock import ClockTrust
from pipeline.core.config import load
from pipeline.core.events import format_ts
from pipeline.stream.runtime import JoinRuntime
from pipeline.core.watermark import Watermark

MIN, H = 60_000, 3_600_000
T0 = 1_790_000_000_000  # 2026-09-21


def settings(live: bool):
    return replace(load(), partitions=2, idle_grace_s=5.0 if live else 0.0, lateness_ms=0)


def acc(mid: str, at: int, mta: str = "mta-a", cls: str = "transactional") -> bytes:
    return orjson.dumps({"message_id": mid, "account_id": "x", "message_class": cls,
                         "accepted_at": format_ts(at), "mta": mta})


def rdy(mid: str, at: int, mta: str = "mta-a") -> bytes:
    return orjson.dumps({"message_id": mid, "ready_at": format_ts(at), "mta": mta})


def run(s, records, rt: JoinRuntime | None = None) -> tuple[dict[str, dict], dict[str, dict], JoinRuntime]:
    """records: (topic, partition, raw, wall); returns the newest message and orphan rows by id."""
    rt = rt or JoinRuntime(s, {})
    rows: dict[str, dict] = {}
    orphans: dict[str, dict] = {}
    for topic, p, raw, wall in records:
        key = orjson.loads(raw)["message_id"].encode() if raw else None
        for o in rt.handle(topic, p, 0, key, raw, wall=wall):
            if o.kind == "result":
                r = orjson.loads(o.value)
                (rows if r["k"] == "m" else orphans)[r["message_id"]] = r
    return rows, orphans, rt


def traffic(s, n: int = 40):
    """n messages a minute apart on partition 0, each event read 1 s after it happened (live);
    every 4th takes 45 min (late), one is never ready."""
    events = []
    for i in range(n):
        a = T0 + i * MIN
        events.append((a, s.topic_accepted, acc(f"m{i}", a)))
        if i != 7:
            r = a + (45 * MIN if i % 4 == 0 else 2000)
            events.append((r, s.topic_ready, rdy(f"m{i}", r)))
    return [(topic, 0, raw, at / 1000 + 1) for at, topic, raw in sorted(events, key=lambda e: e[0])]


def verdicts(rows: dict[str, dict]) -> dict[str, tuple]:
    return {m: (r["status"], r["handling_ms"]) for m, r in rows.items()}


def test_a_far_future_mta_clock_in_live_mode_changes_no_other_verdict() -> None:
    s = settings(live=True)
    wall0 = T0 / 1000 + 60  # the wall clock runs with the traffic
    clean = traffic(s)
    bogus_at = 4_070_908_800_000  # 2099-01-01
    dirty = clean[:20] + [
        (s.topic_accepted, 0, acc("bad1", bogus_at, mta="mta-2099"), wall0 + 600),
        (s.topic_ready, 0, rdy("bad1", bogus_at + 1000, mta="mta-2099"), wall0 + 600),
        (s.topic_ready, 0, rdy("bad2", bogus_at, mta="mta-2099"), wall0 + 600),
    ] + clean[20:]
    want, want_orphans, _ = run(s, clean)
    got, got_orphans, rt = run(s, dirty)
    assert verdicts({m: r for m, r in got.items() if not m.startswith("bad")}) == verdicts(want)
    assert got_orphans == want_orphans
    assert got["bad1"]["clock_suspect"] == "ahead"
    assert all(r["clock_suspect"] == "" for m, r in got.items() if not m.startswith("bad"))
    assert rt.snapshot()["clock_suspects"] == {"mta-2099": {"ahead": 3}}
    assert max(p.wm.value for p in rt.parts.values()) < T0 + 2 * H  # event time stayed with the traffic


def test_a_clock_a_little_ahead_beyond_the_tolerance_is_kept_out_too() -> None:
    s = settings(live=True)
    wall0 = T0 / 1000 + 60
    clean = traffic(s)
    skewed = [(s.topic_accepted, 0, acc("bad", T0 + 3 * H, mta="mta-skew"), wall0 + 300),
              (s.topic_ready, 0, rdy("bad", T0 + 3 * H + 500, mta="mta-skew"), wall0 + 300)]
    want, _, _ = run(s, clean)
    got, _, rt = run(s, clean[:10] + skewed + clean[10:])
    assert verdicts({m: r for m, r in got.items() if m != "bad"}) == verdicts(want)
    assert rt.snapshot()["clock_suspects"] == {"mta-skew": {"ahead": 2}}


def test_in_replay_mode_a_jump_past_the_horizon_is_not_trusted_but_slow_ready_events_are() -> None:
    s = settings(live=False)
    trust = ClockTrust(10 * MIN, s.never_ready_ms, s.never_ready_ms, live=False)
    assert trust.judge(T0, 0.0, None, "a", "accepted") == ""
    assert trust.judge(T0 + 13 * H, 0.0, None, "a", "queue-ready") == ""  # a slow campaign message
    assert trust.judge(T0 + 13 * H + s.never_ready_ms + 1, 0.0, None, "b", "accepted") == "ahead"
    assert trust.judge(T0 - s.never_ready_ms - 1, 0.0, T0, "c", "accepted") == "behind"
    assert trust.snapshot() == {"b": {"ahead": 1}, "c": {"behind": 1}}


def test_a_backfilled_day_old_hour_gets_the_verdicts_it_would_have_got_on_time() -> None:
    """Queue-ready events of a day-old hour processed before their accepted events (#10)."""
    s = settings(live=False)
    day = 26 * H
    now = [(s.topic_accepted, 0, acc(f"n{i}", T0 + day + i * MIN), 0.0) for i in range(10)]
    now += [(s.topic_ready, 0, rdy(f"n{i}", T0 + day + i * MIN + 1000), 0.0) for i in range(10)]
    old_ready = [(s.topic_ready, 0, rdy(f"o{i}", T0 + i * MIN + 3000), 0.0) for i in range(20)]
    old_acc = [(s.topic_accepted, 0, acc(f"o{i}", T0 + i * MIN), 0.0) for i in range(20)]
    rows, orphans, _ = run(s, now + old_ready + old_acc)
    assert {m: (r["status"], r["handling_ms"]) for m, r in rows.items() if m.startswith("o")} == {
        f"o{i}": ("on_time", 3000) for i in range(20)}
    assert all(o["resolved"] for o in orphans.values())


def test_a_lagging_stream_is_never_quiet_so_the_wall_clock_cannot_pass_unread_records() -> None:
    w = Watermark(lateness_ms=0, idle_grace_s=5.0)
    w.start(("accepted", "ready"), wall=0.0)
    w.observe("accepted", T0, 0.0)
    w.observe("ready", T0 - 10 * H, 0.0)
    assert w.advance(100.0, floor=T0 + 30 * H, lagging={"ready"}) == T0 - 10 * H
    assert w.advance(100.0, floor=T0 + 30 * H) > T0 + 30 * H  # caught up: quiet, moves with the worker


def test_a_partition_starved_after_a_restart_keeps_the_state_of_its_unread_messages() -> None:
    """#14: partition 1 has records not yet read while partition 0 runs a day ahead."""
    s = settings(live=True)
    wall0 = T0 / 1000 + 48 * 3600  # catching up on two days of records after a restart
    unread = {1}
    rt = JoinRuntime(s, {})
    rt.lagging = lambda p: {"accepted", "ready"} if p in unread else set()
    first = [(s.topic_ready, 1, rdy("q", T0 + 5000), wall0),  # queue-ready first (disorder)
             (s.topic_accepted, 0, acc("z", T0), wall0), (s.topic_ready, 0, rdy("z", T0 + 10), wall0)]
    ahead = [(s.topic_accepted, 0, acc(f"p{i}", T0 + i * H), wall0 + 1) for i in range(1, 40)]
    ticks = [(s.topic_ticks, 1, b"", wall0 + 30 + i) for i in range(10)]
    rows, orphans, rt = run(s, first + ahead + ticks, rt)
    assert "q" not in orphans  # partition 1 did not jump: its queue-ready waits for its accepted
    unread.clear()
    rows, orphans, rt = run(s, [(s.topic_accepted, 1, acc("q", T0), wall0 + 45)], rt)
    assert (rows["q"]["status"], rows["q"]["handling_ms"]) == ("on_time", 5000)
