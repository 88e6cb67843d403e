"""The SLA policy as data (`pipeline/core/policy.yaml`, or the file in MAILSLA_POLICY).

Loaded once at start; `PolicyError` says which key is wrong. Pure: no Kafka,
no ClickHouse. Durations are written as `90s`, `30m`, `12h`, `3d`.
"""
from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class PolicyError(ValueError):
    """The policy file is not usable; the message names the key."""


def duration_ms(value: Any, key: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", str(value).strip())
    if not m:
        raise PolicyError(f"{key}: expected a duration like 30m or 12h, got {value!r}")
    ms = int(float(m.group(1)) * _UNITS[m.group(2)])
    if ms <= 0:
        raise PolicyError(f"{key}: must be positive")
    return ms


@dataclass(frozen=True)
class BurnTier:
    severity: str
    factor: float
    long_ms: int
    short_ms: int


@dataclass(frozen=True)
class Maintenance:
    start_ms: int
    end_ms: int
    reason: str


RESPONSE_TARGETS_MS = {"critical": 2 * 3_600_000, "semi_critical": 4 * 3_600_000, "non_critical": 8 * 3_600_000}


@dataclass(frozen=True)
class Availability:
    """Availability numbers (issue #12; `availability:` in policy.yaml, each with its source)."""

    channel_target: float = 0.9999
    probe_target: float = 0.99
    credit_step_pct: float = 5.0
    credit_per_s: int = 1800
    credit_free_share: float = 0.0001
    credit_cap_pct: float = 100.0
    critical_open_s: int = 60
    critical_resolve_s: int = 60


@dataclass(frozen=True)
class Policy:
    threshold_ms: dict[str, int]
    objective: float
    timezone: str
    fault_share: float
    fault_window_ms: dict[str, int]
    fault_min_volume: int
    fault_hold_ms: int
    burn_tiers: tuple[BurnTier, ...]
    intro_ms: int = 30 * 86_400_000
    surge_multiple: float = 5.0
    surge_baseline_ms: int = 86_400_000
    surge_min_messages: int = 1000
    maintenance: tuple[Maintenance, ...] = ()
    oldest_pending_ms: dict[str, int] = field(default_factory=dict)  # class -> alert above this age
    clock_ahead_ms: int = 10 * 60_000  # live: a timestamp this far past the wall clock is not trusted
    clock_ahead_replay_ms: int = 72 * 3_600_000  # replay: this far past the trusted event time
    availability: "Availability" = field(default_factory=lambda: Availability())
    response_target_ms: dict[str, int] = field(default_factory=lambda: dict(RESPONSE_TARGETS_MS))

    @property
    def error_budget(self) -> float:
        return 1.0 - self.objective


def _get(d: dict, key: str, path: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise PolicyError(f"{path}{key}: missing")
    return d[key]


def parse(doc: Any) -> Policy:
    if not isinstance(doc, dict):
        raise PolicyError("policy: expected a mapping at the top level")
    classes = _get(doc, "classes", "")
    if set(classes) != {"transactional", "campaign"}:
        raise PolicyError("classes: must define exactly transactional and campaign")
    thresholds = {c: duration_ms(_get(v, "threshold", f"classes.{c}."), f"classes.{c}.threshold")
                  for c, v in classes.items()}
    objective = _get(doc, "objective", "")
    if not isinstance(objective, (int, float)) or not 0 < objective < 1:
        raise PolicyError(f"objective: must be a number between 0 and 1, got {objective!r}")
    if doc.get("period", "calendar_month") != "calendar_month":
        raise PolicyError("period: only calendar_month is supported")
    fault = _get(doc, "fault", "")
    share = _get(fault, "share", "fault.")
    if not isinstance(share, (int, float)) or not 0 < share < 1:
        raise PolicyError(f"fault.share: must be between 0 and 1, got {share!r}")
    windows = {c: duration_ms(_get(_get(fault, "window", "fault."), c, "fault.window."), f"fault.window.{c}")
               for c in thresholds}
    volume = _get(fault, "min_volume", "fault.")
    if not isinstance(volume, int) or volume < 1:
        raise PolicyError(f"fault.min_volume: must be a whole number >= 1, got {volume!r}")
    tiers = []
    for i, t in enumerate(_get(doc, "burn_rate", "")):
        sev = _get(t, "severity", f"burn_rate[{i}].")
        if sev not in ("page", "ticket"):
            raise PolicyError(f"burn_rate[{i}].severity: page or ticket, got {sev!r}")
        tiers.append(BurnTier(
            sev, float(_get(t, "factor", f"burn_rate[{i}].")),
            duration_ms(_get(t, "long", f"burn_rate[{i}]."), f"burn_rate[{i}].long"),
            duration_ms(_get(t, "short", f"burn_rate[{i}]."), f"burn_rate[{i}].short")))
    tz = str(doc.get("timezone", "UTC"))
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise PolicyError(f"timezone: unknown time zone {tz!r}") from None
    return Policy(thresholds, float(objective), tz, float(share), windows,
                  volume, duration_ms(_get(fault, "hold", "fault."), "fault.hold"), tuple(tiers),
                  **_exclusions({**(doc.get("exclusions") or {}),
                                 "maintenance": [*((doc.get("exclusions") or {}).get("maintenance") or []),
                                                 *(doc.get("maintenance") or [])]}),
                  oldest_pending_ms={c: duration_ms(v, f"oldest_pending.{c}")
                                     for c, v in (doc.get("oldest_pending") or {}).items() if c in thresholds},
                  **_clock(doc.get("clock") or {}),
                  availability=_availability(doc.get("availability") or {}),
                  response_target_ms=_response_targets(doc.get("response_targets") or {}))


def _share(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise PolicyError(f"{key}: must be a number between 0 and 1, got {value!r}")
    return float(value)


def _whole_seconds(value: Any, key: str) -> int:
    ms = duration_ms(value, key)
    if ms % 1000:
        raise PolicyError(f"{key}: must be whole seconds")
    return ms // 1000


def _availability(doc: Any) -> Availability:
    if not isinstance(doc, dict):
        raise PolicyError("availability: expected a mapping")
    target, credit, critical = doc.get("target") or {}, doc.get("credit") or {}, doc.get("critical") or {}
    d = Availability()
    for key, value in (("step_pct", credit.get("step_pct", d.credit_step_pct)),
                       ("cap_pct", credit.get("cap_pct", d.credit_cap_pct))):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 100:
            raise PolicyError(f"availability.credit.{key}: must be a number in (0, 100], got {value!r}")
    return Availability(
        channel_target=_share(target.get("channels", d.channel_target), "availability.target.channels"),
        probe_target=_share(target.get("probes", d.probe_target), "availability.target.probes"),
        credit_step_pct=float(credit.get("step_pct", d.credit_step_pct)),
        credit_per_s=_whole_seconds(credit.get("per", f"{d.credit_per_s}s"), "availability.credit.per"),
        credit_free_share=_share(credit.get("free_share", d.credit_free_share), "availability.credit.free_share"),
        credit_cap_pct=float(credit.get("cap_pct", d.credit_cap_pct)),
        critical_open_s=_whole_seconds(critical.get("open_after", f"{d.critical_open_s}s"),
                                       "availability.critical.open_after"),
        critical_resolve_s=_whole_seconds(critical.get("resolve_after", f"{d.critical_resolve_s}s"),
                                          "availability.critical.resolve_after"))


def _response_targets(doc: Any) -> dict[str, int]:
    if not isinstance(doc, dict):
        raise PolicyError("response_targets: expected a mapping")
    out = dict(RESPONSE_TARGETS_MS)
    for cls, value in doc.items():
        if cls not in out:
            raise PolicyError(f"response_targets.{cls}: unknown fault class (critical, semi_critical, non_critical)")
        out[cls] = duration_ms(value, f"response_targets.{cls}")
    return out


def _clock(doc: Any) -> dict[str, int]:
    """How far ahead a timestamp may be before it is kept out of event time (see README: Event time)."""
    if not isinstance(doc, dict):
        raise PolicyError("clock: expected a mapping")
    out = {"clock_ahead_ms": duration_ms(doc.get("ahead", "10m"), "clock.ahead"),
           "clock_ahead_replay_ms": duration_ms(doc.get("ahead_replay", "72h"), "clock.ahead_replay")}
    if min(out.values()) <= 0:
        raise PolicyError("clock.ahead and clock.ahead_replay must be positive durations")
    return out


def _exclusions(doc: Any) -> dict[str, Any]:
    from pipeline.core.events import BadEvent, parse_ts

    if not isinstance(doc, dict):
        raise PolicyError("exclusions: expected a mapping")
    surge = doc.get("volume_surge") or {}
    multiple, minimum = surge.get("multiple", 5), surge.get("min_messages", 1000)
    if not isinstance(multiple, (int, float)) or multiple <= 1:
        raise PolicyError(f"exclusions.volume_surge.multiple: must be a number above 1, got {multiple!r}")
    if not isinstance(minimum, int) or minimum < 1:
        raise PolicyError(f"exclusions.volume_surge.min_messages: must be a whole number >= 1, got {minimum!r}")
    baseline = duration_ms(surge.get("baseline", "24h"), "exclusions.volume_surge.baseline")
    if baseline % 3_600_000:
        raise PolicyError("exclusions.volume_surge.baseline: must be whole hours")
    windows = []
    for i, w in enumerate(doc.get("maintenance") or []):
        key = f"exclusions.maintenance[{i}]"
        try:
            start, end = parse_ts(_get(w, "start", key + "."), "start"), parse_ts(_get(w, "end", key + "."), "end")
        except BadEvent as exc:
            raise PolicyError(f"{key}.{exc}") from None
        if end <= start:
            raise PolicyError(f"{key}: end must be after start")
        windows.append(Maintenance(start, end, str(w.get("reason") or "planned maintenance")))
    return {"intro_ms": duration_ms(doc.get("introductory_period", "30d"), "exclusions.introductory_period"),
            "surge_multiple": float(multiple), "surge_baseline_ms": baseline, "surge_min_messages": minimum,
            "maintenance": tuple(windows)}


def _merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base.get(k), over[k]) if k in over else base[k] for k in {**base, **over}}
    return over


def _yaml(text: str, name: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{name}: not valid YAML: {str(exc).splitlines()[0]}") from None


merge, read_yaml = _merge, _yaml  # for the other YAML files of the core (pipeline/core/mta/mapping.py)


def load(path: str | Path | None = None) -> Policy:
    """The shipped policy, with the file at `path` on top of it: a file names only what it changes
    (keys it leaves out keep the shipped values; lists such as burn_rate are replaced whole)."""
    doc = _yaml((resources.files("pipeline.core") / "policy.yaml").read_text(), "policy")
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"policy file {path}: {exc.strerror}") from None
        mine = _yaml(text, f"policy file {path}")
        if mine is not None and not isinstance(mine, dict):
            raise PolicyError("policy: expected a mapping at the top level")
        doc = _merge(doc, mine or {})
    return parse(doc)
