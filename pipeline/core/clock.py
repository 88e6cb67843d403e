"""Which event timestamps may move event time: the trust rule for MTA clocks.

Runs in the join runtime for every input event, before the watermark sees it.
One MTA with a wrong clock (a failed NTP sync, a restored VM, a test box
pointed at production) must not move anyone's event time, so a timestamp is
kept out of the watermark when it is:

- **ahead**: in live mode (wall clock on) more than `clock.ahead` (policy, 10 min)
  past the wall clock; in replay mode more than `clock.ahead_replay` (policy,
  72 h: the never-ready horizon) past the newest timestamp trusted so far;
- **behind**: older than the never-ready horizon behind the partition's
  watermark. Such an event cannot move event time anyway (it only ever moves
  forward); it is flagged so the late arrival is visible.

Nothing is dropped: the event still joins its message, whose row carries
`clock_suspect`. Counts per MTA go to `status`, `/metrics` and the page; a log
line per MTA at most once a minute. Pure: no Kafka, no ClickHouse.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

log = logging.getLogger("mailsla.clock")
MAX_MTAS = 1000  # distinct MTA names counted; the rest are counted under "(other)"
LOG_EVERY_S = 60.0


@dataclass
class ClockTrust:
    ahead_ms: int  # live: tolerance past the wall clock
    ahead_replay_ms: int  # replay: tolerance past the newest trusted timestamp
    behind_ms: int  # the never-ready horizon
    live: bool
    trusted_max: int | None = None  # newest trusted timestamp this worker has seen
    by_mta: Counter[tuple[str, str]] = field(default_factory=Counter)
    logged_at: dict[str, float] = field(default_factory=dict)

    def judge(self, ts: int, wall: float, wm: int | None, mta: str, stream: str) -> str:
        """'' (trusted: may move event time), 'ahead' or 'behind' (kept out, counted, logged)."""
        if self.live:
            limit: int | None = int(wall * 1000) + self.ahead_ms
        else:
            limit = None if self.trusted_max is None else self.trusted_max + self.ahead_replay_ms
        if limit is not None and ts > limit:
            return self._suspect("ahead", ts, wall, mta, stream)
        if wm is not None and ts < wm - self.behind_ms:
            return self._suspect("behind", ts, wall, mta, stream)
        if self.trusted_max is None or ts > self.trusted_max:
            self.trusted_max = ts
        return ""

    def seen(self, ts: int | None) -> None:
        """A timestamp trusted before a restart (the persisted watermark state)."""
        if ts is not None and (self.trusted_max is None or ts > self.trusted_max):
            self.trusted_max = ts

    def _suspect(self, kind: str, ts: int, wall: float, mta: str, stream: str) -> str:
        name = mta or "(unnamed)"
        if (name, kind) not in self.by_mta and len({m for m, _ in self.by_mta}) >= MAX_MTAS:
            name = "(other)"
        self.by_mta[(name, kind)] += 1
        last = self.logged_at.get(name)
        if last is None or wall - last >= LOG_EVERY_S:
            self.logged_at[name] = wall
            log.warning("MTA %s: %s timestamp %d ms is %s of event time; kept out of the watermark "
                        "(%d such events from it so far)", name, stream, ts, kind,
                        sum(n for (m, _), n in self.by_mta.items() if m == name))
        return kind

    def snapshot(self) -> dict[str, dict[str, int]]:
        """{mta: {"ahead": n, "behind": n}} for status, /metrics and the page."""
        out: dict[str, dict[str, int]] = {}
        for (mta, kind), n in sorted(self.by_mta.items()):
            out.setdefault(mta, {})[kind] = n
        return out
