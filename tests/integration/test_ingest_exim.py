"""A real Exim 4.96 (private instance on loopback, pipeline/ops/eximlab.py) feeds the pipeline through
`mailsla ingest exim`: SASL accounts, class headers, a deferred and a deleted message, a stopped queue
runner; the rows are checked against Exim's own 250 replies and its QT=/DT= figures."""
from __future__ import annotations

import re
import smtplib
import time
from pathlib import Path

import pytest

from conftest import Pipeline
from mtas import IngestProc, Traffic, log_lines, need, session, submit, wait_rows
from pipeline.core.mta.exim import duration
from pipeline.ops import eximlab

pytestmark = pytest.mark.integration

CONFIG = """\
timezone: local
account:
  sender_domains: {bulk.test: bulk-co}
  default: nobody
"""
ALICE, BOB = ("alice@acme.test", "alice-pw"), ("bob@beta.test", "bob-pw")


@pytest.fixture
def exim(request: pytest.FixtureRequest):
    need(eximlab.missing())
    lab = eximlab.EximLab(accounts=dict([ALICE, BOB]))
    yield lab
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"=== {lab.log} (tail; kept in {lab.root})\n{lab.log_tail(80)}")
        lab.stop()
    else:
        lab.remove()


def _exim_figures(log: Path) -> dict[str, tuple[int, int]]:
    """Exim id -> (QT, DT) in ms on its first delivery line: Exim's own time on the queue (from the
    start of reception) and of the attempt, read with a plain regex."""
    out: dict[str, tuple[int, int]] = {}
    for line in log_lines(log):
        m = re.search(r"\] (\S+) (?:=>|==) .*?(?:QT=(\S+) )?DT=(\S+?):? ", line + " ")
        if m and m.group(1) not in out and m.group(2):
            out[m.group(1)] = (duration(m.group(2)), duration(m.group(3)))
    return out


def test_exim_mail_is_one_row_per_accepted_message_and_a_stopped_queue_runner_makes_it_late(
        pipeline: Pipeline, exim: eximlab.EximLab, tmp_path: Path) -> None:
    threshold_ms = 5000
    pipeline.env.update(MAILSLA_THRESHOLD_TRANSACTIONAL_MS=str(threshold_ms), MAILSLA_NEVER_READY_MS="30000",
                        MAILSLA_IDLE_GRACE_S="2")
    pipeline.start_worker()
    (tmp_path / "ingest.yaml").write_text(CONFIG)
    ingest = IngestProc(pipeline, "exim", exim.log, tmp_path / "ingest.yaml", "--host", "mta2").start()
    exim.start()

    sent: dict[str, dict[str, str]] = {}
    with session(exim.port, ALICE) as s:
        for cls in ("campaign", "campaign", "transactional"):
            qid, _ = submit(exim.port, "alice@acme.test", "r@dest.test", headers={"X-Mailsla-Class": cls}, session=s)
            sent[qid] = {"account_id": "alice@acme.test", "message_class": cls, "priority": "normal"}
    qid, _ = submit(exim.port, "bob@beta.test", "r@dest.test", login=BOB, headers={"X-Mailsla-Priority": "low"})
    sent[qid] = {"account_id": "bob@beta.test", "message_class": "transactional", "priority": "low"}
    deferred, _ = submit(exim.port, "alice@acme.test", "x@defer.test", login=ALICE)
    sent[deferred] = {"account_id": "alice@acme.test", "message_class": "transactional", "priority": "normal"}
    with pytest.raises(smtplib.SMTPDataError):  # refused by the data ACL: no 250, no event
        submit(exim.port, "bob@beta.test", "r@dest.test", login=BOB, headers={"X-Test-Reject": "yes"})

    with Traffic(exim.port) as traffic:
        time.sleep(15)
        exim.pause_queue()  # the queue runner stops: mail is still received, none is delivered
        paused_at = time.time()
        stalled: dict[str, float] = {}
        for _ in range(4):
            qid, at = submit(exim.port, "alice@acme.test", "r@dest.test", login=ALICE)
            sent[qid] = {"account_id": "alice@acme.test", "message_class": "transactional", "priority": "normal"}
            stalled[qid] = at
            time.sleep(1)
        removed = [submit(exim.port, "alice@acme.test", "r@dest.test", login=ALICE)[0] for _ in range(2)]
        assert set(removed) <= set(exim.queue_ids())  # premise: queued, not yet delivered
        for eid in removed:
            exim.delete(eid)
        time.sleep(max(0.0, paused_at + 20 - time.time()))
        exim.resume_queue()
        resumed_at = time.time()
        time.sleep(35)  # event time passes the removed ones' never-ready horizon (30 s, past the stall)
    assert not traffic.errors and traffic.sent > 100
    assert resumed_at - paused_at >= 3 * threshold_ms / 1000  # premise: stopped well past the threshold

    total = traffic.sent + len(sent) + len(removed)
    wait_rows(pipeline, "1", total)
    pipeline.wait_idle()
    rows = pipeline.rows("SELECT message_id, account_id, message_class, priority, mta, handling_ms, status "
                         "FROM mailsla.handling_times")
    by_id = {r["message_id"].split("/", 1)[1]: r for r in rows}
    assert len(rows) == len(by_id) == total and {r["mta"] for r in rows} == {"mta2"}
    assert sum(r["account_id"] == "bulk-co" for r in rows) == traffic.sent
    for eid, want in sent.items():
        assert {k: by_id[eid][k] for k in want} == want, eid
    for eid in removed:  # deleted with exim -Mrm before any delivery: never ready
        assert by_id[eid]["status"] == "never_ready"
    for eid, at in stalled.items():
        waited_ms = (resumed_at - at) * 1000
        assert by_id[eid]["status"] == "late" and waited_ms - 1000 <= by_id[eid]["handling_ms"] <= waited_ms + 10_000
    # Exim's own figures: QT (from the start of reception) - DT (the attempt) covers our handling
    # (from the arrival line to the attempt's start) plus the reception of a small message
    figures = _exim_figures(exim.log)  # QT is on delivery (=>) lines only: not the deferred message's
    assert set(figures) == {e for e, r in by_id.items() if r["status"] != "never_ready"} - {deferred}
    off = [(e, by_id[e]["handling_ms"], qt_dt) for e, qt_dt in figures.items()
           if not -1000 <= qt_dt[0] - qt_dt[1] - by_id[e]["handling_ms"] <= 1500]
    assert off == []
    st = pipeline.json("status", "--json")
    assert st["counters"].get("duplicate_ready", 0) == 0  # the deferred message's retries are no new ready
    assert ingest.counters()["skipped"]["removed_before_ready"] == len(removed)
    assert ingest.stop() == 0
