"""`mailsla bench`'s figure for `mailsla ingest`: Postfix log lines per second, parsed and produced.

A log of `messages` messages is written from the line shapes of a real Postfix 3.7 (the fixtures'
capture, tests/unit/data/mta/postfix.maillog: connect, client= with SASL, the end-of-data INFO, the
class header INFO, message-id, queue active, the delivery with delays=, removed, disconnect: 9
lines a message), then read whole by the real `Ingest` (--from-start --no-follow) into topics of
its own on the bench's broker, acks=all, until everything was acknowledged and saved. The rate is
lines over that time; `parse_lines_per_s` is the parser alone, for where the time goes.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.core.config import Settings
from pipeline.core.mta import mapping
from pipeline.core.mta.postfix import PostfixLog

LINES = (  # {t} stamp, {q} queue id, {p} smtpd pid, {n} message number
    "{t} mta1 postfix/smtpd[{p}]: connect from localhost[127.0.0.1]",
    "{t} mta1 postfix/smtpd[{p}]: {q}: client=localhost[127.0.0.1], sasl_method=PLAIN, "
    "sasl_username=user{a}@acme.test",
    "{t} mta1 postfix/smtpd[{p}]: {q}: info: END-OF-MESSAGE from localhost[127.0.0.1]: end-of-data; "
    "from=<user{a}@acme.test> to=<r@dest.test> proto=ESMTP helo=<client.test>",
    "{t} mta1 postfix/cleanup[12710]: {q}: info: header X-Mailsla-Class: campaign from localhost[127.0.0.1]; "
    "from=<user{a}@acme.test> to=<r@dest.test> proto=ESMTP helo=<client.test>",
    "{t} mta1 postfix/cleanup[12710]: {q}: message-id=<{n}.{q}@mta1.test>",
    "{t} mta1 postfix/qmgr[12705]: {q}: from=<user{a}@acme.test>, size=424, nrcpt=1 (queue active)",
    "{t} mta1 postfix/smtpd[{p}]: disconnect from localhost[127.0.0.1] ehlo=1 auth=1 mail=1 rcpt=1 data=1 "
    "quit=1 commands=6",
    "{t} mta1 postfix/smtp[12711]: {q}: to=<r@dest.test>, relay=127.0.0.1[127.0.0.1]:36471, delay=0.04, "
    "delays=0.02/0.02/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
    "{t} mta1 postfix/qmgr[12705]: {q}: removed",
)


def write_log(path: Path, messages: int, start_s: int = 1_796_300_000) -> int:
    """A maillog of `messages` messages, 100 a second of log time; returns its line count."""
    n = 0
    with open(path, "w") as f:
        for i in range(messages):
            t = time.strftime("%b %d %H:%M:%S", time.gmtime(start_s + i // 100))
            fields = {"t": t, "q": f"{0x10000000000 + i * 7919:011X}", "p": 20000 + i % 40, "n": i, "a": i % 200}
            f.write("\n".join(line.format(**fields) for line in LINES) + "\n")
            n += len(LINES)
    return n


def measure(settings: Settings, messages: int = 100_000) -> dict[str, Any]:
    """Lines/s through the whole ingest (parse, produce, acks, checkpoint) and through the parser alone."""
    from pipeline.ops.ingest import Ingest

    tag = f"{int(time.time())}"
    s = replace(settings, data_dir=settings.data_dir / "ingest-bench", topic_accepted=f"ingest-bench-{tag}.accepted",
                topic_ready=f"ingest-bench-{tag}.queue_ready")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    log = s.data_dir / "maillog"
    lines = write_log(log, messages)
    cfg = mapping.parse({"timezone": "UTC", "postfix": {"handling": "delays"}})

    parser = PostfixLog(cfg, int(time.time() * 1000))
    t0 = time.perf_counter()
    with open(log, "rb") as f:
        for raw in f:
            parser.feed(raw[:-1].decode("utf-8", "replace"))
    parse_rate = lines / (time.perf_counter() - t0)

    ingest = Ingest(s, "postfix", [log], cfg, from_start=True, follow=False, host=None)
    t0 = time.perf_counter()
    asyncio.run(ingest.run())
    elapsed = time.perf_counter() - t0
    return {"lines": lines, "messages": messages, "events": ingest.sent, "lines_per_s": lines / elapsed,
            "parse_lines_per_s": parse_rate, "seconds": elapsed}
