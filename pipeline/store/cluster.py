"""ClickHouse cluster mode: the single-node DDL rewritten for a sharded, replicated cluster.

`cluster_statements(statements, cluster, database)` is a pure function from the statements
`ddl_statements()` makes for one node to the statements for a cluster (MAILSLA_CLICKHOUSE_CLUSTER):

* every table `T` becomes a replicated local table `T_local`, created `ON CLUSTER` with the
  Replicated twin of its engine (`ReplacingMergeTree(rev)` ->
  `ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', rev)`),
  plus a `Distributed` table under the old name `T`, with the same columns, over `T_local`.
  The application keeps reading and writing `T`, so no query in the code changes;
* the sharding key of `T` is `cityHash64(<T's sorting key>)`: all the rows a Replacing- or
  AggregatingMergeTree collapses (same sorting key) land on one shard, so `FINAL` and merges per
  shard give what one node gives. For `handling_times_raw` that is `cityHash64(message_id)`: every
  revision of a message is on one shard, which is what the sink's per-message revision scheme
  needs (it reads the stored revision back through `T` before writing; see Store in
  pipeline/store/clickhouse.py for the insert settings that make that read see the last write);
* materialized views are created on every node and read and write the local tables (an insert
  through `T` reaches `T_local` on the shard, which runs the views there); the per-minute
  aggregates are therefore partial per shard, and every query of them already sums;
* plain views are created `ON CLUSTER` over the Distributed tables, their joins made `GLOBAL`
  (the right side is computed once by the node that runs the query and shipped to the shards);
* `ALTER TABLE T ...` becomes `ALTER TABLE T_local ON CLUSTER ...`, and column changes are also
  applied to the Distributed `T`.

A statement it does not know raises ValueError, so a new DDL file that needs a rule here fails
in the unit tests (tests/unit/test_cluster_ddl.py), not on a production cluster.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

ZK_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA = "{replica}"
LOCAL_SUFFIX = "_local"

_NAME = r"(?P<db>[A-Za-z_][A-Za-z0-9_]*)\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?" + _NAME
                           + r"(?:\s+ON\s+CLUSTER\s+(?P<cluster>'[^']*'|\S+))?\s*\(", re.I)
_CREATE_VIEW = re.compile(r"CREATE\s+(?P<head>(?:OR\s+REPLACE\s+)?VIEW\s+(?:IF\s+NOT\s+EXISTS\s+)?)" + _NAME
                          + r"(?P<rest>\s+AS\b.*)$", re.I | re.S)
_CREATE_MV = re.compile(r"CREATE\s+MATERIALIZED\s+VIEW\s+(?P<ine>IF\s+NOT\s+EXISTS\s+)?" + _NAME
                        + r"\s+TO\s+(?P<tdb>[A-Za-z_][A-Za-z0-9_]*)\.(?P<target>[A-Za-z_][A-Za-z0-9_]*)"
                        + r"(?P<rest>\s+AS\b.*)$", re.I | re.S)
_ALTER = re.compile(r"ALTER\s+TABLE\s+" + _NAME + r"\s+(?P<rest>.*)$", re.I | re.S)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<engine>[A-Za-z0-9_]+)\s*", re.I)
_ORDER_BY = re.compile(r"\bORDER\s+BY\s+(?P<key>\((?:[^()]|\([^()]*\))*\)|[A-Za-z_][A-Za-z0-9_]*)", re.I)
_STRICTNESS = r"(?:(?:ANY|ALL|ASOF|SEMI|ANTI)\s+)?"
_JOIN = re.compile(r"(?<![A-Za-z_])(?<!GLOBAL )(?P<join>" + _STRICTNESS + r"(?:(?:LEFT|RIGHT|FULL|INNER|CROSS)\s+)?"
                   r"(?:OUTER\s+)?" + _STRICTNESS + r"JOIN)\b", re.I)
_IN_SUBQUERY = re.compile(r"(?<![A-Za-z_])(?<!GLOBAL )(?P<op>(?:NOT\s+)?IN)(?P<sub>\s*\(\s*SELECT\b)", re.I)
_AFTER_GLOBAL = {"ARRAY", "GLOBAL", "LEFT", "RIGHT", "FULL", "INNER", "CROSS", "OUTER", "ANY", "ALL", "ASOF", "SEMI",
                 "ANTI"}
_COLUMN_ALTER = re.compile(r"^(ADD|DROP|MODIFY|RENAME|COMMENT)\s+COLUMN\b", re.I)


class ClusterDDLError(ValueError):
    """A single-node statement this module has no cluster rule for."""


@dataclass(frozen=True)
class Table:
    """What the rewrite needs to know about one CREATE TABLE."""

    database: str
    name: str
    columns: str  # the column list between the parentheses, as written
    engine: str
    engine_args: str  # "" when the engine has none
    settings: str  # everything after the engine clause (ORDER BY, TTL, SETTINGS ...)
    sorting_key: str


def strip_comments(sql: str) -> str:
    """`sql` without `--` and `/* */` comments (string literals and quoted names left alone)."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # '' inside a literal
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _unquoted(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, paren depth after it) for each character outside quotes."""
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        else:
            depth += (ch == "(") - (ch == ")")
            yield i, ch, depth
        i += 1


def _matching_paren(sql: str, open_at: int) -> int:
    """Index of the `)` closing the `(` at `open_at` (quotes respected)."""
    for i, ch, depth in _unquoted(sql, open_at):
        if ch == ")" and depth == 0:
            return i
    raise ClusterDDLError(f"unbalanced parentheses in: {sql[:80]}...")


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside parentheses and quotes; parts stripped, empty parts dropped."""
    parts, start = [], 0
    for i, ch, depth in _unquoted(text):
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_table(stmt: str) -> Table | None:
    """The parts of a `CREATE TABLE db.name (columns) ENGINE = ...` statement, else None."""
    stmt = strip_comments(stmt).strip()
    m = _CREATE_TABLE.match(stmt)
    if not m:
        return None
    open_at = m.end() - 1
    close_at = _matching_paren(stmt, open_at)
    tail = stmt[close_at + 1:].strip()
    e = _ENGINE.match(tail)
    if not e:
        raise ClusterDDLError(f"{m['db']}.{m['name']}: no ENGINE clause in {tail[:60]!r}")
    args, end = "", e.end()
    if tail[end:end + 1] == "(":
        close = _matching_paren(tail, end)
        args, end = tail[end + 1:close].strip(), close + 1
    settings = tail[end:].strip()
    order = _ORDER_BY.search(settings)
    key = order["key"] if order else ""
    if key.startswith("("):
        key = key[1:-1]
    return Table(database=m["db"], name=m["name"], columns=stmt[open_at + 1:close_at].strip(),
                 engine=e["engine"], engine_args=args, settings=settings,
                 sorting_key=", ".join(split_top_level(key)))


