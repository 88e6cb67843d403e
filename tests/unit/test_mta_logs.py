"""The Postfix and Exim parsers over logs captured from the real daemons (scripts/capture-mta-logs.py:
tests/unit/data/mta/, each with the MTA's own answers in `<log>.truth.json`).

Every message the MTA accepted gives one accepted event with the account, class and priority of
the mapping, every one that became ready one queue-ready, deleted ones none; refused mail gives
nothing. handling_ms is checked against Postfix's own `delays=` (read here with a plain regex):
exactly, with handling `delays`; within the log's one-second stamps, with `timestamps`; within a
millisecond with rsyslog's microsecond stamps. A restart from any saved state gives the same events.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.events import parse_accepted, parse_ready, parse_ts
from pipeline.core.mta import mapping
from pipeline.core.mta.exim import EximLog, duration, is_exim_id
from pipeline.core.mta.postfix import PostfixLog
from pipeline.core.policy import merge, read_yaml

DATA = Path(__file__).parent / "data" / "mta"
NOW = parse_ts("2026-12-03T16:00:00Z", "now")  # when the fixtures were captured (the year of their stamps)
POSTFIX_LOGS = ["postfix.maillog", "postfix-long.maillog", "postfix-rsyslog.log"]


def config(**over: Any) -> mapping.IngestConfig:
    from importlib import resources

    doc = read_yaml((resources.files("pipeline.core.mta") / "ingest.yaml").read_text(), "ingest.yaml")
    mine = {"timezone": "UTC", "account": {"sender_domains": {"bulk.test": "bulk-co"},
                                           "client_networks": {"127.0.0.0/8": "loopback-co"}}}
    return mapping.parse(merge(merge(doc, mine), over))


def lines(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def truth(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"{name}.truth.json").read_text())


def parse(name: str, cfg: mapping.IngestConfig | None = None, feed: list[str] | None = None) -> tuple[Any, list]:
    cfg = cfg or config()
    p = PostfixLog(cfg, NOW) if "postfix" in name else EximLog(cfg, NOW, "mta2")
    for line in feed if feed is not None else lines(name):
        p.feed(line)
    p.tick(10**9)
    return p, p.take()


def by_queue_id(events: list) -> tuple[dict[str, dict], dict[str, dict]]:
    acc, ready = {}, {}
    for kind, key, doc in events:
        qid = key.split("/")[1]
        target = acc if kind == "accepted" else ready
        assert qid not in target, f"{kind} twice for {qid}"
        target[qid] = doc
    return acc, ready


def first_delays(name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in lines(name):
        m = re.search(r"postfix/\w+\[\d+\]: (\w+): to=<[^>]*>, .*?delays=([\d.]+)/", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = float(m.group(2))
    return out


@pytest.mark.parametrize("name", POSTFIX_LOGS + ["exim.mainlog"])
def test_every_accepted_message_gives_one_event_with_its_account_class_and_priority(name: str) -> None:
    want = truth(name)
    p, events = parse(name)
    acc, ready = by_queue_id(events)
    assert set(acc) == set(want["messages"])  # nothing for refused mail, nothing twice
    for qid, w in want["messages"].items():
        doc = acc[qid]
        assert (doc["account_id"], doc["message_class"], doc.get("priority", "normal")) == \
            (w["account_id"], w["message_class"], w["priority"]), qid
        assert parse_accepted(orjson.dumps(doc)).message_id == doc["message_id"]  # the contract holds
    assert set(ready) == set(want["messages"]) - set(want["deleted"])  # deleted before ready: pending
    for doc in ready.values():
        assert parse_ready(orjson.dumps(doc)).ready_at >= parse_ts(acc[doc["message_id"].split("/")[1]]["accepted_at"], "a")
    assert p.skipped["removed_before_ready"] == len(want["deleted"]) == 2
    assert want["refused"] == 2 and p.skipped["not_accepted"] >= 1
    assert p.garbled == {} and p.in_flight == 0


def test_message_ids_are_host_and_queue_id_plus_arrival_where_queue_ids_repeat() -> None:
    _, short = parse("postfix.maillog")
    _, long = parse("postfix-long.maillog")
    _, exim = parse("exim.mainlog")
    assert all(re.fullmatch(r"mta1/[0-9A-F]+/\d{10}", key) for _, key, _ in short)  # short ids are reused
    assert all(re.fullmatch(r"mta1/\w{15,}", key) for _, key, _ in long)  # enable_long_queue_ids: unique
    assert all(key.startswith("mta2/") and is_exim_id(key[5:]) for _, key, _ in exim)
    acc, _ = by_queue_id(short)
    assert {d["mta"] for d in acc.values()} == {"mta1"}
    assert all(d["header_message_id"] and d["queue_id"] in d["message_id"] for d in acc.values())


@pytest.mark.parametrize("name", ["postfix.maillog", "postfix-long.maillog"])
def test_postfix_handling_is_postfix_own_delays_exactly_or_within_a_second_from_the_stamps(name: str) -> None:
    delays = first_delays(name)
    for handling, tolerance in (("delays", 0), ("timestamps", 1000 + 10)):
        acc, ready = by_queue_id(parse(name, config(postfix={"handling": handling}))[1])
        assert ready
        for qid, doc in ready.items():
            ms = parse_ts(doc["ready_at"], "r") - parse_ts(acc[qid]["accepted_at"], "a")
            assert abs(ms - round(delays[qid] * 1000)) <= tolerance, (handling, qid, ms, delays[qid])


def test_rsyslog_microsecond_stamps_measure_from_the_end_of_data_to_queue_active() -> None:
    """`auto` takes the stamps when they have fractions: the 250 moment to (queue active), which
    Postfix's a (from MAIL FROM, to 10 ms) exceeds by the SMTP transaction only."""
    name = "postfix-rsyslog.log"
    delays = first_delays(name)
    acc, ready = by_queue_id(parse(name)[1])
    for qid, doc in ready.items():
        ms = parse_ts(doc["ready_at"], "r") - parse_ts(acc[qid]["accepted_at"], "a")
        assert 0 <= ms <= round(delays[qid] * 1000) + 10, (qid, ms, delays[qid])
        assert not doc["ready_at"].endswith(":00.000Z") or ms  # milliseconds kept, not whole seconds
    assert any(parse_ts(d["accepted_at"], "a") % 1000 for d in acc.values())


