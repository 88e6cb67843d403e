"""Postfix log lines -> accepted and queue-ready events, with a small state per queue id.

The lines it reads (README: Ingesting MTA logs, Postfix has the full mapping):

* `smtpd: QID: client=host[addr], sasl_method=..., sasl_username=U`: a message starts in an SMTP
  session; the account may come from U.
* `smtpd: QID: info: END-OF-MESSAGE from ...; from=<S> to=<R> ...` (our `smtpd_end_of_data_restrictions`
  INFO, optional): the client sent the whole message; logged just before the 250, it is the
  accepted moment. Without it: the cleanup's last line (`message-id=`, the end of the headers).
* `cleanup: QID: info: header X-Mailsla-Class: V from ...` (`header_checks` INFO): class, priority.
* `cleanup: QID: message-id=<M>`: the header Message-ID, kept as `header_message_id`.
* The message is accepted (an event) once the session went on past it (the same smtpd logs its
  next message, a disconnect, a lost connection after END-OF-MESSAGE, ...) or qmgr took it; a
  `reject:`/`discard:` line or a connection lost in DATA means no 250: no event.
* `qmgr: QID: from=<S>, size=N, nrcpt=M (queue active)`: ready for delivery. Only the first one
  counts: the state of a message is dropped once its queue-ready is out, so a deferred message's
  later `(queue active)` finds none and is no new event.
* the first delivery attempt (`smtp|lmtp|local|virtual|pipe|error|...: QID: to=<R>, ...,
  delays=a/b/c/d, ... status=...`): with handling `delays`, ready_at = accepted_at + a.
* `postsuper: QID: removed`, `qmgr: QID: removed`: the message is gone; deleted before it was
  ready, it stays pending in the join and becomes never_ready.

Queue ids: a long queue id (enable_long_queue_ids) is unique by construction, message_id =
`host/QID`; short ones (hex) are reused, so message_id = `host/QID/<first line, epoch s>`.
"""
from __future__ import annotations

import time
from typing import Any

from pipeline.core.mta.source import LineError, LogSource

AGENTS = frozenset({"smtp", "lmtp", "local", "virtual", "pipe", "error", "retry", "discard"})
_HEX = frozenset("0123456789ABCDEF")


class Msg:
    """One message in flight: seen in the log, not yet ready (or its ready held for `delays=`)."""

    __slots__ = ("mid", "qid", "host", "t0", "sasl", "ip", "sender", "cls", "prio", "hmid", "t_eod",
                 "t_clean", "session", "accepted", "t_acc", "t_active", "held_at")

    def __init__(self, mid: str, qid: str, host: str, t0: int) -> None:
        self.mid, self.qid, self.host, self.t0 = mid, qid, host, t0
        self.sasl = self.ip = self.sender = self.cls = self.prio = self.hmid = None
        self.t_eod = self.t_clean = self.t_acc = self.t_active = None
        self.session: str | None = None
        self.accepted = False
        self.held_at = 0.0  # monotonic time the ready was held (not saved: a restart holds again)

    FIELDS = ("mid", "qid", "host", "t0", "sasl", "ip", "sender", "cls", "prio", "hmid", "t_eod", "t_clean",
              "session", "accepted", "t_acc", "t_active")

    def dump(self) -> list[Any]:
        return [getattr(self, f) for f in self.FIELDS]

    @classmethod
    def load(cls, row: list[Any]) -> "Msg":
        m = cls(*row[:4])
        for f, v in zip(cls.FIELDS[4:], row[4:]):
            setattr(m, f, v)
        m.held_at = time.monotonic()
        return m


def _angle(text: str, key: str) -> str | None:
    """The value of `key<...>` in text (`from=<a@b>` -> 'a@b'), or None."""
    i = text.find(key + "<")
    if i < 0:
        return None
    j = text.find(">", i + len(key) + 1)
    return text[i + len(key) + 1:j] if j >= 0 else None


def _client_ip(text: str) -> str | None:
    """`client=name[addr]` / `from name[addr]` -> addr."""
    i, j = text.find("["), text.find("]")
    return text[i + 1:j] if 0 <= i < j else None


