"""Container health check: `python -m pipeline.ops.healthcheck [/healthz|/readyz]`.

Asks this container's own server (the sink's API on MAILSLA_API_PORT, 8642 by default) over
loopback and exits 0 when it answers 200, 1 otherwise, printing one line. Used by the
Dockerfile's HEALTHCHECK and docker-compose.yml; Kubernetes probes the same paths with httpGet.
Imports nothing heavy, so a check costs a few milliseconds of CPU.
"""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORT = 8642


def base_url() -> str:
    """127.0.0.1:MAILSLA_API_PORT; with port 0 (a free port) the address the server recorded."""
    raw = os.environ.get("MAILSLA_API_PORT") or str(DEFAULT_PORT)
    port = int(raw)
    if port == 0:
        record = Path(os.environ.get("MAILSLA_DATA") or "./data") / "run" / "api.json"
        return json.loads(record.read_text())["url"]
    return f"http://127.0.0.1:{port}"


def check(path: str = "/healthz", timeout: float = 5.0) -> tuple[bool, str]:
    try:
        url = base_url() + path
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status == 200, f"{url}: {resp.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{path}: HTTP {exc.code}"
    except (OSError, ValueError, KeyError) as exc:
        return False, f"{path}: {type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ok, line = check(args[0] if args else "/healthz")
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
