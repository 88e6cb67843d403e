"""The directory a join process keeps its Faust state in: one slot of `$MAILSLA_DATA/faust`.

Taken by `pipeline.stream.app.make_app` when a worker (or the bench's no-op app) is made. RocksDB
locks a partition's database for one process, and Faust does not close the databases of revoked
partitions, so two join processes on one data dir (`worker --processes N`, or a second `mailsla
worker` beside the first) sharing one directory fail on the first partition that moves between
them ("DB for partition 1 is locked", then a crash). Each process takes the first slot
`faust/slot-<n>` whose lock file it can lock exclusively and holds the lock for its life; the OS
releases it when the process ends, SIGKILL included. A restarted process usually gets its own slot
back, so its RocksDB state is current and recovery reads only the changelog's tail; a slot last
used for other partitions is brought up to date from the changelog like any stale local state
(Faust keeps the changelog offset each database has). A failure to lock or create the directory
raises OSError at worker start.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

MAX_SLOTS = 1024
_held: dict[Path, tuple[int, Path]] = {}  # base -> (lock fd kept open for the process's life, slot)


def acquire(base: Path) -> Path:
    """This process's slot under `base` (the same one on every call in one process)."""
    base = base.resolve()
    if base in _held:
        return _held[base][1]
    base.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        fd = os.open(base / f"slot-{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        slot = base / f"slot-{n}"
        slot.mkdir(exist_ok=True)
        _held[base] = (fd, slot)
        return slot
    raise OSError(f"all {MAX_SLOTS} state slots under {base} are held by running processes")
