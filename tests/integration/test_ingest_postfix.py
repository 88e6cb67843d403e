"""A real Postfix 3.7 (private instance on loopback, pipeline/ops/postfixlab.py) feeds the pipeline
through `mailsla ingest postfix`: the rows are checked against what Postfix itself said (its 250
replies, its `delays=`, its queue) on the real broker and the embedded ClickHouse."""
from __future__ import annotations

import json
import re
import signal
import smtplib
import time
from pathlib import Path

import pytest

from conftest import Pipeline
from mtas import IngestProc, Traffic, log_lines, need, postfix_first_delays, session, submit, wait_rows
from pipeline.ops import postfixlab

pytestmark = pytest.mark.integration

CONFIG = """\
timezone: local                 # the lab's Postfix writes this machine's local time
account:
  sender_domains: {bulk.test: bulk-co}
  client_networks: {"127.0.0.0/8": loopback-co}
  default: nobody
postfix:
  delays_wait: 60s              # a loaded test machine may take seconds to the first delivery
"""
ACCOUNTS = {"alice@acme.test": "alice-pw", "bob@beta.test": "bob-pw"}


@pytest.fixture
def postfix(request: pytest.FixtureRequest):
    need(postfixlab.missing())
    labs: list[postfixlab.PostfixLab] = []

    def make(**kw: object) -> postfixlab.PostfixLab:
        lab = postfixlab.PostfixLab(accounts=ACCOUNTS, **kw)  # type: ignore[arg-type]
        labs.append(lab)
        return lab
    yield make
    rep = getattr(request.node, "rep_call", None)
    for lab in labs:
        if rep is not None and rep.failed:
            print(f"=== {lab.log} (tail; the instance's directory is kept: {lab.root})\n{lab.log_tail(80)}")
            lab.stop()
        else:
            lab.remove()


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "ingest.yaml"
    path.write_text(CONFIG + extra)
    return path


def _qid(message_id: str) -> str:
    return message_id.split("/")[1]