class PostfixLog(LogSource):
    kind = "postfix"

    def __init__(self, cfg: Any, reference_ms: int) -> None:
        super().__init__(cfg, reference_ms)
        self.msgs: dict[str, Msg] = {}  # "host qid" -> in flight
        self.sessions: dict[str, str] = {}  # "host prog[pid]" of an smtpd -> "host qid" of its open message
        self.held: dict[str, Msg] = {}  # ready seen, waiting for delays= (handling: delays)
        self._swept = 0

    # -- the lines ---------------------------------------------------------------------------
    def handle(self, line: str) -> None:
        ms, host, tag, text = self.syslog(line)
        slash = tag.rfind("/")
        if slash < 0 or not tag.startswith(self.cfg.syslog_name):
            self.skipped["other_daemon"] += 1
            return
        bracket = tag.find("[", slash)
        daemon = tag[slash + 1:bracket] if bracket > 0 else tag[slash + 1:]
        colon = text.find(": ")
        qid = text[:colon] if 0 < colon <= 20 else ""
        if qid and not (qid.isalnum() and qid.isascii()) or qid == "NOQUEUE":
            qid = ""
        if daemon == "smtpd":
            if self.cfg.reinjection and tag[:slash] in self.cfg.reinjection:
                self.skipped["reinjected"] += 1  # a content filter's way back: counted when it first came in
                return
            self._smtpd(ms, host, f"{host} {tag}", qid, text[colon + 2:] if qid else text)
        elif not qid:
            self.skipped["unused"] += 1
        elif daemon == "qmgr":
            self._qmgr(ms, host, qid, text[colon + 2:])
        elif daemon == "cleanup":
            self._cleanup(ms, host, qid, text[colon + 2:])
        elif daemon in AGENTS:
            self._delivery(ms, host, qid, text[colon + 2:])
        elif daemon == "pickup":
            self._pickup(ms, host, qid, text[colon + 2:])
        elif daemon == "postsuper":
            self._postsuper(host, qid, text[colon + 2:])
        else:
            self.skipped["unused"] += 1
        if self.log_now - self._swept > 60_000:
            self._sweep()

    def _smtpd(self, ms: int, host: str, session: str, qid: str, rest: str) -> None:
        if qid:
            if rest.startswith("client="):
                self._close(session, failed=False)
                mid = f"{host}/{qid}" if not _HEX.issuperset(qid) else f"{host}/{qid}/{ms // 1000}"
                m = self.msgs[f"{host} {qid}"] = Msg(mid, qid, host, ms)
                m.ip, m.session = _client_ip(rest), session
                i = rest.find("sasl_username=")
                if i >= 0:
                    j = rest.find(", ", i)
                    m.sasl = rest[i + 14:j if j >= 0 else len(rest)] or None
                self.sessions[session] = f"{host} {qid}"
                return
            m = self.msgs.get(f"{host} {qid}")
            if m is None:
                self.skipped["no_state"] += 1
            elif "END-OF-MESSAGE" in rest[:40] and rest.startswith(("info:", "warn:", "permit:")):
                m.t_eod, m.sender = ms, _angle(rest, "from=")
            elif rest.startswith(("reject:", "discard:", "milter-reject:", "milter-discard:")):
                self._drop(m, "not_accepted")
            else:
                self.skipped["unused"] += 1
            return
        # session lines: whatever the smtpd does next, its open message is settled
        if rest.startswith(("connect from", "disconnect from")):
            self._close(session, failed=False)
        elif rest.startswith(("lost connection after ", "timeout after ", "too many errors after ")):
            after = rest[rest.find("after ") + 6:]
            self._close(session, failed=after.startswith("DATA") or after.startswith("BDAT"))
        else:
            self.skipped["unused"] += 1

    def _close(self, session: str, failed: bool) -> None:
        """The smtpd moved past its open message: accepted (event), or not (no 250: dropped)."""
        key = self.sessions.pop(session, None)
        m = self.msgs.get(key) if key else None
        if m is None or m.accepted:
            return
        if failed and m.t_eod is None or m.t_eod is None and m.t_clean is None:
            self._drop(m, "not_accepted")  # the DATA never completed (or never started): no 250
        else:
            self._accept(m)

    def _accept(self, m: Msg) -> None:
        if m.accepted:
            return
        m.accepted = True
        m.t_acc = m.t_eod if m.t_eod is not None else m.t_clean if m.t_clean is not None else m.t0
        self.emit_accepted(m.mid, m.t_acc, m.host, m.qid, sasl=m.sasl, sender=m.sender, client_ip=m.ip,
                           class_value=m.cls, priority_value=m.prio, header_message_id=m.hmid)
        m.sasl = m.ip = m.sender = m.cls = m.prio = m.hmid = None  # only the ready is left to find: stay small

    def _drop(self, m: Msg, reason: str | None) -> None:
        self.msgs.pop(f"{m.host} {m.qid}", None)
        self.held.pop(f"{m.host} {m.qid}", None)
        if m.session and self.sessions.get(m.session) == f"{m.host} {m.qid}":
            del self.sessions[m.session]
        if reason:
            self.skipped[reason] += 1

    def _cleanup(self, ms: int, host: str, qid: str, rest: str) -> None:
        m = self.msgs.get(f"{host} {qid}")
        if m is None:
            self.skipped["local_origin" if rest.startswith("message-id=") else "no_state"] += 1
            return
        if rest.startswith("message-id="):
            m.t_clean = ms
            m.hmid = rest[11:].strip().strip("<>") or None
        elif rest.startswith("info: header "):
            name, _, value = rest[13:].partition(":")
            cut = value.rfind("; from=<")
            cut = value.rfind(" from ", 0, cut) if cut >= 0 else -1
            if cut < 0:
                raise LineError("truncated")
            m.t_clean = ms
            name = name.strip().lower()
            if name == self.cfg.class_header:
                m.cls = value[:cut].strip()
            elif name == self.cfg.priority_header:
                m.prio = value[:cut].strip()
        elif rest.startswith(("reject:", "discard:", "milter-reject:", "milter-discard:")):
            self._drop(m, "not_accepted")
        else:
            self.skipped["unused"] += 1

    def _pickup(self, ms: int, host: str, qid: str, rest: str) -> None:
        if not rest.startswith("uid="):
            self.skipped["unused"] += 1
            return
        mid = f"{host}/{qid}" if not _HEX.issuperset(qid) else f"{host}/{qid}/{ms // 1000}"
        m = self.msgs[f"{host} {qid}"] = Msg(mid, qid, host, ms)
        m.sender = _angle(rest, "from=")

    def _qmgr(self, ms: int, host: str, qid: str, rest: str) -> None:
        if rest.endswith("(queue active)"):
            m = self.msgs.get(f"{host} {qid}")
            if m is None:
                self.skipped["no_state"] += 1  # a retry after its ready, or a message from before we started
                return
            if m.sender is None:
                m.sender = _angle(rest, "from=")
            if m.t_active is not None:
                return
            self._accept(m)
            delays = self.cfg.handling == "delays" or (self.cfg.handling == "auto" and not self.fine)
            if delays:
                m.t_active, m.held_at = ms, time.monotonic()
                self.held[f"{host} {qid}"] = m
            else:
                self.emit_ready(m.mid, ms, m.host)
                self._drop(m, None)
        elif rest == "removed":
            m = self.msgs.get(f"{host} {qid}")
            if m is not None:
                self._gone(m)
        else:
            self.skipped["unused"] += 1

    def _postsuper(self, host: str, qid: str, rest: str) -> None:
        m = self.msgs.get(f"{host} {qid}")
        if m is not None and rest.startswith("removed"):
            if not m.accepted and (m.t_eod is not None or m.t_clean is not None):
                self._accept(m)  # it was in the queue: the 250 had been given
            self._gone(m)
        else:
            self.skipped["unused"] += 1

    def _gone(self, m: Msg) -> None:
        """Removed from the queue: a held ready goes out with its line's stamp; a message never ready
        stays pending in the join (never_ready)."""
        if m.t_active is not None:
            self.emit_ready(m.mid, m.t_active, m.host)
            self._drop(m, None)
        else:
            self._drop(m, "removed_before_ready")

    def _delivery(self, ms: int, host: str, qid: str, rest: str) -> None:
        m = self.held.get(f"{host} {qid}")
        if m is None:
            self.skipped["unused"] += 1
            return
        i = rest.find(", delays=")
        if i < 0:
            self.skipped["unused"] += 1
            return
        first = rest[i + 9:rest.find("/", i)]
        try:
            a_ms = round(float(first) * 1000)
        except ValueError:
            raise LineError("truncated") from None
        if not 0 <= a_ms < 400 * 86_400_000:
            raise LineError("truncated")
        # by the log's own clock only, so following and backfilling decide alike
        late = ms - m.t_active > self.cfg.delays_wait_ms
        self.emit_ready(m.mid, m.t_active if late else m.t_acc + a_ms, m.host)
        self._drop(m, None)

    # -- time ---------------------------------------------------------------------------------
    def tick(self, idle_ms: int) -> None:
        """Held readies whose delivery line did not come within `delays_wait` take the (queue
        active) stamp: by the log's clock, or (following a log gone quiet) by the wall clock."""
        if not self.held:
            return
        wait = self.cfg.delays_wait_ms
        now = time.monotonic()
        for m in list(self.held.values()):
            # 1 s of margin: lines of different processes can reach the log a second out of order
            if self.log_now - m.t_active > wait + 1000 or (idle_ms > wait and (now - m.held_at) * 1000 > wait + 2000):
                self.emit_ready(m.mid, m.t_active, m.host)
                self._drop(m, None)

    def _sweep(self) -> None:
        """Once a minute of log time: held readies past their wait; messages older than the horizon."""
        self._swept = self.log_now
        self.tick(0)
        horizon = self.log_now - self.cfg.horizon_ms
        for m in [m for m in self.msgs.values() if m.t0 < horizon]:
            self._drop(m, "expired")

    # -- state ----------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return len(self.msgs)

    def state(self) -> dict[str, Any]:
        return super().state() | {"msgs": [m.dump() for m in self.msgs.values()], "sessions": self.sessions,
                                  "held": list(self.held)}

    def restore(self, doc: dict[str, Any]) -> None:
        super().restore(doc)
        self.msgs = {f"{m.host} {m.qid}": m for m in map(Msg.load, doc.get("msgs") or [])}
        self.sessions = dict(doc.get("sessions") or {})
        self.held = {k: self.msgs[k] for k in doc.get("held") or [] if k in self.msgs}
