"""Live fault announcements: the `faults` table, the mailsla.faults topic and a webhook.

Runs inside the sink process (it owns the ClickHouse connection), every
`interval` seconds: reads the eligible verdicts per minute, runs the pure fault
rule and burn-rate tiers (`pipeline.core.faults`), and announces what changed since
the last announcement (`opened`, `updated` with the new peak, `resolved`), once
the pipeline has caught up with its inputs. A fault that opened and resolved
within one round (a replay of old data) is not announced (`faults.changes`). The first round reads the whole
history; later rounds start at a minute where nothing was open, at least
`RECHECK_MS` (or the never-ready horizon) before the newest verdict, and read
back from there only the longest rule window: the same faults, bounded work.
`mailsla faults` always evaluates the whole history. The
announced state is the `faults` table itself, read back at start, so a restart
never re-opens or duplicates a fault. The webhook is POSTed from a bounded
queue with retries and backoff; a slow or dead webhook never blocks the sink.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import orjson
from mode import Service

from pipeline.core import availability
from pipeline.core import faults as fault_core
from pipeline.core.config import Settings
from pipeline.core.errors import first_line
from pipeline.store.reports import fault_series_sql, find_faults, public
from pipeline.store.clickhouse import Store
from pipeline.stream.kafka import producer
from pipeline.live.snapshot import event_now, oldest_pending_age
from pipeline.stream.status import lags, live_snapshots

log = logging.getLogger("mailsla.faults")
STORED_SQL = """SELECT fault_id, peak_share, toUnixTimestamp64Milli(resolved_at) FROM {db}.faults FINAL"""
RECHECK_MS = 24 * 3_600_000  # at least: verdicts can still arrive this late (never_ready horizon if longer)
OPEN_PENDING_SQL = """SELECT message_class, toUnixTimestamp64Milli(opened_at), peak_share FROM {db}.faults FINAL
WHERE kind = 'oldest_pending' AND resolved_at IS NULL"""


class FaultMonitor(Service):
    def __init__(self, settings: Settings, store: Store, interval: float = 5.0,
                 horizon: Callable[[], int | None] = lambda: None, max_lag: int = 1000, **kwargs: Any) -> None:
        self.settings = settings
        self.horizon = horizon
        self.max_lag = max_lag
        self.store = store
        self.interval = interval
        self.stored: dict[str, dict[str, Any]] | None = None
        self.settled: int | None = None  # a minute every fault enters closed: evaluations start there
        self.open_pending: dict[str, dict[str, Any]] | None = None
        self.critical_settled: int | None = None  # epoch second the critical rule starts at (None: all)
        self.webhook_queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        self.producer: Any = None
        self.rounds = 0  # rounds that evaluated (the sink's status file says it: drills wait for rounds)
        self.skipped = 0  # rounds skipped while the join or the sink was behind
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.producer = producer(self.settings, acks="all")
        await self.producer.start()

    async def on_stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    @Service.task
    async def _evaluate(self) -> None:
        while not self.should_stop:
            try:
                await self.evaluate_once()
            except Exception as exc:  # noqa: BLE001 - try again next round; nothing is lost
                log.warning("fault evaluation failed: %s", first_line(exc, 200))
            await self.sleep(self.interval)

    async def caught_up(self) -> bool:
        """Announce only from (nearly) complete data: while the join is far behind its inputs
        (a replay, a restart catching up) the verdicts in ClickHouse are partial, and a fault
        seen in partial data may not exist in the whole. The round is skipped, not lost."""
        behind, unwritten = await lags(self.settings)
        return behind <= self.max_lag and unwritten <= self.max_lag

    async def evaluate_once(self) -> list[tuple[str, dict[str, Any]]]:
        """One round: detect, diff with what was announced, announce the changes."""
        db = self.settings.database
        if not await self.caught_up():
            self.skipped += 1
            return []
        if self.stored is None:
            _, rows = await asyncio.to_thread(self.store.query, STORED_SQL.format(db=db))
            self.stored = {fid: {"peak_share": peak, "resolved_at": res} for fid, peak, res in rows}
        policy = self.settings.policy
        assert policy is not None
        since = 0 if self.settled is None else self.settled - fault_core.lookback_ms(policy)
        _, rows = await asyncio.to_thread(self.store.query, fault_series_sql(db, since))
        horizon = self.horizon()
        if horizon is not None:  # only minutes every partition has finished
            rows = [r for r in rows if int(r[1]) + fault_core.MINUTE <= horizon]
        found = find_faults(policy, list(rows), self.settled)
        if rows:  # verdicts older than the recheck span no longer change what is announced
            recheck = max(RECHECK_MS, self.settings.never_ready_ms)
            settled = fault_core.settled_before(found, max(int(r[1]) for r in rows) - recheck)
            self.settled = max(settled, self.settled or settled)
        changes = fault_core.changes(self.stored, found)
        changes += fault_core.changes(self.stored, await self.critical())
        changes += await self.oldest_pending()
        if changes:
            await self.announce(changes)
        self.rounds += 1
        return changes

    async def critical(self) -> list[dict[str, Any]]:
        """Critical faults (issue #12) from the stored attempts and probe checks: the pure rule in
        pipeline.core.availability. The first round reads the whole history; later rounds start at a
        second where no channel fault was open and no outage was running, at least RECHECK_MS
        before the newest event (attempts of a replay may still arrive that late)."""
        from pipeline.stream.kafka import group_lag

        policy = self.settings.policy
        assert policy is not None
        s = self.settings
        # attempts arrive in any order (a replay is shuffled): a second looks unavailable until its
        # last attempt is in, so announce only from complete input (the round is skipped, not lost)
        if await group_lag(s, s.group_sink, [s.topic_injections, s.topic_probes]) > 0:
            return []
        db, since = s.database, self.critical_settled or 0

        def query(sql: str) -> tuple[list[str], list[Any]]:
            return self.store.query(sql)

        _, rows = await asyncio.to_thread(query, availability.now_sql(db))
        now_ms = int(rows[0][0]) if rows else 0
        if now_ms == 0:
            return []
        found = await asyncio.to_thread(availability.critical_faults, query, db, policy, since, now_ms)
        _, rows = await asyncio.to_thread(query, availability.outages_sql(db, since))
        outages: dict[str, list[tuple[int, int]]] = {}
        for c, first, last in rows:
            outages.setdefault(str(c), []).append((int(first), int(last)))
        channel_found = [f for f in found if str(f["message_class"]).startswith("channel:")]
        settled = availability.settled_before(channel_found, outages, (now_ms - RECHECK_MS) // 1000, policy)
        self.critical_settled = max(settled, since)
        return found

    async def oldest_pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Alert while the oldest message still waiting (per the policy's classes, campaign by
        default) is older than its limit, in event time. State-based, unlike the rules above: it
        reads the live join workers' status and remembers the open alert in the faults table."""
        policy = self.settings.policy
        assert policy is not None
        workers = live_snapshots(self.settings)
        now = event_now(workers)
        if not policy.oldest_pending_ms or now is None:
            return []
        if self.open_pending is None:
            _, rows = await asyncio.to_thread(self.store.query, OPEN_PENDING_SQL.format(db=self.settings.database))
            self.open_pending = {c: {"kind": "oldest_pending", "severity": "ticket", "message_class": c,
                                     "opened_at": int(o), "resolved_at": None, "peak_share": float(p),
                                     "delayed": 0, "eligible": 0} for c, o, p in rows}
        ages, out = oldest_pending_age(workers, now), []
        for cls, limit in policy.oldest_pending_ms.items():
            age, alert = ages.get(cls), self.open_pending.get(cls)
            if age is not None and age > limit and alert is None:
                alert = {"kind": "oldest_pending", "severity": "ticket", "message_class": cls, "opened_at": now,
                         "resolved_at": None, "peak_share": age / limit, "delayed": 0, "eligible": 0,
                         "age_ms": age, "limit_ms": limit}
                self.open_pending[cls] = alert
                out.append(("opened", alert))
            elif alert is not None and (age is None or age <= limit):
                alert = {**alert, "resolved_at": now}
                del self.open_pending[cls]
                out.append(("resolved", alert))
        return out

    async def announce(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Table first (the record of what was announced), then the topic and the webhook."""
        version = int(time.time() * 1000)
        rows = []
        for i, (event, f) in enumerate(changes):
            rows.append({"k": "fault", "fault_id": fault_core.fault_id(f), "kind": f["kind"],
                         "severity": f.get("severity", "semi_critical"), "message_class": f["message_class"],
                         "opened_at": int(f["opened_at"]), "resolved_at": f["resolved_at"],
                         "peak_share": float(f["peak_share"]), "delayed": int(f["delayed"]),
                         "eligible": int(f["eligible"]), "last_event": event, "version": version + i})
        await asyncio.to_thread(self.store.write, rows)
        for event, f in changes:
            fid = fault_core.fault_id(f)
            assert self.stored is not None
            body = orjson.dumps({"event": event, "fault_id": fid, **public(f),
                                 **availability.response(self.settings.policy, f)})  # type: ignore[arg-type]
            await self.producer.send_and_wait(self.settings.topic_faults, body, key=fid.encode())
            # announced only once it is on the topic: a failed send is announced again next round
            self.stored[fid] = {"peak_share": f["peak_share"], "resolved_at": f["resolved_at"]}
            log.warning("fault %s: %s", event, body.decode())
            if self.settings.webhook_url:
                if self.webhook_queue.full():
                    self.webhook_queue.get_nowait()  # keep the newest; the topic has them all
                    log.warning("webhook queue full: dropped the oldest fault event (still on the topic)")
                self.webhook_queue.put_nowait(body)

    @Service.task
    async def _webhook(self) -> None:
        """POST each fault event; retry with backoff (up to 10 tries), never block evaluation."""
        import aiohttp

        if not self.settings.webhook_url:
            return
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            while not self.should_stop:
                body = await self.webhook_queue.get()
                delay = 1.0
                for attempt in range(10):
                    try:
                        async with session.post(self.settings.webhook_url, data=body,
                                                headers={"Content-Type": "application/json"}) as resp:
                            if resp.status < 300:
                                break
                            reason = f"HTTP {resp.status}"
                    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                        reason = type(exc).__name__  # never the URL: it may carry a token
                    log.warning("webhook POST failed (%s), try %d; retrying in %.0fs", reason, attempt + 1, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
