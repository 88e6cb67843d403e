"""The compact table encoding of join states: exact round trip, old JSON states still read."""
from __future__ import annotations

from dataclasses import replace

import orjson
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from pipeline.core import join
from pipeline.core.config import load
from pipeline.core.events import Accepted, QueueReady, format_ts
from pipeline.stream.runtime import JoinRuntime
from pipeline.core.state import decode, encode

MIN, H = 60_000, 3_600_000
T0 = 1_790_000_000_000
P = join.JoinPolicy({"transactional": 30 * MIN, "campaign": 12 * H}, never_ready_ms=72 * H,
                    orphan_grace_ms=H, retention_ms=24 * H)

event = st.tuples(st.sampled_from(["acc", "rdy", "settle"]), st.integers(-H, 80 * H),
                  st.sampled_from(["", "ahead", "behind"]))


@hsettings(max_examples=300, deadline=None)
@given(st.lists(event, min_size=1, max_size=6), st.sampled_from(["transactional", "campaign"]),
       st.sampled_from(["", "mta-7", "ümlaut-mta"]), st.sampled_from(["normal", "low"]),
       st.sampled_from(["", "smtp", "api"]), st.sampled_from(["", "550 bad rcpt"]))
def test_every_state_the_join_core_makes_round_trips_exactly(events, cls, mta, prio, src, err) -> None:
    state, wm = None, None
    for kind, t, suspect in events:
        wm = T0 + t if wm is None else max(wm, T0 + t)
        if kind == "acc":
            step = join.on_accepted(state, Accepted("m-1", "acct-9", cls, T0 + t, prio, src, mta, err), wm, P, suspect)
        elif kind == "rdy":
            step = join.on_ready(state, QueueReady("m-1", T0 + t, mta), wm, P, 1_700_000_000_123, suspect)
        elif state is not None:
            step = join.settle(state, wm, P)
        else:
            continue
        state = step.state
        if state is None:
            continue
        state["p"] = 5
        raw = encode(state)
        assert raw[:1] == b"\x01"
        assert decode(raw, b"m-1") == state
        assert len(raw) < len(orjson.dumps(state)) / 2


def test_a_waiting_message_takes_about_a_third_of_its_json() -> None:
    state = join.on_accepted(None, Accepted("m-0000000001", "acct-123", "transactional", T0, mta="mta-03"),
                             T0, P).state
    state["p"] = 3
    assert len(encode(state)) <= 37 < len(orjson.dumps(state)) - 60


def test_old_json_states_are_read_and_states_it_cannot_hold_are_written_as_json() -> None:
    old = {"id": "m", "a": [T0, "acct", "campaign", "normal", "smtp", "mta"], "r": None, "p": 1,
           "sig": ["overdue", T0, None], "rev": 1}  # a state of 0.1: six accepted fields
    assert decode(orjson.dumps(old), b"m") == old
    again = decode(encode(old), b"m")
    assert again["a"] == old["a"] + [""] and join.message_row(again, "overdue", P) == join.message_row(old, "overdue", P)
    for odd in ({**old, "future_field": 1}, {**old, "a": [T0, "x" * 300, "campaign", "normal", "smtp", "mta", ""]},
                {**old, "a": [T0, "acct", "newclass", "urgent", "smtp", "mta", ""]}):
        raw = encode(odd)
        assert decode(raw, b"m") == odd
    assert encode({**old, "future_field": 1})[:1] == b"{"
    with pytest.raises(ValueError):
        decode(b"\x07garbage", b"m")
    with pytest.raises(ValueError):
        decode(encode(old)[:9], b"m")


def test_a_worker_restarted_on_a_table_of_json_states_gives_the_same_rows() -> None:
    """A changelog written by the previous version (JSON values) restores and goes on."""
    s = replace(load(), partitions=1, idle_grace_s=0.0, lateness_ms=0)
    acc = lambda mid, at: orjson.dumps({"message_id": mid, "account_id": "a", "message_class": "transactional",  # noqa: E731
                                        "accepted_at": format_ts(at)})
    rows: dict[str, list] = {}

    def feed(rt: JoinRuntime, topic: str, raw: bytes) -> None:
        mid = orjson.loads(raw)["message_id"]
        for o in rt.handle(topic, 0, 0, mid.encode(), raw, wall=0.0):
            if o.kind == "result":
                r = orjson.loads(o.value)
                rows.setdefault(r["message_id"], []).append((r["status"], r["rev"]))

    table: dict[bytes, bytes] = {}
    rt = JoinRuntime(s, table)
    feed(rt, s.topic_accepted, acc("j1", T0))
    feed(rt, s.topic_accepted, acc("j2", T0 + MIN))
    for key in list(table):  # what the previous version wrote
        if not key.startswith(b"\x00"):
            table[key] = orjson.dumps(decode(table[key], key))
    assert all(v[:1] == b"{" for k, v in table.items() if not k.startswith(b"\x00"))
    rt = JoinRuntime(s, table)
    feed(rt, s.topic_ready, orjson.dumps({"message_id": "j2", "ready_at": format_ts(T0 + 2 * MIN)}))
    feed(rt, s.topic_accepted, acc("j3", T0 + 40 * MIN))
    feed(rt, s.topic_ready, orjson.dumps({"message_id": "j3", "ready_at": format_ts(T0 + 41 * MIN)}))
    assert rows == {"j1": [("overdue", 1)], "j2": [("on_time", 1)], "j3": [("on_time", 1)]}


@hsettings(max_examples=300, deadline=None)
@given(st.lists(event, min_size=1, max_size=6), st.sampled_from(["transactional", "campaign"]))
def test_the_fast_encoder_writes_exactly_what_the_general_one_writes(events, cls) -> None:
    from pipeline.core.state import _compact, _fast

    state, wm = None, None
    for kind, t, suspect in events:
        wm = T0 + t if wm is None else max(wm, T0 + t)
        if kind == "acc":
            step = join.on_accepted(state, Accepted("m-2", "acct", cls, T0 + t), wm, P, suspect)
        elif kind == "rdy":
            step = join.on_ready(state, QueueReady("m-2", T0 + t), wm, P, 0, suspect)
        elif state is not None:
            step = join.settle(state, wm, P)
        else:
            continue
        state = step.state
        if state is None:
            continue
        state["p"] = 2
        fast = _fast(state)
        assert fast is None or fast == _compact(state)
