"""End to end: generated traffic with low-priority mail, client errors, an account in its first
30 days, a rate-limited account and a maintenance window; `sla --json --by-account` and
`--account` must equal counts computed here straight from the files."""
from __future__ import annotations

import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.events import parse_ts
from pipeline.core.sla import EXCLUSION_REASONS

pytestmark = pytest.mark.integration
START = "2026-11-05T00:00:00Z"
T0 = parse_ts(START, "")
MIN, DAY = 60_000, 86_400_000
THRESHOLD = {"transactional": 30 * MIN, "campaign": 12 * 60 * MIN}
WINDOW = (T0 + 20 * MIN, T0 + 35 * MIN)
INTRO, LIMITED = "acct-0001", "acct-0002"


def _prepare(tmp_path: Path) -> tuple[Path, Path]:
    """Add client errors (1 in 50 accepted events) to generated traffic; write the account facts."""
    traffic, accounts = tmp_path / "traffic.jsonl", tmp_path / "accounts.jsonl"
    out = []
    for line in traffic.read_bytes().splitlines():
        e = orjson.loads(line)
        if "accepted_at" in e and zlib.crc32(e["message_id"].encode()) % 50 == 0:
            e["client_error"] = "550 5.1.1 recipient address rejected"
        out.append(orjson.dumps(e))
    traffic.write_bytes(b"\n".join(out) + b"\n")
    accounts.write_bytes(b"\n".join(orjson.dumps(a) for a in [
        {"account_id": INTRO, "first_send_at": "2026-10-20T00:00:00Z", "rate_limited": False},
        {"account_id": LIMITED, "first_send_at": "2025-01-01T00:00:00Z", "rate_limited": True},
        {"account_id": "acct-0000", "first_send_at": "2024-01-01T00:00:00Z", "rate_limited": False},
    ]) + b"\n")
    return traffic, accounts


def _expected(traffic: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """account -> class -> counts, with the documented rules and their order."""
    acc: dict[str, dict] = {}
    ready: dict[str, int] = {}
    for line in traffic.read_bytes().splitlines():
        e = orjson.loads(line)
        if "accepted_at" in e:
            acc[e["message_id"]] = e
        else:
            ready[e["message_id"]] = parse_ts(e["ready_at"], "")
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
    for mid, e in acc.items():
        t, cls = parse_ts(e["accepted_at"], ""), e["message_class"]
        reason = ("low_priority" if e.get("priority") == "low" else "client_error" if e.get("client_error")
                  else "maintenance" if WINDOW[0] <= t < WINDOW[1]
                  else "introductory_period" if e["account_id"] == INTRO and t < parse_ts("2026-10-20T00:00:00Z", "") + 30 * DAY
                  else "rate_limited" if e["account_id"] == LIMITED else "")
        on_time = ready[mid] - t <= THRESHOLD[cls]
        for key in (e["account_id"], "*"):
            c = out[key][cls]
            c["total"] += 1
            if reason:
                c[f"excluded_{reason}"] += 1
            else:
                c["eligible"] += 1
                c["within" if on_time else "delayed"] += 1
    return out


def _pick(doc_class: dict[str, Any]) -> dict[str, int]:
    got = {k: doc_class[k] for k in ("total", "eligible", "within", "delayed")}
    got.update({f"excluded_{r}": n for r, n in doc_class["excluded"].items()})
    return {k: v for k, v in got.items() if v}


def test_exclusions_per_class_and_per_account_are_exact(pipeline, tmp_path: Path) -> None:
    pipeline.cli("generate", "--rate", "3", "--duration", "3600", "--seed", "21", "--start", START,
                 "--out", str(tmp_path / "traffic.jsonl"))
    traffic, accounts = _prepare(tmp_path)
    want = _expected(traffic)
    pipeline.start_worker()
    pipeline.cli("replay", str(traffic))  # the facts come after the mail: they still apply
    pipeline.cli("accounts", "load", str(accounts))
    pipeline.cli("maintenance", "add", "--start", "2026-11-05T00:20:00Z", "--end", "2026-11-05T00:35:00Z",
                 "--reason", "MTA upgrade")
    pipeline.wait_idle()
    doc = pipeline.json("sla", "--month", "2026-11", "--json", "--by-account")
    for cls in THRESHOLD:
        assert _pick(doc["classes"][cls]) == dict(want["*"][cls]), cls
        c = doc["classes"][cls]
        assert c["compliance"] == pytest.approx(c["within"] / c["eligible"], rel=1e-15)
    for account, classes in want.items():
        if account == "*":
            continue
        for cls, counts in classes.items():
            assert _pick(doc["accounts"][account]["classes"][cls]) == dict(counts), (account, cls)
    assert all(want["*"][c][f"excluded_{r}"] for c in ("transactional",) for r in EXCLUSION_REASONS[:5])
    one = pipeline.json("sla", "--month", "2026-11", "--json", "--account", INTRO)
    assert one["account_id"] == INTRO and one["classes"] == doc["accounts"][INTRO]["classes"]
