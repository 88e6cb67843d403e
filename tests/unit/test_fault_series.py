"""The live page's fault window and `mailsla faults` read one verdict series: `fault_series_sql`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.core.config import load
from pipeline.live import snapshot
from pipeline.store import reports


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL each caller got from fault_series_sql (the real one, recorded)."""
    made: list[str] = []
    real = reports.fault_series_sql

    def recording(db: str, since_ms: int = 0) -> str:
        made.append(real(db, since_ms))
        return made[-1]
    monkeypatch.setattr(reports, "fault_series_sql", recording)
    monkeypatch.setattr(snapshot, "fault_series_sql", recording)
    return made


def _query(sent: list[str]) -> Any:
    def query(sql: str) -> tuple[list[str], list[Any]]:
        sent.append(sql)
        return [], []
    return query


def test_the_page_and_the_faults_command_send_the_same_series_query(spy: list[str], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
    settings = load()
    page: list[str] = []
    snapshot.collect(settings, _query(page))
    command: list[str] = []
    reports.faults(settings, settings.policy, _query(command))
    assert len(spy) == 2
    assert spy[0] in page and spy[1] in command
    # one text but for the lower bound: the page reads from its longest window, the command all history
    assert spy[0].split("verdict_at >=")[0] == spy[1].split("verdict_at >=")[0]