def test_postfix_mail_is_one_row_per_accepted_message_with_account_class_and_postfix_own_handling_time(
        pipeline: Pipeline, postfix, tmp_path: Path) -> None:
    # the deleted messages become never_ready within the test: a short horizon, and live mode (quiet
    # partitions follow the newest event time), as a deployment runs
    # (the horizon must be past the class threshold: the join schedules it after the deadline)
    pipeline.env.update(MAILSLA_NEVER_READY_MS="20000", MAILSLA_THRESHOLD_TRANSACTIONAL_MS="5000",
                        MAILSLA_IDLE_GRACE_S="2")
    pipeline.start_worker()
    lab = postfix()
    assert not lab.log.exists()  # the ingest starts before the log exists: it waits for it
    ingest = IngestProc(pipeline, "postfix", lab.log, _config(tmp_path)).start()
    lab.start()

    lab.smtp_source(200, sessions=4, sender="load@bulk.test")  # account by sender domain
    sent: dict[str, dict[str, str]] = {}  # queue id (from the 250 reply) -> the row it must give
    with session(lab.port, ("alice@acme.test", "alice-pw")) as s:  # ten in one SMTP session
        for _ in range(10):
            qid, _ = submit(lab.port, "alice@acme.test", "r@dest.test", headers={"X-Mailsla-Class": "campaign"},
                            session=s)
            sent[qid] = {"account_id": "alice@acme.test", "message_class": "campaign", "priority": "normal"}
    for _ in range(5):
        qid, _ = submit(lab.port, "bob@beta.test", "r@dest.test", login=("bob@beta.test", "bob-pw"),
                        headers={"X-Mailsla-Priority": "low"})
        sent[qid] = {"account_id": "bob@beta.test", "message_class": "transactional", "priority": "low"}
    qid, _ = submit(lab.port, "someone@other.test", "r@dest.test")  # no login, no mapped domain: its network
    sent[qid] = {"account_id": "loopback-co", "message_class": "transactional", "priority": "normal"}
    deferred, _ = submit(lab.port, "alice@acme.test", "x@defer.test", login=("alice@acme.test", "alice-pw"))
    sent[deferred] = {"account_id": "alice@acme.test", "message_class": "transactional", "priority": "normal"}
    with pytest.raises(smtplib.SMTPDataError):  # header_checks REJECT after DATA: a queue id, no 250
        submit(lab.port, "bob@beta.test", "r@dest.test", login=("bob@beta.test", "bob-pw"),
               headers={"X-Test-Reject": "yes"})
    with pytest.raises(smtplib.SMTPRecipientsRefused):  # refused at RCPT: NOQUEUE
        submit(lab.port, "bob@beta.test", "r@reject.test", login=("bob@beta.test", "bob-pw"))

    # deleted before it was ready: the queue manager is stopped, the mail accepted, then deleted
    lab.pause_qmgr()
    deleted = [submit(lab.port, "alice@acme.test", "r@dest.test", login=("alice@acme.test", "alice-pw"))[0]
               for _ in range(3)]
    accepted_so_far = 200 + len(sent) + len(deleted)
    ingest.wait(lambda c: c["events"]["accepted"] >= accepted_so_far, what=f"{accepted_so_far} accepted")
    assert set(deleted) <= set(lab.queue_ids())  # premise: still queued, never taken by the queue manager
    for qid in deleted:
        assert "Deleted: 1 message" in lab.postsuper("-d", qid)
    lab.resume_qmgr()

    # lines of other daemons and garbled lines, in the log itself
    now = time.strftime("%b %d %H:%M:%S")
    with open(lab.log, "a") as f:
        for line in (f"{now} mta1 sshd[123]: Accepted publickey for root from 192.0.2.1 port 22",
                     f"{now} mta1 CRON[5]: (root) CMD (true)", "garbage without a timestamp",
                     "Dec 33 12:00:00 mta1 postfix/smtpd[1]: 0123456789A: client=x[192.0.2.1]",
                     f"{now} mta1 postfix/qmgr[1]"):
            f.write(line + "\n")
            f.flush()
    time.sleep(21)  # event time moves past the deleted ones' never-ready horizon (20 s) with this last mail
    last, _ = submit(lab.port, "someone@other.test", "r@dest.test")
    sent[last] = {"account_id": "loopback-co", "message_class": "transactional", "priority": "normal"}
    lab.smtp_source(40, sessions=2, sender="load@bulk.test")

    total = 240 + len(sent) + len(deleted)
    rows = wait_rows(pipeline, "1", total)
    pipeline.wait_idle()
    rows = pipeline.rows("SELECT message_id, account_id, message_class, priority, mta, handling_ms, status, "
                         "exclusion_reason FROM mailsla.handling_times")
    by_qid = {_qid(r["message_id"]): r for r in rows}
    assert len(rows) == len(by_qid) == total  # every accepted message exactly once, nothing else
    assert sum(r["account_id"] == "bulk-co" for r in rows) == 240
    for qid, want in sent.items():
        assert {k: by_qid[qid][k] for k in want} == want, qid
    assert {by_qid[q]["exclusion_reason"] for q in sent if sent[q]["priority"] == "low"} == {"low_priority"}
    assert {r["mta"] for r in rows} == {"mta1"}
    rejected = {m.group(1) for line in log_lines(lab.log)
                if (m := re.search(r"cleanup\[\d+\]: (\w+): reject: header X-Test-Reject", line))}
    assert len(rejected) == 1 and not rejected & set(by_qid)  # premise: Postfix rejected it after DATA
    for qid in deleted:
        assert by_qid[qid]["status"] == "never_ready", by_qid[qid]

    # handling_ms is Postfix's own measure: the first field of delays= on the first delivery attempt
    delays = postfix_first_delays(lab.log)
    assert deferred in delays
    ready = [r for r in rows if r["status"] != "never_ready"]
    assert len(ready) == total - len(deleted)
    off = [(q, r["handling_ms"], delays[q]) for q, r in by_qid.items() if r["status"] != "never_ready"
           and r["handling_ms"] != round(delays[q] * 1000)]
    assert off == []

    # the deferred message's retries are no new queue-ready: the join saw no duplicate
    st = pipeline.json("status", "--json")
    assert st["counters"].get("duplicate_ready", 0) == 0 and st["counters"].get("duplicate_accepted", 0) == 0
    log = ingest.counters()
    assert log["skipped"]["other_daemon"] == 2
    assert log["garbled"] == {"bad_timestamp": 1, "no_timestamp": 1, "truncated": 1}
    assert log["events"] == {"accepted": total, "queue_ready": total - len(deleted)}
    # ... and the live page shows the same counters
    snap = _snapshot(pipeline)
    assert snap["ingest"]["garbled"] == log["garbled"] and snap["ingest"]["skipped"]["other_daemon"] == 2
    assert ingest.stop() == 0


