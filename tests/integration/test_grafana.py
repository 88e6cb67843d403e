"""The Grafana provisioning and the mailsla dashboard: every panel's SQL runs against the real schema.

The panels' Grafana macros are expanded here the way the ClickHouse plugin expands them, and the
SQL runs in the embedded ClickHouse on a few known rows. chDB allows one engine per process and
other modules in this pytest process open one, so the queries run in a subprocess.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DS_UID = "mailsla-clickhouse"
DS_TYPE = "grafana-clickhouse-datasource"
INTERVAL_S = 60  # what $__interval_s stands for here (the panels' minimum interval is 1m)

MIN = 60_000
# data in the current month (the compliance panel filters on now()), at fixed minutes in it
MONTH0 = datetime.now(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
T0 = int((MONTH0 + timedelta(hours=3)).timestamp() * 1000)
M0, M1, OLD = T0, T0 + MIN, T0 - 120 * MIN  # verdict minutes; OLD is outside the panels' time range
RANGE = ((T0 - 60 * MIN) // 1000, (T0 + 60 * MIN) // 1000)  # the dashboard time range, unix seconds
LATE_MS = 7_200_000


def dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "dashboards" / "mailsla.json").read_text(encoding="utf-8"))


def panels() -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in dashboard()["panels"]}


def expand(sql: str, start: int, end: int, interval_s: int = INTERVAL_S) -> str:
    """The plugin's macros, as documented: $__timeFilter(col), $__timeInterval(col), $__fromTime,
    $__toTime, $__interval_s. Anything left starting with `$` is a macro we do not know."""
    sql = re.sub(r"\$__timeFilter\(\s*([^)]+?)\s*\)",
                 lambda m: f"{m[1]} >= toDateTime({start}) AND {m[1]} <= toDateTime({end})", sql)
    sql = re.sub(r"\$__timeInterval\(\s*([^)]+?)\s*\)",
                 lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {interval_s} second)", sql)
    sql = re.sub(r"\$__fromTime\b", f"toDateTime({start})", sql)
    sql = re.sub(r"\$__toTime\b", f"toDateTime({end})", sql)
    sql = re.sub(r"\$__interval_s\b", str(interval_s), sql)
    if "$" in sql:
        raise ValueError(f"unexpanded macro or variable in: {sql}")
    return sql


def msg(mid: str, account: str, verdict: int, late: bool = False, cls: str = "transactional",
        handling_ms: int = 1000) -> dict[str, Any]:
    handling = LATE_MS if late else handling_ms
    accepted = verdict - (30 * MIN if late else handling)
    return {"k": "m", "message_id": mid, "account_id": account, "message_class": cls, "priority": "normal",
            "source": "", "mta": "", "client_error": "", "accepted_at": accepted, "ready_at": accepted + handling,
            "handling_ms": handling, "status": "late" if late else "on_time", "verdict_at": verdict,
            "clock_skew": False, "rev": 1}


def fault(fid: str, opened: int, resolved: int | None, version: int, share: float = 0.2) -> dict[str, Any]:
    return {"k": "fault", "fault_id": fid, "kind": "semi_critical", "severity": "semi_critical",
            "message_class": "transactional", "opened_at": opened, "resolved_at": resolved, "peak_share": share,
            "delayed": 20, "eligible": 100, "last_event": "resolved" if resolved else "opened", "version": version}


ROWS = (
    [msg(f"acme-{i}", "acme", M0) for i in range(16)]
    + [msg(f"slow-{i}", "slowco", M0, late=True) for i in range(4)]
    + [msg("mid-0", "midco", M0, late=True)]
    + [msg(f"old-{i}", "oldco", OLD, late=True) for i in range(3)]  # delayed, but before the time range
    + [msg(f"camp-{i}", "acme", M1, cls="campaign", handling_ms=60_000) for i in range(10)]
    + [fault("open", T0 - 10 * MIN, None, 1, share=0.25),
       fault("closed", T0 - 50 * MIN, None, 1), fault("closed", T0 - 50 * MIN, T0 - 20 * MIN, 2)]
)

SCRIPT = r"""
import json, sys
from pipeline.core import config
from pipeline.store.clickhouse import Store

job = json.load(sys.stdin)
store = Store(config.load())
store.migrate()
store.write(job["rows"])
out = {}
for title, sql in job["queries"].items():
    try:
        cols, rows = store.query(sql)
        out[title] = {"columns": cols, "rows": [list(r) for r in rows]}
    except Exception as exc:
        out[title] = {"error": f"{type(exc).__name__}: {exc}"}
store.close()
print(json.dumps(out, default=str))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    queries = {title: expand(p["targets"][0]["rawSql"], *RANGE) for title, p in panels().items()}
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAILSLA_CLICKHOUSE", "MAILSLA_CLICKHOUSE_FILE", "MAILSLA_DATABASE")}
    env["MAILSLA_DATA"] = str(tmp_path_factory.mktemp("grafana"))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], input=json.dumps({"rows": ROWS, "queries": queries}),
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows_of(results: dict[str, dict[str, Any]], title: str) -> list[dict[str, Any]]:
    res = results[title]
    return [dict(zip(res["columns"], r)) for r in res["rows"]]


