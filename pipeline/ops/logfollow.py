"""Following one MTA log like `tail -F`: rotation by rename (and compression after it), by
copytruncate, a file that does not exist yet, and a position that survives restarts.

`mailsla ingest` asks `read()` for the next complete lines and `position()` for where they end;
it saves that position only after Kafka acknowledged what the lines gave. A file is known by the
hash of its first bytes (and its inode), so after a restart the saved file is found again even if
it was renamed to `maillog.1` or compressed to `maillog.20261203-120000.gz` in the meantime; the
rest of it is read first, then the newer files. A position no file matches any more (the file was
deleted) is reported in `lost` and reading starts at the beginning of the current file.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import re
import time
from pathlib import Path
from typing import IO, Any

HEAD_BYTES = 4096  # enough to tell logs apart: the first lines carry stamps and pids
CHUNK = 1 << 20
ROTATE_GRACE_S = 1.0  # after a rename, the writer may still append to the old file until it reopens
MAX_LINE = 64 * 1024  # a longer "line" is cut here (counted as too long by the parser)


class Unreadable(OSError):
    """The log exists but cannot be read (permissions, a directory)."""


def _open(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except IsADirectoryError:
        raise Unreadable(f"{path}: is a directory") from None
    except PermissionError as exc:
        raise Unreadable(f"{path}: {exc.strerror}") from None


def head_of(path: Path, length: int = HEAD_BYTES) -> tuple[str, int]:
    """(sha1 of the first `length` bytes of the content, how many there were); gz files decompressed."""
    with _open(path) as f:
        data = f.read(length)
    return hashlib.sha1(data).hexdigest(), len(data)


def rotated(path: Path) -> list[Path]:
    """The rotated siblings of `path`, oldest first: `maillog.1`, `maillog.2.gz`, `maillog-20261203`,
    `maillog.20261203-120000.gz` (Postfix `postfix logrotate`), by modification time."""
    pattern = re.compile(re.escape(path.name) + r"[.-].+")
    try:
        found = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file()]
    except OSError:
        return []

    def order(p: Path) -> tuple[float, int]:
        m = re.search(r"\.(\d+)(\.gz)?$", p.name)  # .2 is older than .1 when the times are equal
        return (p.stat().st_mtime, -int(m.group(1)) if m and len(m.group(1)) < 6 else 0)
    return sorted(found, key=order)


class LogFollower:
    """Complete lines of one log path and its rotations, in order; see the module docstring."""

    def __init__(self, path: Path, saved: dict[str, Any] | None, from_start: bool, follow: bool) -> None:
        self.path, self.follow = path, follow
        self.queue: list[tuple[Path, int]] = []  # rotated files still to read: (file, start offset)
        self.lost: str | None = None  # why a saved position could not be found again
        self.f: IO[bytes] | None = None
        self.current: Path | None = None
        self.inode = 0
        self.offset = 0  # of the first byte not yet returned in a complete line
        self.buf = b""
        self.rotation_seen: float | None = None
        self.truncations = 0
        self.error: str | None = None
        self.live_start = 0  # where the live file starts being read: the first start reads it whole
        self._head_cache: tuple[Any, tuple[str, int]] | None = None
        if saved:
            self._resume(saved)
        elif from_start:
            self.queue = [(p, 0) for p in rotated(path)]
        if path.exists() and not os.access(path, os.R_OK):
            raise Unreadable(f"{path}: Permission denied")

    # -- where to start -----------------------------------------------------------------------
    def _resume(self, saved: dict[str, Any]) -> None:
        head, length, offset = saved.get("head", ""), int(saved.get("head_len", 0)), int(saved.get("offset", 0))

        def same(p: Path) -> bool:
            try:
                if length == 0:
                    return p.suffix != ".gz" and p.stat().st_ino == saved.get("inode")
                return head_of(p, length) == (head, length)
            except OSError:
                return False
        if self.path.exists() and same(self.path):
            self.live_start = offset
            return
        older = rotated(self.path)
        for i in range(len(older) - 1, -1, -1):
            if same(older[i]):
                self.queue = [(older[i], offset)] + [(p, 0) for p in older[i + 1:]]
                return
        if saved.get("head") is not None:
            self.lost = f"{saved.get('file')}: no longer found (deleted, or rotated past its last copy)"

    # -- reading --------------------------------------------------------------------------------
    def _next_file(self) -> bool:
        """Open the next file: a queued rotated one, else the live path. False: nothing to open yet."""
        if self.queue:
            p, start = self.queue.pop(0)
            self.f, self.current, self.inode = _open(p), p, -1
            self._seek(start)
            return True
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return False
        except PermissionError as exc:
            self.error = f"{self.path}: {exc.strerror}"
            return False
        self.error = None
        st = os.fstat(f.fileno())
        self.f, self.current, self.inode = f, self.path, st.st_ino
        self._seek(self.live_start if self.live_start <= st.st_size else 0)
        self.live_start = 0  # a file that replaces this one is read from its start
        return True

    def _seek(self, offset: int) -> None:
        assert self.f is not None
        self.f.seek(offset)
        self.offset, self.buf = offset, b""

    def read(self, max_lines: int = 10_000) -> list[str]:
        """Up to about `max_lines` complete lines (without the newline, decoded as UTF-8 with
        replacement characters); [] when nothing new is there."""
        if self.f is None and not self._next_file():
            return []
        assert self.f is not None
        out: list[str] = []
        while len(out) < max_lines:
            data = self.f.read(CHUNK)
            if data:
                self.buf += data
                cut = self.buf.rfind(b"\n")
                if cut >= 0:  # the complete lines, decoded at once
                    lines = self.buf[:cut].decode("utf-8", "replace").split("\n")
                    self.offset += cut + 1
                    self.buf = self.buf[cut + 1:]
                    out += lines if max(map(len, lines)) <= MAX_LINE else [line[:MAX_LINE] for line in lines]
                if len(self.buf) > MAX_LINE:  # no newline for 64 KiB: not a log line, cut it
                    out.append(self.buf[:MAX_LINE].decode("utf-8", "replace"))
                    self.offset += len(self.buf)
                    self.buf = b""
                continue
            if self._at_end(out):
                break
        return out

    def _at_end(self, out: list[str]) -> bool:
        """At the end of the open file: go on to the next one when this one is finished. True: stop."""
        assert self.f is not None
        if self.current != self.path:  # a rotated file: it is complete
            self._finish(out)
            return not self._next_file()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_ino == self.inode:
            self.rotation_seen = None
            if st.st_size < self.offset + len(self.buf):  # copytruncate: the file starts again
                self.truncations += 1
                self._seek(0)
                return False
            return True
        # renamed away (and maybe already replaced): the writer may still append for a moment
        if self.rotation_seen is None:
            self.rotation_seen = time.monotonic()
            return True
        if st is None or time.monotonic() - self.rotation_seen < ROTATE_GRACE_S:
            return True
        self.rotation_seen = None
        self._finish(out)
        return not self._next_file()

    def _finish(self, out: list[str]) -> None:
        """Close the open file; a last line without its newline is returned as it is (cut)."""
        if self.buf:
            out.append(self.buf.decode("utf-8", "replace"))
            self.offset += len(self.buf)
            self.buf = b""
        if self.f is not None:
            self.f.close()
        self.f = None

    @property
    def finished(self) -> bool:
        """Not following: every file read to its end."""
        return not self.follow and not self.queue and self.current == self.path and self.f is not None \
            and self.rotation_seen is None and not self._more()

    def _more(self) -> bool:
        try:
            return os.stat(self.path).st_size > self.offset + len(self.buf)
        except OSError:
            return False

    def position(self) -> dict[str, Any]:
        """Where the lines returned so far end: saved once Kafka acknowledged their events."""
        if self.current is None:
            return {"file": str(self.path), "head": None, "head_len": 0, "offset": 0}
        head, length = self._head()
        return {"file": str(self.current), "inode": self.inode, "head": head, "head_len": length,
                "offset": self.offset}

    def _head(self) -> tuple[str, int]:
        """The identity of the open file, read from the open file itself: after a rename the path
        already names the next one. Cached once the file has HEAD_BYTES (its head no longer changes)."""
        if self._head_cache is not None and self._head_cache[0] is self.f:
            return self._head_cache[1]
        try:
            if self.current is not None and self.current.suffix == ".gz" or self.f is None:
                head = head_of(self.current) if self.current is not None else ("", 0)
            else:
                data = os.pread(self.f.fileno(), HEAD_BYTES, 0)
                head = hashlib.sha1(data).hexdigest(), len(data)
        except OSError:
            return "", 0
        if head[1] == HEAD_BYTES:
            self._head_cache = (self.f, head)
        return head

    def reference_ms(self) -> int:
        """The modification time of the file being read (when its last line was written), else now."""
        try:
            return int((self.current or self.path).stat().st_mtime * 1000)
        except OSError:
            return int(time.time() * 1000)

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