def _snapshot(pipeline: Pipeline) -> dict:
    import urllib.request

    from pipeline.store import api

    url = api.find(pipeline.settings())
    with urllib.request.urlopen(f"{url}/api/snapshot", timeout=30) as resp:
        return json.loads(resp.read())


POLICY = """\
fault:                 # small enough for a test: one minute of verdicts, 20 of them at least
  window: {transactional: 1m, campaign: 24h}
  min_volume: 20
  hold: 1m
"""


def test_a_stopped_queue_manager_is_a_real_incident_late_mail_and_a_fault_that_opens_and_resolves(
        pipeline: Pipeline, postfix, tmp_path: Path) -> None:
    threshold_ms = 5000
    (tmp_path / "policy.yaml").write_text(POLICY)
    pipeline.env.update(MAILSLA_THRESHOLD_TRANSACTIONAL_MS=str(threshold_ms), MAILSLA_IDLE_GRACE_S="2",
                        MAILSLA_POLICY=str(tmp_path / "policy.yaml"), MAILSLA_FAULT_INTERVAL_S="2")
    pipeline.start_worker()
    lab = postfix().start()
    ingest = IngestProc(pipeline, "postfix", lab.log, _config(tmp_path)).start()
    stalled: dict[str, float] = {}  # queue id -> time of its 250, accepted while the queue manager was stopped
    with Traffic(lab.port) as traffic:
        time.sleep(30)
        paused_at = time.time()
        assert lab.pause_qmgr()  # premise: there is a queue manager, and it is stopped now
        for _ in range(5):
            qid, at = submit(lab.port, "alice@acme.test", "r@dest.test", login=("alice@acme.test", "alice-pw"))
            stalled[qid] = at
            time.sleep(1)
        # mail still waiting past its threshold is already delayed: overdue rows appear during the stall
        deadline = time.monotonic() + 120
        while not pipeline.rows("SELECT 1 FROM mailsla.handling_times WHERE status = 'overdue' LIMIT 1"):
            assert time.monotonic() < deadline, "no overdue row while the queue manager was stopped"
            time.sleep(1)
        time.sleep(max(0.0, paused_at + 20 - time.time()))
        lab.resume_qmgr()
        resumed_at = time.time()
        time.sleep(170)  # a healthy window and the fault rule's hold after the incident
    assert not traffic.errors and traffic.sent > 1000
    assert resumed_at - paused_at >= 3 * threshold_ms / 1000  # premise: stopped well past the threshold

    total = traffic.sent + len(stalled)
    wait_rows(pipeline, "1", total)
    pipeline.wait_idle()
    rows = pipeline.rows("SELECT message_id, handling_ms, status FROM mailsla.handling_times")
    by_qid = {_qid(r["message_id"]): r for r in rows}
    assert len(rows) == len(by_qid) == total
    delays = postfix_first_delays(lab.log)
    assert [q for q, r in by_qid.items() if r["handling_ms"] != round(delays[q] * 1000)] == []
    for qid, at in stalled.items():  # late, by as long as the queue manager was stopped after its 250
        r = by_qid[qid]
        waited_ms = (resumed_at - at) * 1000
        assert r["status"] == "late" and waited_ms - 1000 <= r["handling_ms"] <= waited_ms + 10_000, (r, waited_ms)
    late = sum(r["status"] == "late" for r in rows)
    assert late >= len(stalled) and all(r["status"] in ("on_time", "late") for r in rows)
    assert sum(r["handling_ms"] > threshold_ms for r in rows) == late

    month = time.strftime("%Y-%m", time.gmtime(paused_at))
    sla = pipeline.json("sla", "--month", month, "--json")["classes"]["transactional"]
    assert (sla["total"], sla["delayed"]) == (total, late)
    faults = [f for f in pipeline.json("faults", "--json") if f["message_class"] == "transactional"]
    assert len(faults) == 1 and faults[0]["resolved_at"] is not None, faults
    assert faults[0]["delayed"] > 0 and faults[0]["peak_share"] > 0.10
    assert ingest.stop() == 0


