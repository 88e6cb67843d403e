"""What the private Postfix and Exim instances share (pipeline/ops/postfixlab.py, eximlab.py):
loopback ports, a relay sink, commands run with a terminal, processes by parent.

Used by the integration tests and `make demo-postfix` only; nothing here runs in production.
"""
from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import time
from pathlib import Path


def lab_dir(host: str) -> Path:
    """A fresh directory every user can traverse (the MTAs' own users read their queues and logs
    there; pytest's and most home directories are 0700), under /tmp; `shutil.rmtree` it at the end."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=f"mailsla-{host}-", dir="/tmp"))
    root.chmod(0o755)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float) -> bool:
    """Until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_on_tty(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; (exit code, what it printed). Postfix prints
    its errors to stderr only when that is a terminal (else they go to syslog alone)."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(max(0.1, deadline - time.monotonic()))
    finally:
        os.close(master)
    return code, out.decode(errors="replace")


def smtp_sink(port: int, soft_reject: str = "") -> subprocess.Popen:
    """Postfix's `smtp-sink` on 127.0.0.1:port as user postfix: takes every message (or answers 4xx to
    the `soft_reject` commands, e.g. RCPT: a deferred delivery)."""
    args = ["smtp-sink", "-u", "postfix", *(["-r", soft_reject] if soft_reject else []), f"127.0.0.1:{port}", "1000"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if not wait_port(port, 10):
        proc.kill()
        raise RuntimeError(f"smtp-sink did not listen on {port}: {proc.stderr.read().decode()[:500] if proc.stderr else ''}")
    return proc


def pids_of_children(parent: int, comm: str) -> list[int]:
    """Processes whose parent is `parent` and whose command name is `comm` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        fields = text[text.rfind(")") + 2:].split()
        if name == comm and int(fields[1]) == parent:
            out.append(int(stat.parent.name))
    return out


def stop_all(procs: list[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after 5 s."""
    for p in procs:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no {path.name})"
