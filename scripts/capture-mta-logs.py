#!/usr/bin/env python3
"""Capture the unit-test fixtures of `mailsla ingest` from real daemons (issue #19).

Runs two private Postfix instances (short queue ids with the end-of-data INFO line; long queue ids
without it) and one Exim (pipeline/ops/postfixlab.py, eximlab.py; `make install-mta` first, as
root), sends the same scripted mail to each and writes, under tests/unit/data/mta/:

* `postfix.maillog`, `postfix-long.maillog`, `exim.mainlog`: the logs as the daemons wrote them;
* `postfix-rsyslog.log`: a third Postfix logging through syslog(3) to an rsyslogd of this script
  with rsyslog's high-precision RSYSLOG_FileFormat (RFC 3339 stamps, microseconds); only when the
  machine has rsyslogd and no syslog daemon of its own (this one owns /dev/log while it runs);
* `<log>.truth.json`: what the MTA answered, per queue id (from its own 250 replies): the account,
  class and priority the row must get, and which messages were deleted before they were ready;
  plus the queue ids of the mail it refused after DATA.

    .venv/bin/python scripts/capture-mta-logs.py
"""
from __future__ import annotations

import json
import shutil
import smtplib
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from mtas import session, submit  # noqa: E402
from pipeline.ops.eximlab import EximLab, missing as exim_missing  # noqa: E402
from pipeline.ops.postfixlab import PostfixLab, missing as postfix_missing  # noqa: E402

OUT = ROOT / "tests" / "unit" / "data" / "mta"
ACCOUNTS = {"alice@acme.test": "alice-pw", "bob@beta.test": "bob-pw"}
ALICE, BOB = ("alice@acme.test", "alice-pw"), ("bob@beta.test", "bob-pw")


def cut_in_data(port: int) -> None:
    """A client that goes away in the middle of DATA: no 250, no event."""
    s = smtplib.SMTP("127.0.0.1", port, "client.test", timeout=30)
    s.ehlo()
    s.mail("gone@other.test")
    s.rcpt("r@dest.test")
    s.putcmd("DATA")
    s.getreply()
    s.send(b"Subject: cut\r\nX-Mailsla-Class: campaign\r\n\r\nthe first line of a body that never ends\r\n")
    time.sleep(0.3)
    s.sock.shutdown(socket.SHUT_RDWR)
    s.sock.close()


def script(lab, pause, resume, delete) -> dict:
    """The same mail for every MTA; returns the truth."""
    truth: dict = {"messages": {}, "deleted": [], "refused": 0}

    def keep(qid: str, account: str, cls: str = "transactional", priority: str = "normal") -> None:
        truth["messages"][qid] = {"account_id": account, "message_class": cls, "priority": priority}
    with session(lab.port, ALICE) as s:
        for cls in ("campaign", "campaign", "transactional"):
            keep(submit(lab.port, "alice@acme.test", "r@dest.test", headers={"X-Mailsla-Class": cls}, session=s)[0],
                 "alice@acme.test", cls)
    keep(submit(lab.port, "bob@beta.test", "r@dest.test", login=BOB, headers={"X-Mailsla-Priority": "low"})[0],
         "bob@beta.test", priority="low")
    keep(submit(lab.port, "bob@beta.test", "r@dest.test", login=BOB, headers={"x-mailsla-class": "Bulk"})[0],
         "bob@beta.test", "campaign")
    keep(submit(lab.port, "news@bulk.test", "r@dest.test")[0], "bulk-co")  # no login: by sender domain
    keep(submit(lab.port, "someone@other.test", "r@dest.test")[0], "loopback-co")  # by client network
    keep(submit(lab.port, "alice@acme.test", "x@defer.test", login=ALICE)[0], "alice@acme.test")  # deferred
    for rcpt, headers in (("r@reject.test", {}), ("r@dest.test", {"X-Test-Reject": "yes"})):
        try:
            submit(lab.port, "bob@beta.test", rcpt, login=BOB, headers=headers)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError):
            truth["refused"] += 1
    cut_in_data(lab.port)
    pause()
    for _ in range(2):
        qid = submit(lab.port, "alice@acme.test", "r@dest.test", login=ALICE)[0]
        keep(qid, "alice@acme.test")
        truth["deleted"].append(qid)
    time.sleep(1)
    for qid in truth["deleted"]:
        delete(qid)
    time.sleep(2)
    resume()
    time.sleep(3)
    return truth


RSYSLOG_CONF = """\
module(load="imuxsock" SysSock.Name="/dev/log")
mail.* action(type="omfile" file="{out}" template="RSYSLOG_FileFormat")
"""


def rsyslog(out: Path) -> None:
    if shutil.which("rsyslogd") is None or Path("/dev/log").exists():
        print("capture-mta-logs: no rsyslogd, or /dev/log is someone else's: postfix-rsyslog.log not captured")
        return
    import subprocess
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    raw = tmp / "mail.log"
    (tmp / "rsyslog.conf").write_text(RSYSLOG_CONF.format(out=raw))
    daemon = subprocess.Popen(["rsyslogd", "-n", "-f", str(tmp / "rsyslog.conf"), "-i", str(tmp / "pid")])
    try:
        for _ in range(50):
            if Path("/dev/log").exists():
                break
            time.sleep(0.1)
        lab = PostfixLab(host="mta3", accounts=ACCOUNTS, syslog_file=raw).start()
        try:
            truth = script(lab, lab.pause_qmgr, lab.resume_qmgr, lambda q: lab.postsuper("-d", q))
        finally:
            lab.stop()
        time.sleep(1)
        lab.remove()
    finally:
        daemon.terminate()
        daemon.wait(10)
        Path("/dev/log").unlink(missing_ok=True)
    # only this instance's lines (the machine's other programs may have logged to mail.* meanwhile)
    lines = [line for line in raw.read_text().splitlines() if " postfix/" in line and str(lab.root) not in line]
    out.write_text("\n".join(lines) + "\n")
    (out.parent / f"{out.name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    for reason in (postfix_missing(), exim_missing()):
        if reason:
            print(f"capture-mta-logs: {reason}", file=sys.stderr)
            return 2
    OUT.mkdir(parents=True, exist_ok=True)
    for name, kw in (("postfix.maillog", {}), ("postfix-long.maillog", {"long_ids": True, "eod_marker": False})):
        lab = PostfixLab(accounts=ACCOUNTS, **kw).start()
        try:
            truth = script(lab, lab.pause_qmgr, lab.resume_qmgr, lambda q: lab.postsuper("-d", q))
        finally:
            lab.stop()
        shutil.copy(lab.log, OUT / name)
        (OUT / f"{name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
        lab.remove()
    rsyslog(OUT / "postfix-rsyslog.log")
    lab = EximLab(accounts=ACCOUNTS).start()
    try:
        truth = script(lab, lab.pause_queue, lab.resume_queue, lab.delete)
    finally:
        lab.stop()
    shutil.copy(lab.log, OUT / "exim.mainlog")
    (OUT / "exim.mainlog.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    lab.remove()
    for p in OUT.iterdir():
        p.chmod(0o644)  # Exim writes 0640
    print(f"written: {sorted(p.name for p in OUT.iterdir())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
