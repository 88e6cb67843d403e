"""Semi-critical fault detection and burn-rate alerts: a pure core.

Takes the policy, the event-time clock (`now_ms`, a minute boundary) and
counts of verdicts, and returns decisions; it imports neither Kafka nor
ClickHouse. Verdicts are counted by the minute their verdict became known
(`verdict_at`), so a stuck queue counts as delayed at its deadlines.
The state (`FaultState`) is plain data so the caller can persist it: a
restart continues the same fault instead of opening another.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator

from pipeline.core.policy import Policy

MINUTE = 60_000


@dataclass
class Verdicts:
    """Delayed and eligible verdicts per minute of verdict time (one class)."""

    minutes: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, verdict_ms: int, delayed: int, eligible: int) -> None:
        cell = self.minutes[verdict_ms // MINUTE * MINUTE]
        cell[0] += delayed
        cell[1] += eligible

    def window(self, now_ms: int, length_ms: int) -> tuple[int, int]:
        """(delayed, eligible) with verdict time in [now - length, now)."""
        lo = now_ms - length_ms
        d = e = 0
        for m, (dd, ee) in self.minutes.items():
            if lo <= m < now_ms:
                d += dd
                e += ee
        return d, e

    def forget_before(self, ms: int) -> None:
        for m in [m for m in self.minutes if m < ms]:
            del self.minutes[m]


@dataclass
class FaultState:
    opened_at: int | None = None
    peak_share: float = 0.0
    delayed: int = 0
    eligible: int = 0
    ok_since: int | None = None


@dataclass(frozen=True)
class FaultEvent:
    kind: str  # "semi_critical"
    event: str  # "opened" | "updated" | "resolved"
    message_class: str
    at: int
    opened_at: int
    peak_share: float
    delayed: int
    eligible: int
    resolved_at: int | None = None


def evaluate(policy: Policy, cls: str, state: FaultState, now_ms: int, delayed: int,
             eligible: int) -> list[FaultEvent]:
    """One evaluation (every minute of event time) of the fault rule for one class."""
    share = delayed / eligible if eligible else 0.0
    breach = eligible >= policy.fault_min_volume and share > policy.fault_share

    def ev(name: str, resolved: int | None = None) -> FaultEvent:
        return FaultEvent("semi_critical", name, cls, now_ms, state.opened_at or now_ms, state.peak_share,
                          state.delayed, state.eligible, resolved)

    if state.opened_at is None:
        if not breach:
            return []
        state.opened_at, state.peak_share, state.delayed, state.eligible = now_ms, share, delayed, eligible
        state.ok_since = None
        return [ev("opened")]
    if breach:
        state.ok_since = None
        if share > state.peak_share:
            state.peak_share, state.delayed, state.eligible = share, delayed, eligible
            return [ev("updated")]
        return []
    if state.ok_since is None:
        state.ok_since = now_ms
    if now_ms - state.ok_since >= policy.fault_hold_ms:
        out = [ev("resolved", now_ms)]
        state.opened_at, state.peak_share, state.delayed, state.eligible, state.ok_since = None, 0.0, 0, 0, None
        return out
    return []


def burn_rates(policy: Policy, verdicts: Verdicts, now_ms: int) -> list[dict[str, object]]:
    """Each tier with its long and short burn rates and whether it fires (both above the factor)."""
    out = []
    for t in policy.burn_tiers:
        rates = []
        for length in (t.long_ms, t.short_ms):
            d, e = verdicts.window(now_ms, length)
            rates.append((d / e) / policy.error_budget if e else 0.0)
        out.append({"severity": t.severity, "factor": t.factor, "long_ms": t.long_ms, "short_ms": t.short_ms,
                    "burn_long": rates[0], "burn_short": rates[1],
                    "firing": rates[0] > t.factor and rates[1] > t.factor})
    return out


class _Prefix:
    """Prefix sums of a per-minute (delayed, eligible) series: any window's counts in O(1)."""

    def __init__(self, series: list[tuple[int, int, int]], extra_minutes: int = 1) -> None:
        by_minute = {m: (d, e) for m, d, e in series}
        self.first = min(by_minute)
        self.n = (max(by_minute) - self.first) // MINUTE + 1 + extra_minutes
        self.d, self.e = [0] * (self.n + 1), [0] * (self.n + 1)
        for i in range(self.n):
            d, e = by_minute.get(self.first + i * MINUTE, (0, 0))
            self.d[i + 1], self.e[i + 1] = self.d[i] + d, self.e[i] + e

    def window(self, now: int, length: int) -> tuple[int, int]:
        """(delayed, eligible) with verdict minute in [now - length, now)."""
        lo = min(self.n, max(0, (now - length - self.first) // MINUTE))
        hi = min(self.n, max(0, (now - self.first) // MINUTE))
        return self.d[hi] - self.d[lo], self.e[hi] - self.e[lo]

    def minutes(self) -> Iterator[int]:
        """Evaluation times: each minute boundary after the first verdict minute."""
        return (self.first + i * MINUTE for i in range(1, self.n + 1))


def burn_alerts(policy: Policy, cls: str, series: list[tuple[int, int, int]],
                start: int | None = None) -> list[dict[str, object]]:
    """Multi-window burn-rate alerts, evaluated every minute of event time like `detect`.

    A tier fires while both its long and its short window burn the error budget faster than
    its factor (burn = delayed share / (1 - objective)); the alert opens at the first such
    minute and resolves at the first minute it stops (no hold: the short window is the
    reset). `peak_share` is the highest long-window delayed share seen while open. With
    `start`, evaluations begin there (see `settled_before`).
    """
    if not series:
        return []
    pre, budget, alerts = _Prefix(series), policy.error_budget, []
    for tier in policy.burn_tiers:
        current: dict[str, object] | None = None
        for now in pre.minutes():
            if start is not None and now < start:
                continue
            (dl, el), (ds, es) = pre.window(now, tier.long_ms), pre.window(now, tier.short_ms)
            burn_long = dl / el / budget if el else 0.0
            burn_short = ds / es / budget if es else 0.0
            firing = burn_long > tier.factor and burn_short > tier.factor
            if firing and current is None:
                current = {"kind": "burn_rate", "severity": tier.severity, "message_class": cls, "opened_at": now,
                           "resolved_at": None, "peak_share": dl / el, "delayed": dl, "eligible": el,
                           "factor": tier.factor, "long_ms": tier.long_ms, "short_ms": tier.short_ms}
                alerts.append(current)
            elif firing and current is not None and dl / el > float(current["peak_share"]):  # type: ignore[arg-type]
                current.update(peak_share=dl / el, delayed=dl, eligible=el)
            elif not firing and current is not None:
                current["resolved_at"], current = now, None
    return alerts


def fault_id(f: dict[str, object]) -> str:
    """Stable identity of a fault or alert: the same verdicts give the same id after a restart."""
    return f"{f['kind']}:{f['message_class']}:{f.get('severity', 'semi_critical')}:{f.get('factor', '')}:{f['opened_at']}"


def changes(stored: dict[str, dict[str, object]], found: list[dict[str, object]]) -> list[tuple[str, dict[str, object]]]:
    """What to announce: (`opened` | `updated` | `resolved`, fault) for every difference between
    the faults already announced (`stored`, by id) and those found now. A fault found again
    unchanged announces nothing, so a restart never re-opens or duplicates one.

    A fault or alert not announced yet that is already resolved opened and resolved within one
    evaluation round (the monitor's rounds run only once the pipeline has caught up): it is not
    announced at all, not to the table, the topic or the webhook. So replaying old data into a live
    worker pages no one for incidents long over; `mailsla faults` still lists them."""
    out: list[tuple[str, dict[str, object]]] = []
    for f in found:
        old = stored.get(fault_id(f))
        if old is None:
            if f["resolved_at"] is None:
                out.append(("opened", f))
            continue
        if float(f["peak_share"]) > float(old["peak_share"]) + 1e-12:  # type: ignore[arg-type]
            out.append(("updated", f))
        if f["resolved_at"] is not None and old.get("resolved_at") is None:
            out.append(("resolved", f))
    return out


def detect(policy: Policy, cls: str, series: list[tuple[int, int, int]],
           start: int | None = None) -> list[dict[str, object]]:
    """Run the fault rule every minute of event time over a class's verdict series.

    `series` holds (minute_ms, delayed, eligible) by minute of verdict time. Evaluations run at
    each minute boundary from the first verdict to one minute after the last, over the
    trailing window. Returns one record per fault, `resolved_at` None while it is open.
    Deterministic: the same verdicts always give the same faults (replay = live). With `start`,
    evaluations begin there with no fault open (see `settled_before`).
    """
    if not series:
        return []
    pre, window = _Prefix(series), policy.fault_window_ms[cls]
    state, faults, current = FaultState(), [], None
    for now in pre.minutes():
        if start is not None and now < start:
            continue
        delayed, eligible = pre.window(now, window)
        for ev in evaluate(policy, cls, state, now, delayed, eligible):
            if ev.event == "opened":
                current = {"kind": ev.kind, "severity": "semi_critical", "message_class": cls, "opened_at": ev.opened_at,
                           "resolved_at": None, "peak_share": ev.peak_share, "delayed": ev.delayed,
                           "eligible": ev.eligible}
                faults.append(current)
            elif current is not None:
                current.update(peak_share=ev.peak_share, delayed=ev.delayed, eligible=ev.eligible)
                if ev.event == "resolved":
                    current["resolved_at"], current = ev.resolved_at, None
    return faults


def lookback_ms(policy: Policy) -> int:
    """The longest window any rule reads: evaluations from a minute S need verdicts from S minus this."""
    return max([*policy.fault_window_ms.values(), *(t.long_ms for t in policy.burn_tiers)])


def settled_before(found: list[dict[str, object]], at_ms: int) -> int:
    """The latest minute S <= `at_ms` that every fault and alert in `found` (a full evaluation)
    enters closed. The rules keep no memory while closed, so evaluating from S (`start=S`) over
    the verdicts from S - `lookback_ms` finds exactly the faults of the full evaluation opened at
    or after S: the live monitor then reads a bounded stretch of history, not all of it."""
    s = at_ms // MINUTE * MINUTE
    moved = True
    while moved:
        moved = False
        for f in found:
            opened, resolved = int(f["opened_at"]), f["resolved_at"]  # type: ignore[call-overload]
            if opened < s and (resolved is None or s <= int(resolved)):  # type: ignore[call-overload]
                s, moved = opened, True
    return s
