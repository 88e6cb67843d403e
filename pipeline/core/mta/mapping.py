"""The ingest configuration (`ingest.yaml`, or the file of `--config`) and what it decides for a
message: its account, class and priority, and the two events.

Loaded once when `mailsla ingest` starts; `MappingError` names the key that is wrong (the command
prints it and exits 2). Resolving runs once per accepted message, so lookups are cached.
"""
from __future__ import annotations

import ipaddress
import zoneinfo
from dataclasses import dataclass, field
from datetime import tzinfo
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.core.events import CLASSES, MAX_CHARS, format_ts
from pipeline.core.policy import PolicyError, duration_ms, merge, read_yaml

HANDLING = ("auto", "delays", "timestamps")


class MappingError(ValueError):
    """The ingest configuration is not usable; the message names the key."""


@dataclass(frozen=True)
class IngestConfig:
    zone: tzinfo
    zone_name: str
    sasl: bool = True
    sender_domains: dict[str, str] = field(default_factory=dict)
    client_networks: tuple[tuple[Any, str], ...] = ()  # (ip_network, account), longest prefix first
    default_account: str = "unknown"
    class_header: str = "x-mailsla-class"  # lower case: headers compare without case
    class_values: dict[str, str] = field(default_factory=lambda: {c: c for c in CLASSES})
    default_class: str = "transactional"
    priority_header: str = "x-mailsla-priority"
    low_values: frozenset[str] = frozenset({"low"})
    handling: str = "auto"
    delays_wait_ms: int = 10_000
    syslog_name: str = "postfix"
    reinjection: tuple[str, ...] = ()  # smtpd syslog names of a content filter's way back (no events)
    exim_host: str = ""
    horizon_ms: int = 7 * 86_400_000
    _ip_cache: dict[str, str | None] = field(default_factory=dict, compare=False, repr=False)

    def account(self, sasl: str | None, sender: str | None, client_ip: str | None) -> str:
        """SASL login, else the sender's domain (or a parent), else the client network, else the default."""
        if self.sasl and sasl:
            return sasl[:MAX_CHARS["account_id"]]
        if sender and self.sender_domains:
            domain = sender.rpartition("@")[2].lower().rstrip(">")
            while domain:
                hit = self.sender_domains.get(domain)
                if hit is not None:
                    return hit
                domain = domain.partition(".")[2]
        if client_ip and self.client_networks:
            hit = self._ip_cache.get(client_ip, "")
            if hit == "":
                hit = None
                try:
                    addr = ipaddress.ip_address(client_ip)
                    hit = next((acc for net, acc in self.client_networks if addr in net), None)
                except ValueError:
                    pass
                if len(self._ip_cache) > 65_536:
                    self._ip_cache.clear()
                self._ip_cache[client_ip] = hit
            if hit is not None:
                return hit
        return self.default_account

    def message_class(self, value: str | None) -> str:
        if value is None:
            return self.default_class
        return self.class_values.get(value.strip().lower(), self.default_class)

    def low_priority(self, value: str | None) -> bool:
        return value is not None and value.strip().lower() in self.low_values


_SECONDS: dict[int, str] = {}