def column_names(columns: str) -> list[str]:
    """The column names of a column list (INDEX/PROJECTION/CONSTRAINT entries left out)."""
    names = []
    for part in split_top_level(columns):
        word = part.split(None, 1)[0]
        if word.upper() in {"INDEX", "PROJECTION", "CONSTRAINT"}:
            continue
        names.append(word.strip("`"))
    return names


def replicated_engine(engine: str, args: str) -> str:
    """`ReplacingMergeTree(rev)` -> `ReplicatedReplacingMergeTree('<zk path>', '{replica}', rev)`."""
    if engine.lower().startswith("replicated"):
        raise ClusterDDLError(f"{engine} is already replicated: the single-node DDL must use plain engines")
    all_args = [f"'{ZK_PATH}'", f"'{REPLICA}'"] + ([args] if args else [])
    return f"Replicated{engine}({', '.join(all_args)})"


def _on(cluster: str) -> str:
    return f"ON CLUSTER '{cluster}'"


def _globalize(select: str) -> str:
    """Joins and IN-subqueries of a query over Distributed tables made GLOBAL."""
    def join(m: re.Match[str]) -> str:
        words = select[:m.start()].upper().split()
        # ARRAY JOIN is no join; after GLOBAL (or a keyword of a clause that follows GLOBAL) it is done
        if words and words[-1] in _AFTER_GLOBAL:
            return m[0]
        return "GLOBAL " + m["join"]

    select = _JOIN.sub(join, select)
    return _IN_SUBQUERY.sub(lambda m: "GLOBAL " + m["op"] + m["sub"], select)


