"""`mailsla generate`: realistic synthetic MTA traffic.

Handling times are lognormal per class (most mail in seconds, campaign mail in
minutes) with a small share of slow messages beyond the thresholds. Live mode
sends each accepted event now and its queue-ready event when it falls due on
the wall clock; `--out FILE` writes a JSONL file in simulated time instead.
"""
from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import dataclass
from typing import Iterator

import orjson

from pipeline.core.events import format_ts

MINUTE = 60_000


@dataclass(frozen=True)
class Incident:
    """From `start_ms` for `duration_ms` after the run starts, `share` of transactional mail
    takes `delay_ms` to 2 x `delay_ms`."""

    start_ms: int
    duration_ms: int
    share: float
    delay_ms: int


@dataclass(frozen=True)
class Stall:
    """From `start_ms` for `duration_ms`, no queue-ready at all: what would be ready then
    becomes ready when the stall ends."""

    start_ms: int
    duration_ms: int


@dataclass(frozen=True)
class Profile:
    transactional_share: float = 0.7
    accounts: int = 200
    slow_share: float = 0.004  # messages well past their class threshold
    incident: Incident | None = None
    stall: Stall | None = None


def _handling_ms(rng: random.Random, cls: str, p: Profile) -> int:
    if rng.random() < p.slow_share:
        return int(rng.uniform(31, 90) * MINUTE) if cls == "transactional" \
            else int(rng.uniform(12.2, 16) * 60 * MINUTE)
    if cls == "transactional":
        return int(rng.lognormvariate(math.log(2500), 1.0))  # median 2.5 s
    return int(rng.lognormvariate(math.log(4 * MINUTE), 1.1))  # median 4 min


def messages(rate: float, duration: float, seed: int, start_ms: int,
             p: Profile = Profile()) -> Iterator[tuple[int, dict, int, dict]]:
    """(accepted_ms, accepted_event, ready_ms, ready_event) in accepted order."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(p.accounts)]  # a few big senders, a long tail
    accounts = [f"acct-{i:04d}" for i in range(p.accounts)]
    n_total = int(rate * duration)
    for n in range(n_total):
        acc = start_ms + int(n * 1000 / rate)
        cls = "transactional" if rng.random() < p.transactional_share else "campaign"
        mid = f"g{seed}-{n:09d}"
        ready = acc + _handling_ms(rng, cls, p)
        inc, stall = p.incident, p.stall
        if inc and cls == "transactional" and inc.start_ms <= acc - start_ms < inc.start_ms + inc.duration_ms \
                and rng.random() < inc.share:
            ready = acc + int(rng.uniform(inc.delay_ms, 2 * inc.delay_ms))
        if stall and start_ms + stall.start_ms <= ready < start_ms + stall.start_ms + stall.duration_ms:
            ready = start_ms + stall.start_ms + stall.duration_ms + rng.randrange(5000)
        mta = f"mta-{rng.randrange(4)}"
        accepted = {"message_id": mid, "account_id": rng.choices(accounts, weights)[0],
                    "message_class": cls, "accepted_at": format_ts(acc),
                    "priority": "low" if rng.random() < 0.02 else "normal",
                    "source": "api" if rng.random() < 0.5 else "smtp", "mta": mta}
        yield acc, accepted, ready, {"message_id": mid, "ready_at": format_ts(ready), "mta": mta}


def simulated(rate: float, duration: float, seed: int, start_ms: int,
              profile: Profile = Profile()) -> Iterator[tuple[str, dict]]:
    """Events in event-time order: ('accepted'|'ready', event)."""
    due: list[tuple[int, int, dict]] = []
    seq = 0
    for acc, a, ready, r in messages(rate, duration, seed, start_ms, profile):
        while due and due[0][0] <= acc:
            yield "ready", heapq.heappop(due)[2]
        yield "accepted", a
        seq += 1
        heapq.heappush(due, (ready, seq, r))
    while due:
        yield "ready", heapq.heappop(due)[2]


def to_jsonl(events: Iterator[tuple[str, dict]]) -> Iterator[bytes]:
    for _, ev in events:
        yield orjson.dumps(ev) + b"\n"


def live(rate: float, duration: float, seed: int, profile: Profile = Profile()) -> Iterator[tuple[str, dict]]:
    """Events paced by the wall clock; queue-ready events not yet due at the end stay unsent."""
    start = int(time.time() * 1000)
    end = start + int(duration * 1000)
    due: list[tuple[int, int, dict]] = []
    seq = 0
    for acc, a, ready, r in messages(rate, duration, seed, start, profile):
        while True:
            now = int(time.time() * 1000)
            while due and due[0][0] <= now:
                yield "ready", heapq.heappop(due)[2]
            if acc <= now:
                break
            time.sleep(min((acc - now) / 1000, 0.05))
        yield "accepted", a
        seq += 1
        heapq.heappush(due, (ready, seq, r))
    while due and due[0][0] <= end:
        now = int(time.time() * 1000)
        if due[0][0] <= now:
            yield "ready", heapq.heappop(due)[2]
        else:
            time.sleep(min((due[0][0] - now) / 1000, 0.05))
