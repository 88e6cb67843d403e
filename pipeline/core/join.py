"""The per-message join of `accepted` and `queue-ready`, in event time.

Pure: no Kafka, no ClickHouse, no clock of its own. The Faust agent
(`pipeline.stream.app`) keeps one `state` dict per message id in a table, calls
`on_accepted` / `on_ready` for each input event and `settle` when the
partition's watermark reaches `next_due(state)`, and forwards the rows each
`Step` returns to the results topic.

Status is a function of the event times and the watermark only, so replaying a
log gives the same final rows as processing it live:

- both events, handling <= threshold              -> on_time
- both events, handling > threshold               -> late
- accepted only, watermark past accepted+threshold -> overdue (written at the deadline)
- accepted only, watermark past accepted+horizon   -> never_ready
- queue-ready only, watermark past ready+grace     -> orphan (separate row kind)

Late data keeps its verdicts: a state is kept (for the orphan grace and for
duplicates) from the later of its event time and the watermark when it was
first seen (`sw`), so an MTA backfilling yesterday joins its two events as if
they had come on time, instead of the first one expiring on arrival.

Timestamps the runtime does not trust (an MTA clock far ahead, or an event
older than the never-ready horizon) are marked on the state (`cs` bits); the
row says so in `clock_suspect` ('ahead' when an untrusted timestamp decides
the verdict, 'behind' when the event came later than the horizon).

Each emitted message row carries `rev`, which grows whenever what the row says
changes. A duplicate input re-emits the current row with the same `rev`, so a
row lost in a crash between the changelog write and the results write is
written again when the event is re-processed; the sink ignores revs it has.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from pipeline.core.events import Accepted, QueueReady

State = dict[str, Any]
DELAYED = ("overdue", "late", "never_ready")
# `cs` bits: which event's timestamp was not trusted, and how
ACC_AHEAD, READY_AHEAD, ACC_BEHIND, READY_BEHIND = 1, 2, 4, 8
SUSPECT_BITS = {("accepted", "ahead"): ACC_AHEAD, ("ready", "ahead"): READY_AHEAD,
                ("accepted", "behind"): ACC_BEHIND, ("ready", "behind"): READY_BEHIND}


@dataclass(frozen=True)
class JoinPolicy:
    threshold_ms: Mapping[str, int]
    never_ready_ms: int
    orphan_grace_ms: int
    retention_ms: int


@dataclass
class Step:
    """What one call decided: the new state (None = delete it) and rows to emit."""

    state: State | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def _count(step: Step, name: str) -> None:
    step.counters[name] = step.counters.get(name, 0) + 1


def status_of(state: State, wm: int | None, policy: JoinPolicy) -> str | None:
    """The message status the state implies at watermark `wm` (None = no verdict yet)."""
    a, r = state.get("a"), state.get("r")
    if a is None:
        return None
    acc, cls = a[0], a[2]
    horizon = acc + policy.never_ready_ms
    if r is not None and r <= horizon:
        return "on_time" if r - acc <= policy.threshold_ms[cls] else "late"
    seen = state.get("sig")
    if seen is not None and seen[0] in ("overdue", "never_ready"):
        # that verdict was given at a watermark past its deadline; the one a restart reads back may
        # be older (replay mode persists none): never step behind it, or the next due time is lost
        floor = horizon + 1 if seen[0] == "never_ready" else acc + policy.threshold_ms[cls] + 1
        wm = floor if wm is None or wm < floor else wm
    if wm is None:
        return None
    if wm > horizon:
        return "never_ready"
    if wm > acc + policy.threshold_ms[cls]:
        return "overdue"
    return None


def is_pending(state: State, policy: JoinPolicy, wm: int | None) -> bool:
    """Accepted, not yet ready, not yet given up on: mail in flight."""
    return state.get("a") is not None and status_of(state, wm, policy) in (None, "overdue")


def clock_suspect(state: State, status: str) -> str:
    """'ahead' when an untrusted future timestamp decides this verdict, 'behind' when an event
    came later than the never-ready horizon, else ''."""
    bits = state.get("cs", 0)
    if not bits:
        return ""
    if bits & ACC_AHEAD or (bits & READY_AHEAD and status in ("on_time", "late")):
        return "ahead"
    return "behind" if bits & (ACC_BEHIND | READY_BEHIND) else ""


def _since(state: State, t: int) -> int:
    """`t`, or the watermark when the state was first seen if later (late data)."""
    sw = state.get("sw")
    return t if sw is None or sw < t else sw


def message_row(state: State, status: str, policy: JoinPolicy) -> dict[str, Any]:
    acc, account, cls, priority, source, mta = state["a"][:6]
    client_error = state["a"][6] if len(state["a"]) > 6 else ""  # states written before 0.2 have 6
    r = state.get("r")
    deadline = acc + policy.threshold_ms[cls]
    completed = status in ("on_time", "late")
    handling = max(0, r - acc) if completed else None
    return {
        "k": "m",
        "message_id": state["id"],
        "account_id": account,
        "message_class": cls,
        "priority": priority,
        "source": source,
        "mta": mta,
        "client_error": client_error,
        "accepted_at": acc,
        "ready_at": r if completed else None,
        "handling_ms": handling,
        "status": status,
        "verdict_at": min(r, deadline) if completed else deadline,
        "clock_skew": bool(completed and r < acc),
        "clock_suspect": clock_suspect(state, status),
        "rev": state["rev"],
    }


def orphan_row(state: State) -> dict[str, Any]:
    return {
        "k": "o",
        "message_id": state["id"],
        "ready_at": state["r"],
        "first_seen": state["fs"],
        "resolved": state["os"] == "resolved",
        "rev": state["orev"],
    }


def _expire_at(state: State, policy: JoinPolicy) -> int | None:
    a, r = state.get("a"), state.get("r")
    if a is None:
        return _since(state, r) + policy.orphan_grace_ms + policy.retention_ms if state.get("os") else None
    horizon = a[0] + policy.never_ready_ms
    final_at = r if r is not None and r <= horizon else horizon
    return _since(state, final_at) + policy.retention_ms


def expire_at(state: State, policy: JoinPolicy) -> int | None:
    """The watermark at which a state that has its verdict is dropped (None: not before it is
    settled); the runtime keeps a finished message's fingerprint until then (`pipeline.core.dedup`)."""
    return _expire_at(state, policy)


