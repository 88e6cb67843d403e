"""ClickHouse cluster mode (MAILSLA_CLICKHOUSE_CLUSTER): the single-node DDL rewritten by
pipeline/store/cluster.py. Pure checks of the statements, then chDB (embedded ClickHouse, one engine
per process, so in subprocesses): every statement parses, and the sink's Store gives the same
tables, columns and numbers on a one-shard cluster as on one node."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from pipeline.core import config
from pipeline.store.cluster import ClusterDDLError, cluster_statements, column_names, parse_table, strip_comments
from pipeline.store.clickhouse import ddl_statements

DB = "mailsla"
CLUSTER = "prod"
PROBE = Path(__file__).with_name("chdb_cluster_probe.py")
ZK = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"


@cache
def single() -> tuple[str, ...]:
    return tuple(ddl_statements(DB))


@cache
def clustered() -> tuple[str, ...]:
    return tuple(ddl_statements(DB, cluster=CLUSTER))


def tables(statements: tuple[str, ...]) -> dict[str, object]:
    return {t.name: t for t in (parse_table(s) for s in statements) if t is not None}


def column_defs(columns: str) -> list[str]:
    """One normalised definition per column, in order (comments and spacing do not count)."""
    from pipeline.store.cluster import split_top_level

    return [" ".join(c.split()) for c in split_top_level(strip_comments(columns))]


def probe(*args: str, timeout: float = 180) -> object:
    proc = subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the statements ----------------------------------------------------------------
def test_without_a_cluster_the_ddl_is_the_single_node_ddl() -> None:
    assert ddl_statements(DB, cluster="") == list(single())
    assert cluster_statements(list(single()), "", DB) == list(single())


def test_every_table_has_a_replicated_local_twin_and_a_distributed_table_with_the_same_columns() -> None:
    one, many = tables(single()), tables(clustered())
    assert one, "the single-node DDL creates tables"
    assert set(many) == set(one) | {f"{name}_local" for name in one}
    for name, t in one.items():
        local, dist = many[f"{name}_local"], many[name]
        assert column_defs(local.columns) == column_defs(t.columns), name
        assert column_defs(dist.columns) == column_defs(t.columns), name
        assert column_names(dist.columns) == column_names(t.columns), name
        assert local.engine == f"Replicated{t.engine}", name
        args = f"{ZK}, {t.engine_args}" if t.engine_args else ZK
        assert local.engine_args == args, name
        assert " ".join(local.settings.split()) == " ".join(t.settings.split()), name  # ORDER BY, TTL kept


def test_every_engine_is_replicated_or_distributed() -> None:
    engines = re.findall(r"ENGINE\s*=\s*(\w+)", "\n".join(clustered()))
    assert engines
    for engine in engines:
        assert engine.startswith("Replicated") or engine == "Distributed", engine
    assert sum(e == "Distributed" for e in engines) == len(tables(single()))


def test_every_create_and_alter_runs_on_the_cluster() -> None:
    for stmt in clustered():
        assert re.match(r"(CREATE|ALTER)\b", stmt), stmt[:60]
        assert re.match(r"^[^(]*? ON CLUSTER 'prod'( |\n|$)", stmt), stmt[:120]


def test_rows_are_sharded_by_the_sorting_key_so_revisions_of_a_message_share_a_shard() -> None:
    dist = {m[1]: (m[2], m[3]) for m in (re.search(
        r"TABLE IF NOT EXISTS mailsla\.(\w+) ON CLUSTER 'prod' .*ENGINE = Distributed\('prod', mailsla, (\w+), (.+)\)$",
        s, re.S) for s in clustered()) if m}
    assert dist["handling_times_raw"] == ("handling_times_raw_local", "cityHash64(message_id)")
    assert dist["orphan_events_raw"] == ("orphan_events_raw_local", "cityHash64(message_id)")
    assert dist["accounts"] == ("accounts_local", "cityHash64(account_id)")
    assert dist["handling_minutely"] == ("handling_minutely_local", "cityHash64(message_class, minute)")


def test_materialized_views_read_and_write_the_local_tables() -> None:
    mvs = [s for s in clustered() if s.startswith("CREATE MATERIALIZED VIEW")]
    assert len(mvs) == 2
    for mv in mvs:
        assert re.search(r"\bTO mailsla\.\w+_local AS\b", mv), mv[:200]
        assert "FROM mailsla.handling_times_raw_local" in mv
        assert "ARRAY JOIN" in mv and "GLOBAL" not in mv


def test_views_over_distributed_tables_join_globally() -> None:
    (view,) = [s for s in clustered() if s.startswith("CREATE OR REPLACE VIEW mailsla.handling_times ")]
    assert view.count("GLOBAL LEFT JOIN") == 2
    assert not re.search(r"(?<!GLOBAL )LEFT JOIN", view)
    assert "FROM mailsla.handling_times_raw AS m FINAL" in view  # reads the Distributed table


@pytest.mark.parametrize("join, expected", [
    ("LEFT JOIN", "GLOBAL LEFT JOIN"), ("ANY LEFT JOIN", "GLOBAL ANY LEFT JOIN"),
    ("LEFT ANY JOIN", "GLOBAL LEFT ANY JOIN"), ("JOIN", "GLOBAL JOIN"), ("INNER JOIN", "GLOBAL INNER JOIN"),
    ("GLOBAL LEFT JOIN", "GLOBAL LEFT JOIN"), ("ARRAY JOIN", "ARRAY JOIN"), ("LEFT ARRAY JOIN", "LEFT ARRAY JOIN"),
])
def test_each_kind_of_join_in_a_view_becomes_global_once(join: str, expected: str) -> None:
    (view,) = cluster_statements([f"CREATE VIEW mailsla.v AS SELECT 1 FROM mailsla.a {join} mailsla.b USING (x)"],
                                 CLUSTER, DB)
    assert view == f"CREATE VIEW mailsla.v ON CLUSTER 'prod' AS SELECT 1 FROM mailsla.a {expected} mailsla.b USING (x)"


def test_column_changes_apply_to_the_local_and_the_distributed_table() -> None:
    alters = [s for s in clustered() if s.startswith("ALTER")]
    assert alters == [
        "ALTER TABLE mailsla.handling_times_raw_local ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS client_error "
        "String DEFAULT '' AFTER mta",
        "ALTER TABLE mailsla.handling_times_raw ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS client_error "
        "String DEFAULT '' AFTER mta",
        "ALTER TABLE mailsla.handling_times_raw_local ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS clock_suspect "
        "LowCardinality(String) DEFAULT '' AFTER clock_skew",
        "ALTER TABLE mailsla.handling_times_raw ON CLUSTER 'prod' ADD COLUMN IF NOT EXISTS clock_suspect "
        "LowCardinality(String) DEFAULT '' AFTER clock_skew",
    ]


@pytest.mark.parametrize("stmt, message", [
    ("INSERT INTO mailsla.t VALUES (1)", "no cluster rule"),
    ("CREATE TABLE mailsla.t (a String) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a", "already replicated"),
    ("CREATE TABLE mailsla.t (a String) ENGINE = Memory", "no MergeTree-family engine"),
    ("CREATE MATERIALIZED VIEW mailsla.v TO mailsla.unknown AS SELECT 1", "not a table made here"),
    ("ALTER TABLE mailsla.unknown ADD COLUMN b String", "not a table made here"),
])
def test_a_statement_without_a_cluster_rule_is_refused(stmt: str, message: str) -> None:
    with pytest.raises(ClusterDDLError, match=message):
        cluster_statements([stmt], CLUSTER, DB)


def test_comments_and_string_literals_survive_the_rewrite() -> None:
    stmt = ("CREATE TABLE IF NOT EXISTS mailsla.t\n(\n  a String DEFAULT '-- not a comment', -- a remark (with ')\n"
            "  b UInt64\n)\nENGINE = ReplacingMergeTree(b)\nORDER BY (a)")
    local, dist = cluster_statements([stmt], CLUSTER, DB)
    assert "'-- not a comment'" in local and "remark" not in local
    assert column_names(parse_table(dist).columns) == ["a", "b"]
    assert dist.endswith("ENGINE = Distributed('prod', mailsla, t_local, cityHash64(a))")


# -- settings ----------------------------------------------------------------------
def test_the_cluster_setting_needs_a_clickhouse_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
    monkeypatch.delenv("MAILSLA_CLICKHOUSE", raising=False)
    monkeypatch.delenv("MAILSLA_CLICKHOUSE_FILE", raising=False)
    monkeypatch.setenv("MAILSLA_CLICKHOUSE_CLUSTER", "prod")
    with pytest.raises(config.ConfigError, match="MAILSLA_CLICKHOUSE_CLUSTER needs a ClickHouse server"):
        config.load()
    monkeypatch.setenv("MAILSLA_CLICKHOUSE", "http://u:p@ch:8123/mailsla")
    assert config.load().clickhouse_cluster == "prod"
    monkeypatch.setenv("MAILSLA_CLICKHOUSE_CLUSTER", "prod; DROP")
    with pytest.raises(config.ConfigError, match="MAILSLA_CLICKHOUSE_CLUSTER must be a cluster name"):
        config.load()
    monkeypatch.delenv("MAILSLA_CLICKHOUSE_CLUSTER")
    assert config.load().clickhouse_cluster == ""


# -- chDB ----------------------------------------------------------------------------
def test_every_cluster_statement_parses_in_clickhouse(tmp_path: Path) -> None:
    path = tmp_path / "statements.json"
    path.write_text(json.dumps(list(clustered())))
    results = probe("parse", str(path))
    assert len(results) == len(clustered())
    for stmt, res in zip(clustered(), results):
        assert "ok" in res, f"{stmt[:120]}...\n{res.get('error')}"
        assert "ON CLUSTER prod" in res["ok"], res["ok"][:200]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("cluster")
    return {mode: probe("run", mode, str(work / mode)) for mode in ("single", "cluster")}


def test_on_a_cluster_every_table_and_view_has_the_single_node_columns(runs: dict[str, dict]) -> None:
    def by_table(run: dict) -> dict[str, list]:
        out: dict[str, list] = {}
        for table, *col in run["columns"]:
            out.setdefault(table, []).append(col)
        return out

    one, many = by_table(runs["single"]), by_table(runs["cluster"])
    engines = dict(map(tuple, runs["single"]["tables"]))
    cluster_engines = dict(map(tuple, runs["cluster"]["tables"]))
    for name, cols in one.items():
        assert many[name] == cols, name  # the Distributed table or the view under the same name
        if engines[name].endswith("MergeTree"):
            assert many[f"{name}_local"] == cols, name
            assert cluster_engines[name] == "Distributed" and cluster_engines[f"{name}_local"] == engines[name]
        else:
            assert cluster_engines[name] == engines[name], name  # views stay views


def test_on_a_cluster_the_sink_counts_every_message_once_like_one_node(runs: dict[str, dict]) -> None:
    one, many = runs["single"], runs["cluster"]
    ddl = [c for c in many["commands"] if c.startswith(("CREATE", "ALTER"))]
    assert ddl and all(" ON CLUSTER 'mailsla_test'" in c for c in ddl)
    for key in ("handling_times", "sla_monthly", "sla_monthly_by_account", "minutely", "minutely_account",
                "orphans", "totals_written", "totals_rebuilt", "journal_open"):
        assert many[key] == one[key], key
    # re-delivered rows and old revisions never counted twice, before and after a rebuild
    assert many["totals_written"] == many["totals_rows"] == many["totals_rebuilt"]
    assert sum(int(r[1]) for r in many["totals_rows"]) == 60
    assert many["journal_open"] == [["0"]]
