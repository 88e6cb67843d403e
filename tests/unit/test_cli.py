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
])
def test_bad_input_gets_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("mailsla")


def test_a_bad_setting_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    proc = run("sla", "--month", "2026-10", env={**os.environ, "MAILSLA_PARTITIONS": "many"})
    assert proc.returncode == 2 and "MAILSLA_PARTITIONS" in proc.stderr


@pytest.mark.parametrize("cmd", ["kafka", "worker", "sink", "replay", "generate", "sla", "sql", "status",
                                 "demo", "bench"])
def test_every_command_has_help(cmd: str) -> None:
    proc = run(cmd, "--help")
    assert proc.returncode == 0 and "usage: mailsla" in proc.stdout
