"""What the Postfix and Exim parsers share: counters, the events they emit, their saved state, and
the syslog line prefix.

A parser is fed one decoded line at a time (`feed`), in file order, by `pipeline/ops/ingest.py`;
the events it emits wait in `out` until the caller takes them (`take`) and produces them. `state`
is saved with the file position only after Kafka acknowledged those events, and `restore` puts it
back after a restart, so the same lines give the same events again. Nothing here raises on bad
input: a line that cannot be used is counted under a reason and skipped.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.core.mta.logtime import LocalZone, StampError, YearGuess, classic, rfc3339
from pipeline.core.mta.mapping import IngestConfig, accepted_event, ready_event

MAX_LINE_CHARS = 16_384  # Postfix cuts its own records at 2,000+; longer is not an MTA line


class LineError(ValueError):
    """A line that is garbled or cut; str(exc) is the reason counted."""


class LogSource:
    """Base of `PostfixLog` and `EximLog`: the counters, the emitted events, the clock of the log."""

    kind = ""

    def __init__(self, cfg: IngestConfig, reference_ms: int) -> None:
        self.cfg = cfg
        self.zone = LocalZone(cfg.zone)
        self.years = YearGuess(self.zone, reference_ms)
        self.out: list[tuple[str, str, dict[str, Any]]] = []  # (accepted | ready, key, event)
        self.lines = 0
        self.emitted: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.garbled: Counter[str] = Counter()
        self.log_now = 0  # the newest stamp read (epoch ms): the log's own clock
        self.fine = False  # the last stamp had a fraction of a second
        self._hosts: dict[str, str] = {}
        self._stamp, self._stamp_ms = "", 0  # the last classic stamp read, and what it gave

    # -- emitting ---------------------------------------------------------------------------
    def emit_accepted(self, message_id: str, accepted_ms: int, mta: str, queue_id: str, **fields: Any) -> None:
        self.out.append(("accepted", message_id, accepted_event(self.cfg, message_id, accepted_ms, mta, queue_id,
                                                                **fields)))
        self.emitted["accepted"] += 1

    def emit_ready(self, message_id: str, ready_ms: int, mta: str) -> None:
        self.out.append(("ready", message_id, ready_event(message_id, ready_ms, mta)))
        self.emitted["queue_ready"] += 1

    def take(self) -> list[tuple[str, str, dict[str, Any]]]:
        out, self.out = self.out, []
        return out

    # -- lines ------------------------------------------------------------------------------
    def feed(self, line: str) -> None:
        """One line without its newline. Never raises: bad lines are counted."""
        self.lines += 1
        if len(line) > MAX_LINE_CHARS:
            self.garbled["too_long"] += 1
            return
        if "\x00" in line:
            self.garbled["binary"] += 1
            return
        try:
            self.handle(line)
        except StampError as exc:
            self.garbled[str(exc)] += 1
        except LineError as exc:
            self.garbled[str(exc)] += 1
        except (ValueError, IndexError):  # a known line cut short somewhere we did not foresee
            self.garbled["truncated"] += 1
        except Exception:  # noqa: BLE001 - a bug of ours must not stop the ingest: counted, the line skipped
            self.garbled["parser_error"] += 1

    def handle(self, line: str) -> None:
        raise NotImplementedError

    def tick(self, idle_ms: int) -> None:
        """Time passed without lines (follow mode): `idle_ms` of wall clock since the last line."""

    def stamp_ms(self, ms: int) -> int:
        if ms > self.log_now:
            self.log_now = ms
        return ms

    # -- the syslog prefix ----------------------------------------------------------------------
    def syslog(self, line: str) -> tuple[int, str, str, str]:
        """`STAMP HOST TAG: MESSAGE` -> (ms, host, tag, message); TAG is `prog[pid]` (or `prog`).
        STAMP is classic (`Dec 03 12:16:24`, `Dec  3 ...`, with or without a fraction) or RFC 3339."""
        if not line:
            raise LineError("no_timestamp")
        if line[0].isdigit():
            cut = line.find(" ")
            if cut < 0:
                raise StampError("no_timestamp")
            ms = rfc3339(line[:cut], self.zone)
            self.fine = line.find(".", 0, cut) > 0
        else:
            cut = line.find(" ", 15) if len(line) > 15 and line[15] == "." else 15
            if cut < 0 or cut > 40:
                raise StampError("no_timestamp")
            stamp = line[:cut]
            if stamp == self._stamp:  # a busy log writes hundreds of lines per second: read each second once
                ms = self._stamp_ms
            else:
                ms = classic(stamp, self.years)
                self._stamp, self._stamp_ms = stamp, ms
            self.fine = cut > 15
        if ms > self.log_now:
            self.log_now = ms
        host_end = line.find(" ", cut + 1)
        tag_end = line.find(": ", host_end + 1)
        if host_end < 0 or tag_end < 0:
            raise LineError("truncated")
        host = line[cut + 1:host_end]
        host = self._hosts.setdefault(host, host) if len(self._hosts) < 10_000 else host  # one copy per host
        return ms, host, line[host_end + 1:tag_end], line[tag_end + 2:]

    # -- state ------------------------------------------------------------------------------
    def counters(self) -> dict[str, Any]:
        return {"lines": self.lines, "events": {"accepted": self.emitted["accepted"],
                                                "queue_ready": self.emitted["queue_ready"]},
                "skipped": dict(sorted(self.skipped.items())), "garbled": dict(sorted(self.garbled.items()))}

    def state(self) -> dict[str, Any]:
        """Everything `restore` needs, JSON-able; saved with the position after Kafka acknowledged."""
        return {"kind": self.kind, "year": self.years.year, "last_ms": self.years.last_ms, "log_now": self.log_now,
                "lines": self.lines, "emitted": dict(self.emitted), "skipped": dict(self.skipped),
                "garbled": dict(self.garbled)}

    def restore(self, doc: dict[str, Any]) -> None:
        self.years.year, self.years.last_ms = doc.get("year"), doc.get("last_ms")
        self.log_now = int(doc.get("log_now") or 0)
        self.lines = int(doc.get("lines") or 0)
        self.emitted, self.skipped, self.garbled = (Counter(doc.get(k) or {}) for k in ("emitted", "skipped", "garbled"))