def stamp(ms: int) -> str:
    """`format_ts`, with the text of each second cached (a log's events come in runs per second)."""
    head = _SECONDS.get(ms // 1000)
    if head is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        head = _SECONDS[ms // 1000] = format_ts(ms - ms % 1000)[:-4]
    return f"{head}{ms % 1000:03d}Z"


def accepted_event(cfg: IngestConfig, message_id: str, accepted_ms: int, mta: str, queue_id: str, *,
                   sasl: str | None, sender: str | None, client_ip: str | None, class_value: str | None,
                   priority_value: str | None, header_message_id: str | None) -> dict[str, Any]:
    """An `mta.accepted` event (schemas/mta.accepted.schema.json) plus fields the join ignores and a
    reader of the topic may want: `queue_id`, `header_message_id`, `sender`."""
    doc: dict[str, Any] = {
        "message_id": message_id, "account_id": cfg.account(sasl, sender, client_ip),
        "message_class": cfg.message_class(class_value), "accepted_at": stamp(accepted_ms),
        "source": "smtp", "mta": mta[:MAX_CHARS["mta"]], "queue_id": queue_id,
    }
    if cfg.low_priority(priority_value):
        doc["priority"] = "low"
    if header_message_id:
        doc["header_message_id"] = header_message_id[:998]
    if sender is not None:
        doc["sender"] = sender[:998]
    return doc


def ready_event(message_id: str, ready_ms: int, mta: str) -> dict[str, Any]:
    """An `mta.queue_ready` event (schemas/mta.queue_ready.schema.json)."""
    return {"message_id": message_id, "ready_at": stamp(ready_ms), "mta": mta[:MAX_CHARS["mta"]]}


def _mapping(doc: Any, key: str) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise MappingError(f"{key}: expected a mapping")
    return doc


def _text(value: Any, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or (not empty and str(value) == ""):
        raise MappingError(f"{key}: expected a non-empty string, got {value!r}")
    text = str(value)
    if len(text) > MAX_CHARS["account_id"]:
        raise MappingError(f"{key}: at most {MAX_CHARS['account_id']} characters")
    return text


def _list(value: Any, key: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MappingError(f"{key}: expected a list")
    return value


def parse(doc: Any) -> IngestConfig:
    doc = _mapping(doc, "ingest config")
    zone_name = str(doc.get("timezone") or "local")
    try:
        zone = zoneinfo.ZoneInfo("localtime") if zone_name == "local" else zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        if zone_name != "local":
            raise MappingError(f"timezone: unknown time zone {zone_name!r}") from None
        zone = zoneinfo.ZoneInfo("UTC")  # no /etc/localtime: the machine runs on UTC
    acc = _mapping(doc.get("account"), "account")
    domains = {str(d).lower().strip("."): _text(a, f"account.sender_domains.{d}")
               for d, a in _mapping(acc.get("sender_domains"), "account.sender_domains").items()}
    nets = []
    for net, a in _mapping(acc.get("client_networks"), "account.client_networks").items():
        try:
            nets.append((ipaddress.ip_network(str(net), strict=False), _text(a, f"account.client_networks.{net}")))
        except ValueError:
            raise MappingError(f"account.client_networks: not an address or network: {net!r}") from None
    nets.sort(key=lambda na: -na[0].prefixlen)
    cls = _mapping(doc.get("message_class"), "message_class")
    values = {str(k).strip().lower(): v for k, v in _mapping(cls.get("values"), "message_class.values").items()}
    for k, v in values.items():
        if v not in CLASSES:
            raise MappingError(f"message_class.values.{k}: must be one of {', '.join(CLASSES)}, got {v!r}")
    default_class = cls.get("default", "transactional")
    if default_class not in CLASSES:
        raise MappingError(f"message_class.default: must be one of {', '.join(CLASSES)}, got {default_class!r}")
    prio = _mapping(doc.get("priority"), "priority")
    low = _list(prio.get("low"), "priority.low")
    pf, ex = _mapping(doc.get("postfix"), "postfix"), _mapping(doc.get("exim"), "exim")
    handling = str(pf.get("handling", "auto"))
    if handling not in HANDLING:
        raise MappingError(f"postfix.handling: one of {', '.join(HANDLING)}, got {handling!r}")
    try:
        wait = duration_ms(pf.get("delays_wait", "10s"), "postfix.delays_wait")
        horizon = duration_ms(doc.get("horizon", "7d"), "horizon")
    except PolicyError as exc:
        raise MappingError(str(exc)) from None
    return IngestConfig(
        zone=zone, zone_name=zone_name, sasl=bool(acc.get("sasl", True)), sender_domains=domains,
        client_networks=tuple(nets), default_account=_text(acc.get("default", "unknown"), "account.default", empty=True),
        class_header=_text(cls.get("header", "X-Mailsla-Class"), "message_class.header").lower(),
        class_values=values, default_class=default_class,
        priority_header=_text(prio.get("header", "X-Mailsla-Priority"), "priority.header").lower(),
        low_values=frozenset(str(v).strip().lower() for v in low), handling=handling, delays_wait_ms=wait,
        syslog_name=_text(pf.get("syslog_name", "postfix"), "postfix.syslog_name"),
        reinjection=tuple(_text(n, "postfix.reinjection") for n in _list(pf.get("reinjection"), "postfix.reinjection")),
        exim_host=_text(ex.get("host") or "", "exim.host", empty=True), horizon_ms=horizon)


def load(path: str | Path | None = None) -> IngestConfig:
    """The shipped configuration with the file at `path` on top (it names only what it changes)."""
    try:
        doc = read_yaml((resources.files("pipeline.core.mta") / "ingest.yaml").read_text(), "ingest.yaml")
        if path is not None:
            try:
                text = Path(path).read_text()
            except OSError as exc:
                raise MappingError(f"ingest config {path}: {exc.strerror}") from None
            mine = read_yaml(text, f"ingest config {path}")
            if mine is not None and not isinstance(mine, dict):
                raise MappingError(f"ingest config {path}: expected a mapping at the top level")
            doc = merge(doc, mine or {})
    except PolicyError as exc:
        raise MappingError(str(exc)) from None
    return parse(doc)
