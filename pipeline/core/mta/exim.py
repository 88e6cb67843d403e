"""Exim main-log lines -> accepted and queue-ready events, with a small state per message id.

The lines it reads (README: Ingesting MTA logs, Exim has the full mapping and the log_selector):

* `ID header X-Mailsla-Class: V` (our `logwrite` in `acl_smtp_data`, optional): class, priority;
  logged before the arrival line.
* `ID <= SENDER H=(helo) [addr] P=esmtpa A=<authenticator>:<login> S=... id=<Message-ID> ...`: the
  message is on the spool and the 250 goes out right after this line: accepted. Exim's own
  bounces (`R=<id>`) are not submissions: no event.
* the first delivery result, `ID => | -> | >> | *> | ** | == ... DT=<t>`: its attempt began at
  the line's stamp minus DT (`log_selector = +deliver_time`; `+millisec` makes both exact to the
  ms): ready_at. Later attempts of a deferred message find no state: no new event.
* `ID removed by <user>` (`exim -Mrm`) / `ID Completed` with no delivery line: gone before it was
  ready; it stays pending in the join and becomes never_ready.

Exim ids are unique per host (its clock, pid and a fraction of a second), and the log names no
host: message_id = `<host>/<id>`, the host from the configuration (`exim.host`).
"""
from __future__ import annotations

from typing import Any

from pipeline.core.mta.logtime import StampError, iso
from pipeline.core.mta.source import LineError, LogSource

DELIVERY = frozenset({"=>", "->", ">>", "*>", "**", "=="})
_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_UNITS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}


def is_exim_id(token: str) -> bool:
    """4.96 `1xZ7rN-0003LP-02` (6-6-2) or 4.97+ `1xZ7rN-000000000LP-0002` (6-11-4)."""
    n = len(token)
    if n == 16:
        ok = token[6] == "-" and token[13] == "-"
    elif n == 23:
        ok = token[6] == "-" and token[18] == "-"
    else:
        return False
    return ok and _ID_CHARS.issuperset(token.replace("-", ""))


def duration(text: str) -> int:
    """Exim's `1.234s`, `2m3s`, `1h`, `1d2h` -> ms."""
    total, num = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in _UNITS and num:
            total += float(num) * _UNITS[ch]
            num = ""
        else:
            raise LineError("truncated")
    if num or not text:
        raise LineError("truncated")
    return round(total)


def _field(text: str, key: str) -> str | None:
    """The value of ` KEY=value` up to the next space (None when absent)."""
    i = text.find(" " + key + "=")
    if i < 0:
        return None
    j = text.find(" ", i + len(key) + 2)
    return text[i + len(key) + 2:j if j >= 0 else len(text)]


class EximLog(LogSource):
    kind = "exim"

    def __init__(self, cfg: Any, reference_ms: int, host: str) -> None:
        super().__init__(cfg, reference_ms)
        self.host = host
        self.waiting: dict[str, list[Any]] = {}  # exim id -> [message_id, accepted ms]
        self.headers: dict[str, list[Any]] = {}  # exim id -> [class value, priority value, ms] before its arrival
        self._swept = 0

    def handle(self, line: str) -> None:
        ms, text = self._stamp_of(line)
        if text.startswith("["):  # +pid
            text = text[text.find("] ") + 2:] if "] " in text else ""
        token, _, rest = text.partition(" ")
        if not is_exim_id(token):
            self.skipped["unused"] += 1
            return
        flag = rest[:2]
        if flag == "<=":
            self._arrival(ms, token, rest[3:])
        elif flag in DELIVERY and rest[2:3] == " ":
            self._delivery(ms, token, rest)
        elif rest.startswith("header "):
            name, _, value = rest[7:].partition(":")
            name, value = name.strip().lower(), value.strip()
            h = self.headers.setdefault(token, [None, None, ms])
            if name == self.cfg.class_header:
                h[0] = value or None
            elif name == self.cfg.priority_header:
                h[1] = value or None
            else:
                self.skipped["unused"] += 1
        elif rest.startswith("removed by ") or rest == "Completed":
            if self.waiting.pop(token, None) is not None:
                self.skipped["removed_before_ready"] += 1
        elif " rejected after DATA" in rest or rest.startswith("SMTP data timeout"):
            self.headers.pop(token, None)
            self.skipped["not_accepted"] += 1
        else:
            self.skipped["unused"] += 1
        if self.log_now - self._swept > 60_000:
            self._sweep()

    def _stamp_of(self, line: str) -> tuple[int, str]:
        """`YYYY-MM-DD HH:MM:SS[.mmm] [+ZZZZ] rest` -> (ms, rest)."""
        if len(line) < 20 or not line[0].isdigit():
            raise StampError("no_timestamp")
        end = line.find(" ", 11)
        if end < 0:
            raise LineError("truncated")
        zone = None
        rest = line[end + 1:]
        if rest[:1] in ("+", "-") and rest[1:5].isdigit() and rest[5:6] in (" ", ""):
            zone, rest = rest[:5], rest[6:]
        ms = iso(line[:end], zone, self.zone)
        self.fine = "." in line[19:end]
        return self.stamp_ms(ms), rest

    def _arrival(self, ms: int, eid: str, rest: str) -> None:
        h = self.headers.pop(eid, None) or [None, None, ms]
        if " R=" in rest:
            self.skipped["local_origin"] += 1  # Exim's own bounce or warning for message R=
            return
        sender = rest.partition(" ")[0]
        auth = _field(rest, "A")
        sasl = auth.partition(":")[2] or None if auth else None
        ip = None
        i = rest.find(" H=")
        if i >= 0:
            a, b = rest.find("[", i), rest.find("]", i)
            ip = rest[a + 1:b] if 0 <= a < b else None
        hmid = _field(rest, "id")
        mid = f"{self.host}/{eid}"
        self.emit_accepted(mid, ms, self.host, eid, sasl=sasl, sender=None if sender == "<>" else sender,
                           client_ip=ip, class_value=h[0], priority_value=h[1], header_message_id=hmid)
        self.waiting[eid] = [mid, ms]

    def _delivery(self, ms: int, eid: str, rest: str) -> None:
        w = self.waiting.pop(eid, None)
        if w is None:
            self.skipped["no_state"] += 1  # a later attempt, or a message from before we started
            return
        dt = _field(rest, "DT")
        start = ms - duration(dt.rstrip(":")) if dt else ms
        self.emit_ready(w[0], max(start, w[1]), self.host)

    def _sweep(self) -> None:
        """Once a minute of log time: header lines whose arrival never came (rejected, the client
        gone); messages older than the horizon."""
        self._swept = self.log_now
        for eid in [e for e, h in self.headers.items() if h[2] < self.log_now - 3_600_000]:
            del self.headers[eid]
        horizon = self.log_now - self.cfg.horizon_ms
        for eid in [e for e, w in self.waiting.items() if w[1] < horizon]:
            del self.waiting[eid]
            self.skipped["expired"] += 1

    @property
    def in_flight(self) -> int:
        return len(self.waiting)

    def state(self) -> dict[str, Any]:
        return super().state() | {"waiting": self.waiting, "headers": self.headers}

    def restore(self, doc: dict[str, Any]) -> None:
        super().restore(doc)
        self.waiting = dict(doc.get("waiting") or {})
        self.headers = dict(doc.get("headers") or {})