def is_finished(state: State, policy: JoinPolicy, wm: int | None) -> bool:
    """Both events joined (`on_time` / `late`), no open orphan row: nothing but an identical or
    conflicting duplicate can change what it says."""
    return status_of(state, wm, policy) in ("on_time", "late") and state.get("os") != "open"


def earlier_dues(state: State, policy: JoinPolicy) -> list[int]:
    """Every due time `next_due` may have given this state before it finished (deadline,
    never-ready horizon, orphan grace, orphan expiry): where stale schedule entries can be."""
    a, r = state.get("a"), state.get("r")
    dues = []
    if a is not None:
        dues += [a[0] + policy.threshold_ms[a[2]] + 1, a[0] + policy.never_ready_ms + 1]
    if r is not None:
        since = _since(state, r) + policy.orphan_grace_ms
        dues += [since + 1, since + policy.retention_ms]
    return dues


def next_due(state: State, policy: JoinPolicy, wm: int | None) -> int | None:
    """The smallest watermark at which `settle` would change this state."""
    a, r = state.get("a"), state.get("r")
    if a is None:
        if state.get("os") is None:
            return _since(state, r) + policy.orphan_grace_ms + 1
        return _expire_at(state, policy)
    status = status_of(state, wm, policy)
    if status is None:
        return a[0] + policy.threshold_ms[a[2]] + 1
    if status == "overdue":
        return a[0] + policy.never_ready_ms + 1
    return _expire_at(state, policy)


