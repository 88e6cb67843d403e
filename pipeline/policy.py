"""The SLA policy as data (`pipeline/policy.yaml`, or the file in MAILSLA_POLICY).

Loaded once at start; `PolicyError` says which key is wrong. Pure: no Kafka,
no ClickHouse. Durations are written as `90s`, `30m`, `12h`, `3d`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
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
class Policy:
    threshold_ms: dict[str, int]
    objective: float
    timezone: str
    fault_share: float
    fault_window_ms: dict[str, int]
    fault_min_volume: int
    fault_hold_ms: int
    burn_tiers: tuple[BurnTier, ...]

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
    return Policy(thresholds, float(objective), str(doc.get("timezone", "UTC")), float(share), windows,
                  volume, duration_ms(_get(fault, "hold", "fault."), "fault.hold"), tuple(tiers))


def load(path: str | Path | None = None) -> Policy:
    """The shipped policy, or the file at `path`."""
    if path is None:
        text = (resources.files("pipeline") / "policy.yaml").read_text()
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PolicyError(f"policy file {path}: {exc.strerror}") from None
    try:
        return parse(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy: not valid YAML: {str(exc).splitlines()[0]}") from None