def _local_refs(sql: str, database: str, tables: set[str]) -> str:
    """`db.T` -> `db.T_local` for the tables made here (whole names only)."""
    if not tables:
        return sql
    pattern = re.compile(rf"(?<![A-Za-z0-9_.]){re.escape(database)}\.({'|'.join(map(re.escape, sorted(tables)))})"
                         rf"(?![A-Za-z0-9_])")
    return pattern.sub(lambda m: f"{database}.{m[1]}{LOCAL_SUFFIX}", sql)


def cluster_statements(statements: list[str], cluster: str, database: str) -> list[str]:
    """The single-node DDL `statements` (in order) rewritten for cluster `cluster`."""
    if not cluster:
        return list(statements)
    on = _on(cluster)
    tables: set[str] = set()  # names that are Distributed tables over <name>_local
    out: list[str] = []
    for raw in statements:
        stmt = "\n".join(line.rstrip() for line in strip_comments(raw).strip().splitlines() if line.strip())
        if not stmt:
            continue
        table = parse_table(stmt)
        if table is not None:
            if not table.engine.endswith("MergeTree"):
                raise ClusterDDLError(f"{table.name}: no MergeTree-family engine ({table.engine})")
            if not table.sorting_key:
                raise ClusterDDLError(f"{table.name}: no ORDER BY to shard by")
            if table.database != database:
                raise ClusterDDLError(f"{table.database}.{table.name}: not in database {database}")
            ine = "IF NOT EXISTS " if re.match(r"CREATE\s+TABLE\s+IF\s+NOT\s+EXISTS", stmt, re.I) else ""
            db, name, local = table.database, table.name, table.name + LOCAL_SUFFIX
            out.append(f"CREATE TABLE {ine}{db}.{local} {on} ({table.columns}) "
                       f"ENGINE = {replicated_engine(table.engine, table.engine_args)} {table.settings}".strip())
            out.append(f"CREATE TABLE {ine}{db}.{name} {on} ({table.columns}) "
                       f"ENGINE = Distributed('{cluster}', {db}, {local}, cityHash64({table.sorting_key}))")
            tables.add(name)
            continue
        m = _CREATE_MV.match(stmt)
        if m:
            if m["target"] not in tables:
                raise ClusterDDLError(f"materialized view {m['name']}: target {m['target']} is not a table made here")
            ine = "IF NOT EXISTS " if m["ine"] else ""
            body = _local_refs(m["rest"], database, tables)
            out.append(f"CREATE MATERIALIZED VIEW {ine}{m['db']}.{m['name']} {on} "
                       f"TO {m['tdb']}.{m['target']}{LOCAL_SUFFIX}{body}")
            continue
        m = _CREATE_VIEW.match(stmt)
        if m:
            head = " ".join(m["head"].split())
            out.append(f"CREATE {head} {m['db']}.{m['name']} {on}{_globalize(m['rest'])}")
            continue
        m = _ALTER.match(stmt)
        if m:
            if m["name"] not in tables:
                raise ClusterDDLError(f"ALTER TABLE {m['name']}: not a table made here")
            out.append(f"ALTER TABLE {m['db']}.{m['name']}{LOCAL_SUFFIX} {on} {m['rest']}")
            if _COLUMN_ALTER.match(m["rest"]):  # the Distributed table mirrors the columns
                out.append(f"ALTER TABLE {m['db']}.{m['name']} {on} {m['rest']}")
            continue
        raise ClusterDDLError(f"no cluster rule for: {stmt[:100]}")
    return out


def local_table(name: str, cluster: str) -> str:
    """Where the rows of table `name` are stored on each node: `name_local` in cluster mode."""
    return name + LOCAL_SUFFIX if cluster else name