ROW = ("SELECT message_id, account_id, message_class, accepted_at, ready_at, handling_ms, status "
       "FROM mailsla.handling_times ORDER BY message_id")


def test_two_rotations_and_a_sigkilled_ingest_lose_nothing_and_a_backfill_gives_the_same_rows(
        pipeline: Pipeline, postfix, tmp_path: Path, kafka) -> None:
    config = _config(tmp_path)
    pipeline.start_worker()
    lab = postfix()
    ingest = IngestProc(pipeline, "postfix", lab.log, config).start()
    lab.start()
    lab.smtp_source(300, sessions=4)
    ingest.wait(lambda c: c["events"]["accepted"] >= 300, what="300 accepted")
    lab.logrotate()  # renamed to maillog.<time> and gzipped by Postfix, a new maillog started
    with Traffic(lab.port, burst=10, every=0.2) as traffic:  # mail goes on the whole time
        ingest.wait(lambda c: c["events"]["accepted"] >= 450, what="reading the new file")
        assert ingest.stop(signal.SIGKILL) == -signal.SIGKILL  # in the middle of its work
        time.sleep(2)
        lab.logrotate()  # rotated again while the ingest is down: its file is now a .gz
        time.sleep(2)
        ingest.start()
        time.sleep(5)
    assert not traffic.errors
    rotated = sorted(lab.log.parent.glob("maillog.*.gz"))
    assert len(rotated) == 2  # premise: two rotations, the second one while the ingest was dead

    total = 300 + traffic.sent
    wait_rows(pipeline, "1", total)
    pipeline.wait_idle()
    follow = pipeline.rows(ROW)
    assert len(follow) == len({r["message_id"] for r in follow}) == total  # none lost, none twice
    assert ingest.counters()["lost"] is None  # the restart found its file inside the second .gz
    sla = pipeline.json("sla", "--month", time.strftime("%Y-%m"), "--json")["classes"]["transactional"]
    assert sla["total"] == total
    counters = pipeline.json("status", "--json")["counters"]
    print(f"DRILL ingest SIGKILL + two rotations: {total} messages, events produced again after the restart "
          f"(duplicates the join absorbed): {counters.get('duplicate_accepted', 0)} accepted, "
          f"{counters.get('duplicate_ready', 0)} queue-ready")
    delays = postfix_first_delays(lab.log)
    assert [r for r in follow if r["handling_ms"] != round(delays[_qid(r["message_id"])] * 1000)] == []
    ingest.stop()

    # the same logs from the start, rotated files included, into a pipeline of their own
    (tmp_path / "backfill").mkdir()
    other = Pipeline(tmp_path / "backfill", kafka)
    try:
        other.start_worker()
        run = other.cli("ingest", "postfix", str(lab.log), "--config", str(config), "--from-start", "--no-follow")
        assert run.returncode == 0
        other.wait_idle()
        assert other.rows(ROW) == follow
    finally:
        other.stop(signal.SIGKILL)