def test_the_dashboard_is_valid_and_every_panel_queries_the_provisioned_datasource() -> None:
    d = dashboard()
    assert d["uid"] == "mailsla" and d["title"] == "mailsla — handling time SLA"
    assert len(d["panels"]) == 6 and len({p["id"] for p in d["panels"]}) == 6  # 6th: availability (issue #12)
    for p in d["panels"]:
        assert p["datasource"] == {"type": DS_TYPE, "uid": DS_UID}, p["title"]
        assert len(p["targets"]) == 1, p["title"]
        t = p["targets"][0]
        assert t["datasource"]["uid"] == DS_UID and t["editorType"] == "sql" and t["rawSql"].strip(), p["title"]
        # the plugin's formats (sqlds): 0 = time series, 1 = table
        assert (t["queryType"], t["format"]) == (("timeseries", 0) if p["type"] == "timeseries" else ("table", 1))
        assert "mailsla." in t["rawSql"], p["title"]
    steps = next(o for o in panels()["SLA compliance this month"]["fieldConfig"]["overrides"]
                 if o["matcher"]["options"] == "compliance")["properties"]
    thresholds = next(s["value"] for s in steps if s["id"] == "thresholds")["steps"]
    assert thresholds == [{"color": "red", "value": None}, {"color": "green", "value": 0.99}]
    share = panels()["Delayed share by class"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert {"color": "red", "value": 0.1} in share


def test_the_provisioning_files_point_grafana_at_clickhouse_and_the_dashboards() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
    assert ds["apiVersion"] == 1
    [source] = ds["datasources"]
    assert (source["type"], source["uid"]) == (DS_TYPE, DS_UID)
    assert source["jsonData"] == {"host": "${CLICKHOUSE_HOST}", "port": 8123, "protocol": "http", "secure": False,
                                  "username": "${CLICKHOUSE_USER}", "defaultDatabase": "mailsla"}
    assert source["secureJsonData"] == {"password": "${CLICKHOUSE_PASSWORD}"}
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "mailsla.yaml").read_text())
    assert dash["apiVersion"] == 1
    [provider] = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_the_macro_expander_fills_in_the_time_range_and_refuses_unknown_macros() -> None:
    assert expand("WHERE $__timeFilter(minute) AND t < $__toTime", 10, 20) == \
        "WHERE minute >= toDateTime(10) AND minute <= toDateTime(20) AND t < toDateTime(20)"
    assert expand("$__timeInterval(minute)", 0, 1) == "toStartOfInterval(toDateTime(minute), INTERVAL 60 second)"
    with pytest.raises(ValueError):
        expand("WHERE $__timeFilter_ms(t)", 0, 1)


def test_every_panel_query_runs(results: dict[str, dict[str, Any]]) -> None:
    assert set(results) == set(panels())
    errors = {t: r["error"] for t, r in results.items() if "error" in r}
    assert not errors


def test_the_latency_panel_gives_quantiles_per_class_and_minute(results: dict[str, dict[str, Any]]) -> None:
    got = rows_of(results, "Handling time p50 / p90 / p99 by class")
    assert [(r["time"], r["message_class"]) for r in got] == [
        (str(datetime.fromtimestamp(M0 / 1000, timezone.utc).replace(tzinfo=None)), "transactional"),
        (str(datetime.fromtimestamp(M1 / 1000, timezone.utc).replace(tzinfo=None)), "campaign")]
    trans, camp = got
    assert trans["p50"] == 1000 and trans["p90"] == LATE_MS and trans["p99"] == LATE_MS  # 16 fast, 5 late
    assert camp["p50"] == camp["p90"] == camp["p99"] == 60_000


def test_the_delayed_share_panel_is_delayed_over_messages_in_range(results: dict[str, dict[str, Any]]) -> None:
    got = [(r["message_class"], r["delayed_share"]) for r in rows_of(results, "Delayed share by class")]
    assert got == [("transactional", pytest.approx(5 / 21)), ("campaign", 0.0)]  # oldco is out of range


def test_the_compliance_panel_is_this_months_exact_verdict(results: dict[str, dict[str, Any]]) -> None:
    got = {r["message_class"]: r for r in rows_of(results, "SLA compliance this month")}
    assert set(got) == {"campaign", "transactional"}
    t = got["transactional"]  # 16 on time, 5 + 3 late (the month counts oldco too)
    assert (t["eligible"], t["within"], t["delayed"]) == (24, 16, 8)
    assert t["compliance"] == pytest.approx(16 / 24) and t["target"] == 0.99
    assert t["budget_remaining"] == -8 and not t["met"]
    assert got["campaign"]["compliance"] == 1.0 and got["campaign"]["met"]


def test_the_top_accounts_panel_ranks_by_delayed_mail_in_range(results: dict[str, dict[str, Any]]) -> None:
    got = [(r["account_id"], r["delayed_messages"], r["total_messages"])
           for r in rows_of(results, "Top accounts by delayed mail")]
    assert got == [("slowco", 4, 4), ("midco", 1, 1)]  # acme has none; oldco's are before the range
    assert rows_of(results, "Top accounts by delayed mail")[0]["p99_ms"] == LATE_MS


def test_the_open_faults_panel_lists_only_unresolved_faults(results: dict[str, dict[str, Any]]) -> None:
    got = rows_of(results, "Open faults and alerts")
    assert [(r["kind"], r["message_class"], r["peak_share"]) for r in got] == [
        ("semi_critical", "transactional", 0.25)]