def _finish(step: Step, wm: int | None, policy: JoinPolicy, reemit: bool) -> Step:
    """Derive status, emit what changed, drop the state once it has expired."""
    state = step.state
    assert state is not None
    a = state.get("a")
    if a is None and state.get("os") is None and wm is not None and wm > _since(state, state["r"]) + policy.orphan_grace_ms:
        state["os"], state["orev"] = "open", state.get("orev", 0) + 1
        step.rows.append(orphan_row(state))
        _count(step, "orphans")
    if a is not None and state.get("os") == "open":
        state["os"], state["orev"] = "resolved", state["orev"] + 1
        step.rows.append(orphan_row(state))
        _count(step, "orphans_resolved")
    status = status_of(state, wm, policy)
    if status is not None:
        sig = [status, a[0], state.get("r") if status in ("on_time", "late") else None]
        if state.get("cs"):
            sig.append(clock_suspect(state, status))
        if sig != state.get("sig"):
            if state.get("sig") is None or state["sig"][0] != status:
                _count(step, f"verdict_{status}")
            state["sig"], state["rev"] = sig, state.get("rev", 0) + 1
            row = message_row(state, status, policy)
            step.rows.append(row)
            if row["clock_skew"]:
                _count(step, "clock_skew")
        elif reemit:
            step.rows.append(message_row(state, status, policy))
    expire = _expire_at(state, policy)
    if expire is not None and wm is not None and wm >= expire and status != "overdue":
        step.state = None
    return step


def _new(message_id: str, wm: int | None) -> State:
    state: State = {"id": message_id, "a": None, "r": None}
    if wm is not None:
        state["sw"] = wm
    return state


def _mark(state: State, event: str, suspect: str) -> None:
    if suspect:
        state["cs"] = state.get("cs", 0) | SUSPECT_BITS[(event, suspect)]


def on_accepted(state: State | None, ev: Accepted, wm: int | None, policy: JoinPolicy,
                suspect: str = "") -> Step:
    """An accepted event arrived (in any order relative to its queue-ready). `suspect` is
    'ahead' or 'behind' when the runtime does not trust its timestamp."""
    step = Step(state)
    fields = [ev.accepted_at, ev.account_id, ev.message_class, ev.priority, ev.source, ev.mta, ev.client_error]
    reemit = False
    if state is None:
        state = step.state = _new(ev.message_id, wm)
        state["a"] = fields
        _mark(state, "accepted", suspect)
    elif state.get("a") is None:
        state["a"] = fields
        _mark(state, "accepted", suspect)
    else:
        reemit = True
        _count(step, "duplicate_accepted")
        if ev.accepted_at != state["a"][0]:
            _count(step, "conflicting_accepted")
            if ev.accepted_at < state["a"][0]:
                state["a"][0] = ev.accepted_at
                _mark(state, "accepted", suspect)
    return _finish(step, wm, policy, reemit)


def on_ready(state: State | None, ev: QueueReady, wm: int | None, policy: JoinPolicy,
             wall_ms: int, suspect: str = "") -> Step:
    """A queue-ready event arrived; `wall_ms` is recorded as an orphan's first-seen time."""
    step = Step(state)
    reemit = False
    if state is None:
        state = step.state = _new(ev.message_id, wm)
        state["r"], state["fs"] = ev.ready_at, wall_ms
        _mark(state, "ready", suspect)
    elif state.get("r") is None:
        state["r"] = ev.ready_at
        _mark(state, "ready", suspect)
    else:
        reemit = True
        _count(step, "duplicate_ready")
        if ev.ready_at != state["r"]:
            _count(step, "conflicting_ready")
            if ev.ready_at < state["r"]:
                state["r"] = ev.ready_at
                _mark(state, "ready", suspect)
    return _finish(step, wm, policy, reemit)


def settle(state: State, wm: int, policy: JoinPolicy, reemit: bool = False) -> Step:
    """The watermark moved (deadline timer fired): emit overdue / never_ready / orphan, expire."""
    return _finish(Step(state), wm, policy, reemit)