def test_exim_ready_is_the_start_of_the_first_delivery_attempt() -> None:
    """The first delivery line's stamp minus its DT (log_selector +deliver_time, +millisec)."""
    name = "exim.mainlog"
    _, ready = by_queue_id(parse(name)[1])
    firsts: dict[str, int] = {}
    for line in lines(name):
        m = re.match(r"(\S+ \S+ \S+) \[\d+\] (\S+) (=>|==|\*\*) .*DT=([\w.]+)", line)
        if m and m.group(2) not in firsts:
            firsts[m.group(2)] = parse_ts(m.group(1).replace(" ", "T", 1).replace(" +0000", "Z"), "t") \
                - duration(m.group(4).rstrip(":"))
    assert firsts and {q: parse_ts(d["ready_at"], "r") for q, d in ready.items()} == firsts


@pytest.mark.parametrize("name", POSTFIX_LOGS + ["exim.mainlog"])
def test_a_restart_from_any_saved_state_gives_the_same_events(name: str) -> None:
    """What `mailsla ingest` does after a SIGKILL: the state saved with a position, restored, the
    lines after it fed again. Every cut gives the events of one uninterrupted pass."""
    cfg = config(postfix={"handling": "delays"})
    everything = lines(name)
    _, whole = parse(name, cfg)
    for cut in range(0, len(everything), 7):
        first, head = parse(name, cfg, everything[:cut])
        state = json.loads(json.dumps(first.state()))
        second = PostfixLog(cfg, NOW) if "postfix" in name else EximLog(cfg, NOW, "mta2")
        second.restore(state)
        for line in everything[cut:]:
            second.feed(line)
        second.tick(10**9)
        assert head + second.take() == whole, cut


