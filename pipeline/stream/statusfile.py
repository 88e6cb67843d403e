"""Writing a process's JSON status file under `$MAILSLA_DATA/run` (join workers, the sink, the
supervisor) and the no-op bench's done file.

Kept apart from `pipeline.stream.status` (the readers), which imports the Kafka adapter: the
supervisor parent writes its file too and has no use for aiokafka.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write `doc` as JSON to `path`, creating its folder. Runs on every status tick (every 2 s) and
    at exit. Written to `<stem>.tmp` and renamed over `path`, so a reader (`mailsla status`, the
    sink's health check) sees the old file or the new one, never half of one. An OSError (disk full,
    read-only data dir) or a TypeError (a value JSON cannot hold) goes to the caller."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # not `*.json`: the readers' globs never pick it up
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
