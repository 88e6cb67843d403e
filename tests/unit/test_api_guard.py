"""The API's gate (pipeline/store/guard.py): the /sql token, the Host and Origin checks, the body and
live-client limits; the limits of ad-hoc SQL (pipeline/store/adhoc.py); the server-rendered page and
the smoothed rates. No ClickHouse, no Kafka: the server runs on a fake query function."""
from __future__ import annotations

import asyncio
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pipeline.store import adhoc, guard
from pipeline.live import page
from pipeline.core.config import ConfigError, load
from pipeline.live.snapshot import _rates


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
    for k in ("MAILSLA_API_TOKEN", "MAILSLA_API_TOKEN_FILE", "MAILSLA_ALLOWED_HOSTS"):
        monkeypatch.delenv(k, raising=False)
    return load()


def test_the_token_file_is_created_once_private_and_read_back(settings) -> None:
    token = guard.ensure_token(settings)
    path = guard.token_path(settings)
    assert len(token) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert guard.ensure_token(settings) == token == guard.read_token(settings)
    os.chmod(path, 0o644)
    guard.ensure_token(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # loosened by hand: tightened again


def test_a_configured_token_wins_and_is_never_in_the_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
    secret = tmp_path / "token"
    secret.write_text("s3cret-token-from-a-file\n")
    monkeypatch.setenv("MAILSLA_API_TOKEN_FILE", str(secret))
    s = load()
    assert guard.ensure_token(s) == "s3cret-token-from-a-file" == guard.read_token(s)
    assert not guard.token_path(s).exists() and "s3cret" not in repr(s)
    monkeypatch.delenv("MAILSLA_API_TOKEN_FILE")
    monkeypatch.setenv("MAILSLA_API_TOKEN", "short")
    with pytest.raises(ConfigError, match="MAILSLA_API_TOKEN"):
        load()


@pytest.mark.parametrize("header, ok", [
    ("Bearer right-token-1234567890", True), ("bearer right-token-1234567890", True),
    ("Bearer wrong-token-1234567890", False), ("right-token-1234567890", False), ("Basic x", False),
    ("Bearer ", False), (None, False),
])
def test_the_token_check(header: str | None, ok: bool) -> None:
    assert guard.token_ok("right-token-1234567890", header) is ok
    assert guard.token_ok("", "Bearer ") is False


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8642", True), ("localhost:8642", True), ("LOCALHOST", True), ("[::1]:8642", True),
    ("10.1.2.3:8642", True),  # an IP literal: no DNS name to rebind (k8s probes, Prometheus)
    (None, True), ("evil.example", False), ("evil.example:8642", False), ("localhost.evil.example", False),
    ("mailsla-web:8642", True), ("a.mailsla.svc.cluster.local", True), ("mailsla.svc.cluster.local", True),
    ("xmailsla.svc.cluster.local", False), ("worker.internal", True),
])
def test_the_host_check(host: str | None, ok: bool) -> None:
    allowed = ("mailsla-web", ".mailsla.svc.cluster.local")
    assert guard.host_allowed(host, "worker.internal", allowed) is ok
    assert guard.host_allowed("evil.example", "0.0.0.0", ("*",))


