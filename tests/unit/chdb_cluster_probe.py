"""Runs in a subprocess of tests/unit/test_cluster_ddl.py: chDB allows one engine per process.

    python chdb_cluster_probe.py parse STATEMENTS.json    -> formatQuery() of each statement
    python chdb_cluster_probe.py run single|cluster DIR  -> the sink's Store on a fresh database:
        migrate, write the same result rows in batches (with re-deliveries), rebuild the aggregates,
        then print the columns of every table and view and what the analysts' views show.

`cluster` runs the cluster DDL on a one-shard cluster defined in a chDB config file: the
Distributed tables, the local tables, the views on them and the sink's code paths are the
production ones. Two things chDB cannot do are taken out by the client wrapper below: ON CLUSTER
(needs the distributed DDL queue in Keeper) and the Replicated engines (need Keeper), which run
as their non-replicated twins.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

CLUSTER = "mailsla_test"
DB = "mailsla"
CONFIG = f"""<clickhouse>
  <tcp_port>9000</tcp_port>
  <remote_servers>
    <{CLUSTER}>
      <shard><internal_replication>true</internal_replication>
        <replica><host>localhost</host><port>9000</port></replica></shard>
    </{CLUSTER}>
  </remote_servers>
  <macros><shard>01</shard><replica>r1</replica></macros>