@pytest.mark.parametrize("name", POSTFIX_LOGS + ["exim.mainlog"])
def test_other_daemons_and_garbled_lines_change_nothing_and_are_counted(name: str) -> None:
    real = lines(name)
    _, clean = parse(name)
    stamp = real[5].split(" ")[0] + " " + real[5].split(" ")[1] if "exim" in name else real[5][:real[5].find(" ", 16)]
    noise = [f"{stamp} mta1 sshd[4242]: Accepted publickey for root from 192.0.2.7 port 2222",
             "", "\x00\x00\x00\x00", "x" * 20_000, "garbage", "Dec 32 25:61:00 mta1 postfix/smtpd[1]: x",
             real[7][: len(real[7]) // 2]]
    rnd = random.Random(19)
    mixed = list(real)
    for line in noise:
        mixed.insert(rnd.randrange(len(mixed)), line)
    p, events = parse(name, feed=mixed)
    assert {(k, key) for k, key, _ in events} == {(k, key) for k, key, _ in clean}
    assert p.lines == len(mixed)
    assert p.garbled["binary"] == 1 and p.garbled["too_long"] == 1
    assert sum(p.garbled.values()) >= 4


def test_mutated_lines_never_raise() -> None:
    """Bytes flipped, cut and doubled in real lines: counted or used, never an exception (the ingest
would count one as `parser_error` and go on; here it fails the test)."""
    rnd, cfg = random.Random(7), config()
    for name in POSTFIX_LOGS + ["exim.mainlog"]:
        real = lines(name)
        for _ in range(3000):
            line = list(rnd.choice(real))
            for _ in range(rnd.randint(1, 4)):
                i = rnd.randrange(len(line))
                op = rnd.random()
                if op < 0.4:
                    line[i] = chr(rnd.randrange(32, 127))
                elif op < 0.7:
                    del line[i:]
                    if not line:
                        line = ["x"]
                else:
                    line.insert(i, rnd.choice(["[", "]", ": ", "<", ">", " ", "=", "/", "."]))
            p, _ = parse(name, cfg, feed=["".join(line)])
            assert "parser_error" not in p.garbled, "".join(line)  # a bug of ours is counted, never hidden here


def test_the_bench_log_has_only_shapes_the_parser_uses(tmp_path: Path) -> None:
    """`mailsla bench` measures the ingest on pipeline/ops/ingestbench.py's log: every line of it must
    take the real path (no line skipped or garbled), two events per message."""
    from pipeline.ops.ingestbench import LINES, write_log

    n = write_log(tmp_path / "maillog", 500)
    p, events = parse("postfix.maillog", config(postfix={"handling": "delays"}),
                      (tmp_path / "maillog").read_text().splitlines())
    assert n == 500 * len(LINES) == p.lines
    assert (p.emitted["accepted"], p.emitted["queue_ready"], len(events)) == (500, 500, 1000)
    assert p.skipped == {} and p.garbled == {}


@pytest.mark.parametrize("name", POSTFIX_LOGS + ["exim.mainlog"])
def test_the_events_follow_the_json_schemas(name: str) -> None:
    import jsonschema

    root = Path(__file__).resolve().parents[2] / "schemas"
    schemas = {kind: json.loads((root / f"mta.{file}.schema.json").read_text())
               for kind, file in (("accepted", "accepted"), ("ready", "queue_ready"))}
    _, events = parse(name)
    assert events
    for kind, key, doc in events:
        jsonschema.validate(doc, schemas[kind])
        assert key == doc["message_id"]


def test_mail_a_content_filter_hands_back_gives_no_second_message() -> None:
    """The lines of a real smtpd under the syslog name a content filter's return service gets
    (`-o syslog_name=postfix/reinject`): with `postfix.reinjection` naming it, they give no event."""
    real = lines("postfix.maillog")
    back = [line.replace("postfix/smtpd[", "postfix/reinject/smtpd[") for line in real]
    _, plain = parse("postfix.maillog", feed=back)
    assert plain  # without the setting, such a session is mail like any other
    p, events = parse("postfix.maillog", config(postfix={"reinjection": ["postfix/reinject"]}), back)
    assert events == [] and p.skipped["reinjected"] > 0
