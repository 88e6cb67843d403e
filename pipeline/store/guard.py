"""Who may talk to the API: the /sql token, the Host check and the same-origin check.

Runs on every request of the sink's server (pipeline/store/api.py) and of `mailsla web`
(as aiohttp middleware), before any handler:

* **Host** (DNS rebinding): a page on `evil.example` whose name an attacker re-points
  at 127.0.0.1 reaches this server with `Host: evil.example`. Only these Host names are
  answered: `localhost`, any IP literal (a browser sends an IP only when it connected to
  that IP, so no DNS name was rebound; this also covers Kubernetes probes and Prometheus,
  which send the pod IP), the configured bind host, and the names in
  MAILSLA_ALLOWED_HOSTS (`.example.org` allows its subdomains, `*` everything). Anything
  else gets 421.
* **Origin** (cross-site requests): a request with an `Origin` other than this server's own,
  or with `Sec-Fetch-Site` other than `same-origin`/`none`, gets 403, so another site's page
  cannot read the live data or POST to /sql (even as `text/plain`, which needs no CORS
  pre-flight). A plain link to the page (a top-level navigation to `/`) is allowed.
* **Token**: /sql needs `Authorization: Bearer <token>` (401 otherwise), compared in constant
  time. The token is MAILSLA_API_TOKEN (or MAILSLA_API_TOKEN_FILE); without it, the owner
  creates `$MAILSLA_DATA/run/api.token` (mode 0600) at start and the CLI reads it. Never logged.
* **Body size**: a declared body over MAILSLA_API_MAX_BODY gets 413 before it is read.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

from pipeline.core.config import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ANY_ADDRESS = {"0.0.0.0", "::", ""}


def token_path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "api.token"


def ensure_token(settings: Settings) -> str:
    """The token /sql requires; runs when the owner starts its server. Creates the token file
    (0600) when there is neither a configured token nor a file. Raises OSError when it cannot."""
    if settings.api_token:
        return settings.api_token
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        token = path.read_text().strip()
        if len(token) >= 16:
            return token
        path.unlink()  # empty or truncated: make a new one
        return ensure_token(settings)
    with os.fdopen(fd, "w") as f:
        token = secrets.token_urlsafe(32)
        f.write(token + "\n")
    return token


def read_token(settings: Settings) -> str:
    """The token for the CLI: MAILSLA_API_TOKEN(_FILE), else the owner's token file.
    Raises PermissionError/FileNotFoundError (the caller says what to do)."""
    return settings.api_token or token_path(settings).read_text().strip()


def token_ok(expected: str, authorization: str | None) -> bool:
    """`Authorization: Bearer <token>` against the expected token, in constant time."""
    if not expected or not authorization:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # hashed first, so the comparison takes the same time whatever the given token's length
    return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(),
                               hashlib.sha256(expected.encode()).digest())


def split_host(host: str) -> tuple[str, str]:
    """'Example.org:8642' -> ('example.org', '8642'); '[::1]:80' -> ('::1', '80')."""
    host = host.strip().lower()
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        return name, rest.lstrip(":")
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name.rstrip("."), port
    return host.rstrip("."), ""


def host_allowed(host: str | None, bind_host: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request's Host header names this server (see the module docstring)."""
    if host is None:  # HTTP/1.0 without Host: not a browser, so not a rebinding attack
        return True
    name, _ = split_host(host)
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name == "localhost" or (bind_host.lower() not in ANY_ADDRESS and name == bind_host.lower()):
        return True
    for a in allowed:
        if a == "*" or name == a.rstrip(".") or (a.startswith(".") and (name.endswith(a) or name == a[1:])):
            return True
    return False


def _netloc(scheme: str, host: str) -> str:
    name, port = split_host(host)
    default = {"http": "80", "https": "443"}.get(scheme, "")
    name = f"[{name}]" if ":" in name else name
    return name if port in ("", default) else f"{name}:{port}"


def cross_origin(method: str, path: str, headers: Mapping[str, str], host: str | None) -> str | None:
    """Why this request comes from another origin (None: same origin, or not from a browser).

    The Origin's host and port are compared with the Host header (the scheme is not: behind a
    TLS-terminating proxy the page is https and this server sees http)."""
    origin = headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin)
        if origin == "null" or not parts.netloc or host is None or \
                _netloc(parts.scheme, parts.netloc) != _netloc(parts.scheme, host):
            return f"origin {origin[:100]} is not this server's"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        navigation = headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document"
        if not (method == "GET" and path == "/" and navigation):
            return f"Sec-Fetch-Site: {site[:20]}"
    return None


def middleware(settings: Settings, bind_host: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The Host, Origin and body-size checks, for `web.Application(middlewares=[...])`."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not host_allowed(host, bind_host, settings.allowed_hosts):
            return web.json_response({"error": "unknown Host; add it to MAILSLA_ALLOWED_HOSTS"}, status=421)
        why = cross_origin(request.method, request.path, request.headers, host)
        if why is not None:
            return web.json_response({"error": f"cross-origin request refused ({why})"}, status=403)
        if (request.content_length or 0) > settings.api_max_body:
            return web.json_response({"error": f"body over {settings.api_max_body} bytes (MAILSLA_API_MAX_BODY)"},
                                     status=413)
        return await handler(request)

    return check


async def security_headers(_: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: no framing by other sites, no content sniffing."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")


def application(settings: Settings, bind_host: str) -> web.Application:
    """An aiohttp application with the checks, the body limit and the headers."""
    app = web.Application(middlewares=[middleware(settings, bind_host)], client_max_size=settings.api_max_body)
    app.on_response_prepare.append(security_headers)
    return app