</clickhouse>
"""
_ON_CLUSTER = re.compile(r" ON CLUSTER '[^']*'")
_REPLICATED = re.compile(r"Replicated(\w*MergeTree)\('[^']*', '[^']*'(?:, )?")


def without_keeper(sql: str) -> str:
    """The statement as one node without Keeper can run it."""
    return _REPLICATED.sub(r"\1(", _ON_CLUSTER.sub("", sql))


class KeeperlessClient:
    """clickhouse-connect client that rewrites DDL as `without_keeper`; logs every statement."""

    def __init__(self, client: Any) -> None:
        self.client, self.commands = client, []

    def command(self, sql: str, *args: Any, **kw: Any) -> Any:
        self.commands.append(sql)
        return self.client.command(without_keeper(sql), *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def parse(path: str) -> None:
    import chdb

    out = []
    for stmt in json.loads(Path(path).read_text()):
        quoted = stmt.replace("\\", "\\\\").replace("'", "\\'")
        try:
            out.append({"ok": str(chdb.query(f"SELECT formatQuery('{quoted}')", "TSVRaw")).strip()})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out.append({"error": str(exc).strip()[:500]})
    print(json.dumps(out))


MIN = 60_000
BASE = 1_791_158_400_000  # 2026-10-05T00:00:00Z
THRESHOLD = {"transactional": 30 * MIN, "campaign": 12 * 60 * MIN}


def message(i: int, rev: int) -> dict[str, Any]:
    cls = "transactional" if i % 2 == 0 else "campaign"
    accepted = BASE + i * 7 * MIN
    ready: int | None
    if i % 3 == 0 and rev == 1:  # no queue-ready yet: overdue at the deadline
        ready, status = None, "overdue"
    elif i % 3 == 0:  # then it arrives late
        ready, status = accepted + THRESHOLD[cls] + 5 * MIN, "late"
    else:
        ready, status = accepted + (i % 10) * MIN, "on_time"
    verdict = min(ready, accepted + THRESHOLD[cls]) if ready is not None else accepted + THRESHOLD[cls]
    return {"k": "m", "message_id": f"m{i:04d}", "account_id": f"acct{i % 4}", "message_class": cls,
            "priority": "low" if i % 11 == 0 else "normal", "source": "smtp", "mta": "mta1", "client_error": "",
            "accepted_at": accepted, "ready_at": ready, "handling_ms": None if ready is None else ready - accepted,
            "status": status, "verdict_at": verdict, "clock_skew": 0, "rev": rev}


def run(mode: str, workdir: str) -> None:
    import clickhouse_connect

    from pipeline.core.config import Settings
    from pipeline.store import clickhouse
    from pipeline.store.clickhouse import Store, maintenance_row, minute_of

    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=work, kafka="127.0.0.1:9", clickhouse=f"chdb://{work / 'ch'}", database=DB,
                        clickhouse_cluster=CLUSTER if mode == "cluster" else "")
    if mode == "cluster":
        (work / "config.xml").write_text(CONFIG)

        def connect(_: Settings) -> Any:
            return KeeperlessClient(clickhouse_connect.get_client(
                interface="chdb", path=str(work / "ch"), chdb_options={"config-file": str(work / "config.xml")},
                settings={"insert_distributed_sync": 1}))

        clickhouse.connect = connect  # type: ignore[assignment]
    store = Store(settings)
    store.migrate()
    store.migrate()  # idempotent: applied at every start

    n = 60
    first = [message(i, 1) for i in range(n)]
    second = [message(i, 2) for i in range(0, n, 3)]
    acct = [{"k": "acct", "account_id": "acct3", "first_send_at": BASE - 90 * 24 * 60 * MIN, "rate_limited": True,
             "updated_at": BASE, "version": 7}]
    window = [maintenance_row(BASE + 100 * MIN, BASE + 130 * MIN, "upgrade", "cli", version=1)]
    orphans = [{"k": "o", "message_id": f"x{i}", "ready_at": BASE + i * MIN, "first_seen": BASE + i * MIN,
                "resolved": False, "rev": 1} for i in range(5)]
    store.write(first[:25] + acct)
    store.write(first[20:] + window + orphans)  # rows 20-24 delivered twice
    store.write(second + first[:10])  # new revisions, and old ones again
    store.write(second)  # a whole batch re-delivered

    def rows(sql: str) -> list[list[Any]]:
        return [[str(v) for v in r] for r in store.query(sql)[1]]

    totals = (f"SELECT message_class, sum(messages), sum(within), sum(delayed) FROM {DB}.handling_minutely "
              f"GROUP BY ALL ORDER BY ALL")
    written = rows(totals)  # what the materialized views made of the batches
    store.rebuild(sorted({minute_of(r["verdict_at"]) for r in first + second}))  # the crash-recovery path
    out = {
        "totals_written": written,
        "totals_rebuilt": rows(totals),
        "totals_rows": rows(f"SELECT message_class, count(), countIf(status = 'on_time'), "
                            f"countIf(status != 'on_time') FROM {DB}.handling_times GROUP BY ALL ORDER BY ALL"),
        "commands": getattr(store.client, "commands", []),
        "tables": rows(f"SELECT name, engine FROM system.tables WHERE database = '{DB}' ORDER BY name"),
        "columns": rows(f"SELECT table, name, type, default_kind, default_expression FROM system.columns "
                        f"WHERE database = '{DB}' ORDER BY table, position"),
        "handling_times": rows(f"SELECT * FROM {DB}.handling_times ORDER BY message_id"),
        "sla_monthly": rows(f"SELECT * FROM {DB}.sla_monthly ORDER BY ALL"),
        "sla_monthly_by_account": rows(f"SELECT * FROM {DB}.sla_monthly_by_account ORDER BY ALL"),
        "minutely": rows(f"SELECT minute, message_class, sum(messages), sum(within), sum(delayed), "
                         f"round(quantilesTDigestMerge(0.5, 0.99)(latency)[1]) FROM {DB}.handling_minutely "
                         f"GROUP BY ALL HAVING sum(messages) != 0 ORDER BY ALL"),
        "minutely_account": rows(f"SELECT minute, message_class, account_id, sum(messages), sum(within), "
                                 f"sum(delayed) FROM {DB}.handling_minutely_account GROUP BY ALL "
                                 f"HAVING sum(messages) != 0 ORDER BY ALL"),
        "orphans": rows(f"SELECT * FROM {DB}.orphan_events ORDER BY ALL"),
        "journal_open": rows(f"SELECT count() FROM (SELECT batch_id FROM {DB}.sink_journal GROUP BY batch_id "
                             f"HAVING countIf(state = 'done') = 0)"),
    }
    store.close()
    print(json.dumps(out))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    if sys.argv[1] == "parse":
        parse(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3])
