"""Bad CLI input: one line on stderr and exit 2."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("args", [
    ("sla", "--month", "2026-13"),
    ("sla",),
    ("nope",),
    ("sql",),
    ("sql", "SELECT 1", "--format", "xml"),
    ("generate", "--rate", "0", "--duration", "1"),
    ("generate", "--rate", "x", "--duration", "1"),
    ("replay", "/nonexistent/file.jsonl"),
    ("kafka", "sideways"),
    ("sla", "--month", "2026-10", "--account", ""),
    ("accounts", "load", "/nonexistent/accounts.jsonl"),
    ("maintenance", "add", "--start", "2026-11-01T02:00:00Z"),
    ("maintenance", "add", "--start", "2026-11-01T02:00:00Z", "--end", "2026-11-01T01:00:00Z"),
    ("maintenance", "add", "--start", "yesterday", "--end", "2026-11-01T01:00:00Z"),
    ("faults", "--kind", "fatal"),  # critical exists since issue #12
    ("availability",),
    ("availability", "--month", "2026-13"),
    ("availability", "--month", "october"),
    ("availability", "--month", "2026-10", "--account", ""),
    ("bench", "--repeat", "0"),
    ("bench", "--events", "1"),
    ("bench", "--state", "-5"),
    ("bench", "--state", "0"),
    ("bench", "--sink-messages", "0"),
])
def test_bad_input_gets_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("mailsla")


def test_a_bad_setting_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    proc = run("sla", "--month", "2026-10", env={**os.environ, "MAILSLA_PARTITIONS": "many"})
    assert proc.returncode == 2 and "MAILSLA_PARTITIONS" in proc.stderr


@pytest.mark.parametrize("cmd", ["kafka", "worker", "sink", "replay", "generate", "sla", "sql", "status", "faults",
                                 "demo", "bench", "accounts", "maintenance", "web", "top"])
def test_every_command_has_help(cmd: str) -> None:
    proc = run(cmd, "--help")
    assert proc.returncode == 0 and "usage: mailsla" in proc.stdout


def test_generate_writes_an_incident_and_a_stall_into_the_file(tmp_path) -> None:
    import orjson

    from pipeline.core.events import parse_ts

    out = tmp_path / "t.jsonl"
    proc = run("generate", "--rate", "10", "--duration", "7200", "--out", str(out), "--start",
               "2026-10-31T00:00:00Z", "--incident", "10m,45m,0.3,35m", "--stall", "90m,20m")
    assert proc.returncode == 0, proc.stderr
    acc, rdy = {}, {}
    for line in out.read_bytes().splitlines():
        e = orjson.loads(line)
        if "accepted_at" in e:
            acc[e["message_id"]] = (parse_ts(e["accepted_at"], ""), e["message_class"])
        else:
            rdy[e["message_id"]] = parse_ts(e["ready_at"], "")
    t0 = parse_ts("2026-10-31T00:00:00Z", "")
    inside = [m for m, (a, c) in acc.items() if c == "transactional" and t0 + 600_000 <= a < t0 + 3_300_000]
    late = [m for m in inside if rdy[m] - acc[m][0] > 1_800_000]
    assert 0.2 < len(late) / len(inside) < 0.4
    assert not any(t0 + 5_400_000 <= r < t0 + 6_600_000 for r in rdy.values())


def test_a_bad_accounts_file_names_its_line_and_publishes_nothing(tmp_path) -> None:
    f = tmp_path / "accounts.jsonl"
    f.write_text('{"account_id": "a", "rate_limited": false}\n{"account_id": "b", "rate_limited": "yes"}\n')
    proc = run("accounts", "load", str(f))
    assert proc.returncode == 2 and f"{f}:2: rate_limited" in proc.stderr


def test_a_query_stopped_by_a_limit_gets_one_line_and_exit_3(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from pipeline import cli
    from pipeline.store import commands

    def reader(*_: object, **__: object):
        def query(sql: str):
            raise cli.LimitHit("sql: query stopped: it ran longer than 30 s (MAILSLA_SQL_MAX_SECONDS)")
        return query, lambda: None
    monkeypatch.setattr(commands, "reader", reader)
    assert cli.main(["sql", "SELECT 1"]) == 3
    assert capsys.readouterr().err == "sql: query stopped: it ran longer than 30 s (MAILSLA_SQL_MAX_SECONDS)\n"
