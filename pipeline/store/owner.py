"""Who owns the embedded database: the address record of the process serving the local API.

chDB allows one engine per process, so the process that opened it (a worker or sink) records
`{"pid", "url"}` in `$MAILSLA_DATA/run/api.json` when its API starts (pipeline/store/api.py), and the
CLI, `mailsla top`, `status` and the demo read it here to send their SQL there instead. Reads only;
a missing, unreadable or stale record (its pid gone) means no owner.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline.core.config import Settings


def record_path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "api.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find(settings: Settings) -> str | None:
    """The URL of a live owner of this data dir's database, if any."""
    path = record_path(settings)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec["url"] if pid_alive(int(rec.get("pid", -1))) else None