@pytest.mark.parametrize("method, path, headers, refused", [
    ("GET", "/api/snapshot", {}, False),  # curl, the CLI, Prometheus: no browser headers
    ("GET", "/events", {"Sec-Fetch-Site": "same-origin"}, False),
    ("GET", "/", {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, False),
    ("GET", "/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
     False),  # a link to the page
    ("GET", "/", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, True),
    ("POST", "/sql", {"Origin": "http://127.0.0.1:8642"}, False),
    ("POST", "/sql", {"Origin": "http://evil.example"}, True),
    ("POST", "/sql", {"Origin": "null"}, True),
    ("POST", "/sql", {"Origin": "http://127.0.0.1:3000"}, True),  # another port is another origin
    ("GET", "/api/snapshot", {"Sec-Fetch-Site": "same-site"}, True),
    ("GET", "/events", {"Sec-Fetch-Site": "cross-site"}, True),
    ("GET", "/api/snapshot", {"Origin": "https://127.0.0.1:8642"}, False),  # TLS ended by a proxy
])
def test_the_origin_check(method: str, path: str, headers: dict[str, str], refused: bool) -> None:
    assert (guard.cross_origin(method, path, headers, "127.0.0.1:8642") is not None) is refused
    assert guard.cross_origin("GET", "/", {"Origin": "http://example.org"}, "example.org:80") is None


def _app(settings: Any, query: Any) -> web.Application:
    from pipeline.live.web import LiveView, add_routes

    app = guard.application(settings, "127.0.0.1")
    add_routes(app, LiveView(settings, query))
    return app


def _serve(settings: Any, query: Any, go: Any) -> Any:
    async def main() -> Any:
        client = TestClient(TestServer(_app(settings, query)))
        await client.start_server()
        try:
            return await go(client)
        finally:
            await client.close()
    return asyncio.run(main())


def test_the_middleware_refuses_rebinding_cross_origin_and_big_bodies(settings) -> None:
    s = replace(settings, api_max_body=100)

    async def go(client: TestClient) -> list[int]:
        codes = [(await client.get("/healthz-none", headers={"Host": "evil.example"})).status,
                 (await client.get("/api/snapshot", headers={"Origin": "http://evil.example"})).status,
                 (await client.post("/sql", data=b"x" * 1000, headers={"Host": "127.0.0.1"})).status]
        r = await client.get("/nothing-here")
        return codes + [r.status, r.headers.get("X-Frame-Options")]
    assert _serve(s, lambda q: (_ for _ in ()).throw(RuntimeError("no data")), go) == [421, 403, 413, 404, "DENY"]


def test_live_clients_beyond_the_limit_get_503(settings) -> None:
    s = replace(settings, api_max_live_clients=1)

    async def go(client: TestClient) -> tuple[int, int]:
        first = await client.get("/events")
        await first.content.readline()  # the first frame: the stream is open
        second = await client.get("/events")
        first.close()
        return first.status, second.status
    assert _serve(s, lambda q: (_ for _ in ()).throw(RuntimeError("no data")), go) == (200, 503)


def test_limit_settings_put_readonly_last_and_errors_get_one_clear_line(settings) -> None:
    got = adhoc.limit_settings(settings, "mailsla-adhoc-x")
    assert got == {"max_execution_time": 30, "max_memory_usage": 1 << 30, "max_result_rows": 100_000,
                   "result_overflow_mode": "throw", "log_comment": "mailsla-adhoc-x", "readonly": 1}
    assert list(got)[-1] == "readonly"
    assert "max_result_rows" not in adhoc.limit_settings(settings, "t", report=True)
    http = replace(settings, clickhouse="http://u:p@ch:8123/mailsla")
    assert adhoc.limit_settings(http, "t")["cancel_http_readonly_queries_on_client_close"] == 1

    class Err(Exception):
        def __init__(self, text: str, code: int | None = None) -> None:
            super().__init__(text)
            self.code = code
    cases = {159: "ran longer than 30 s (MAILSLA_SQL_MAX_SECONDS)", 241: "MAILSLA_SQL_MAX_MEMORY",
             396: "more than 100000 rows (MAILSLA_SQL_MAX_ROWS)", 394: "cancelled"}
    for code, text in cases.items():
        err = adhoc.classify(settings, Err(f"Code: {code}. DB::Exception: ...\nstack", code))
        assert isinstance(err, adhoc.LimitExceeded) and text in str(err) and "\n" not in str(err)
    by_name = adhoc.classify(settings, Err("Code: 159. DB::Exception: Timeout exceeded: elapsed 8000 ms. "
                                           "(TIMEOUT_EXCEEDED)"))
    assert isinstance(by_name, adhoc.LimitExceeded) and by_name.kind == "time"
    other = adhoc.classify(settings, Err("Code: 62. Syntax error\nmore", 62))
    assert type(other) is adhoc.QueryError and str(other) == "Code: 62. Syntax error"


def test_the_limits_are_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
    monkeypatch.setenv("MAILSLA_SQL_MAX_SECONDS", "5")
    monkeypatch.setenv("MAILSLA_SQL_MAX_ROWS", "10")
    monkeypatch.setenv("MAILSLA_ALLOWED_HOSTS", "Mailsla.Example.org, .svc.cluster.local")
    s = load()
    assert (s.sql_max_seconds, s.sql_max_rows, s.allowed_hosts) == (5.0, 10, ("mailsla.example.org",
                                                                                ".svc.cluster.local"))
    monkeypatch.setenv("MAILSLA_SQL_MAX_ROWS", "0")
    with pytest.raises(ConfigError, match="MAILSLA_SQL_MAX_ROWS"):
        load()


def test_rates_are_smoothed_over_30_seconds() -> None:
    """Counters that move in steps every 2 s (the status files) give a steady rate, not 0/double."""
    prev, seen = None, []
    for i in range(40):
        events = (i // 2) * 200  # +200 every other snapshot: 100 events/s on average
        snap = {"at": 1000.0 + 1.0 * i, "counters": {"events_accepted": events}}
        snap["rates"] = _rates(snap, prev)
        seen.append(snap["rates"]["events_per_s"])
        prev = snap
    assert all(93 <= r <= 107 for r in seen[20:]), seen[20:]
    restarted = {"at": 1041.0, "counters": {"events_accepted": 10}}
    assert _rates(restarted, prev) == {"events_per_s": 0.0, "verdicts_per_s": 0.0}


SNAP: dict[str, Any] = {
    "at": 0.0, "event_time": "2026-11-10T00:30:00Z",
    "classes": {"transactional": {"percentiles_ms": {"1m": [900.0, 2000.0, 2_000_000.0, None], "5m": None},
                                  "verdicts": {"1m": 12, "5m": 0}}},
    "rates": {"events_per_s": 12.345, "verdicts_per_s": 3.0}, "lag": {"input": 4, "results": 0},
    "pending": {"messages": 7, "overdue": {"transactional": 1, "campaign": 0},
                "oldest_pending_age_ms": {"transactional": 60_000, "campaign": None},
                "oldest_overdue_age_ms": {"transactional": None, "campaign": None}},
    "fault_window": {"transactional": {"window_ms": 1_800_000, "delayed": 20, "eligible": 100, "share": 0.2,
                                       "line": 0.1, "min_volume": 100}},
    "month": {"month": "2026-11", "classes": {"transactional": {
        "threshold_ms": 1_800_000, "eligible": 100, "within": 80, "delayed": 20, "compliance": 0.8, "met": False,
        "budget_consumed": 20.0, "budget_remaining": -19}}},
    "burn_rates": [{"severity": "page", "factor": 14.4, "burn_long": 20.0, "burn_short": 1.0, "long_ms": 3_600_000,
                    "short_ms": 300_000, "firing": False}],
    "open_faults": [{"kind": "semi_critical", "severity": "semi_critical", "message_class": "transactional",
                     "opened_at": "2026-11-10T00:20:00Z", "peak_share": 0.25}],
    "charts": {"percentiles": "<svg id='p'></svg>", "delayed_share": "<svg id='d'></svg>"},
}


def test_the_page_comes_with_the_snapshot_rendered_in() -> None:
    from importlib import resources

    template = (resources.files("pipeline.live") / "static" / "index.html").read_text()
    html = page.render(template, SNAP)
    assert '<b id="event-time">2026-11-10T00:30:00Z</b>' in html
    assert '<td id="events-per-s" data-value="12.345">12.3</td>' in html
    assert '<tr id="m-transactional"><td>transactional</td><td data-value="100">100</td>' in html
    assert 'data-value="2000000.0" class="bad">33.3 min</td>' in html  # p99 over the 30 min threshold
    assert '<tr id="fw-transactional">' in html and '<td data-value="0.2" class="bad">20.00%</td>' in html
    assert "<svg id='p'></svg>" in html and "semi_critical" in html and html.count("<script>") == 1
    assert '<span id="status">live</span>' in html
    blank = page.with_error(template, "no <data> yet")
    assert '<span id="status" class="stale">no &lt;data&gt; yet</span>' in blank


def test_the_k8s_allow_list_covers_the_service_names() -> None:
    import yaml

    cm = next(yaml.safe_load_all((Path(__file__).resolve().parents[2] / "deploy/k8s/configmap.yaml").read_text()))
    allowed = tuple(h.strip() for h in cm["data"]["MAILSLA_ALLOWED_HOSTS"].split(","))
    for host in ("mailsla-web:8642", "mailsla-web.mailsla.svc.cluster.local:8642",
                 "mailsla-worker-0.mailsla-worker.mailsla.svc.cluster.local:8642", "10.244.1.7:8642"):
        assert guard.host_allowed(host, "0.0.0.0", allowed), host
    assert not guard.host_allowed("evil.example:8642", "0.0.0.0", allowed)


def test_a_server_dsn_gets_readers_in_the_configured_database_with_the_limits(settings, monkeypatch) -> None:
    """The http(s):// path: same limits, plus cancel-on-disconnect; a missing database falls back."""
    calls: list[dict[str, Any]] = []

    class Client:
        def __init__(self, **kw: Any) -> None:
            if kw.get("database") == "mailsla" and not calls:
                calls.append({"refused": kw})
                raise RuntimeError("Code: 81. DB::Exception: Database mailsla does not exist. (UNKNOWN_DATABASE)")
            calls.append({"client": kw})

        def query(self, sql: str, settings: dict[str, Any] | None = None) -> Any:
            calls.append({"sql": sql, "settings": settings})
            return type("R", (), {"column_names": ("n",), "result_rows": [(1,)]})()

        def close(self) -> None:
            pass

    monkeypatch.setattr(adhoc.clickhouse_connect, "get_client", lambda **kw: Client(**kw))
    s = replace(settings, clickhouse="https://u:p@ch.example:8443/other")
    readers = adhoc.Readers(s)
    assert readers.query("SELECT 1") == (["n"], [(1,)])
    assert calls[1]["client"]["database"] is None and calls[1]["client"]["dsn"] == s.clickhouse  # fell back
    sent = calls[2]["settings"]
    assert sent["cancel_http_readonly_queries_on_client_close"] == 1 and list(sent)[-1] == "readonly"
    with pytest.raises(adhoc.QueryError, match="USE"):
        readers.query("  use other")
    readers.cancel("mailsla-adhoc-abc")
    assert calls[-1]["sql"] == "KILL QUERY WHERE Settings['log_comment'] = 'mailsla-adhoc-abc' ASYNC"
    readers.cancel("x' OR 1=1 --")  # not a tag of ours: nothing sent
    assert calls[-1]["sql"].startswith("KILL QUERY WHERE Settings['log_comment'] = 'mailsla-adhoc-abc'")
    readers.close()
