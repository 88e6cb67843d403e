"""The real API of a running worker: who gets in (token, Origin, Host), the page rendered at
once, and ad-hoc SQL that is stopped by its limit (or by its client leaving) while the sink's
inserts keep going. No timing thresholds: only that rows arrive while the query runs."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.integration
HEAVY = "SELECT count() FROM numbers(1000000000000) WHERE sipHash64(number) % 7 = 3"


def _call(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - the test's loopback server
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _api(pipeline) -> tuple[str, str]:
    run = Path(pipeline.env["MAILSLA_DATA"]) / "run"
    return json.loads((run / "api.json").read_text())["url"], (run / "api.token").read_text().strip()


def test_sql_needs_the_token_and_the_api_refuses_other_origins_and_hosts(pipeline) -> None:
    pipeline.start_worker()
    url, token = _api(pipeline)
    assert (Path(pipeline.env["MAILSLA_DATA"]) / "run" / "api.token").stat().st_mode & 0o777 == 0o600
    auth = {"Authorization": f"Bearer {token}"}
    assert _call(f"{url}/sql", b"SELECT 1")[0] == 401
    assert _call(f"{url}/sql", b"SELECT 1", {"Authorization": "Bearer not-the-token-at-all"})[0] == 401
    status, body = _call(f"{url}/sql", b"SELECT 1 AS one", auth)
    assert status == 200 and json.loads(body)["rows"] == [[1]]
    # a page on another site POSTing text/plain (no CORS pre-flight), even with a stolen token
    cross = {**auth, "Content-Type": "text/plain", "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert _call(f"{url}/sql", b"SELECT 1", cross)[0] == 403
    assert _call(f"{url}/api/snapshot", None, {"Origin": "http://evil.example"})[0] == 403
    # DNS rebinding: evil.example re-pointed at 127.0.0.1
    assert _call(f"{url}/api/snapshot", None, {"Host": "evil.example"})[0] == 421
    assert _call(f"{url}/sql", b"SELECT 1", {**auth, "Host": f"evil.example:{urlsplit(url).port}"})[0] == 421
    # the page itself, its stream and the probes keep working
    same = {"Sec-Fetch-Site": "same-origin", "Origin": url}
    assert _call(f"{url}/api/snapshot", None, same)[0] == 200
    assert _call(f"{url}/healthz", None, {"Host": f"localhost:{urlsplit(url).port}"})[0] == 200
    status, page = _call(f"{url}/", None, {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate",
                                           "Sec-Fetch-Dest": "document"})
    assert status == 200 and b'<tr id="m-transactional">' in page and b'<span id="status">live</span>' in page
    # the configured database is the default one
    rows = pipeline.rows("SELECT count() AS n FROM handling_times")
    assert rows == [{"n": 0}]
    assert token not in pipeline.log_tails(100_000)  # never logged


def test_a_heavy_query_is_stopped_by_its_limit_while_rows_keep_arriving(pipeline, tmp_path: Path) -> None:
    pipeline.env["MAILSLA_SQL_MAX_SECONDS"] = "20"
    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "20", "--duration", "600", "--seed", "5", "--start", "2026-11-10T00:00:00Z",
                 "--out", str(traffic))
    pipeline.start_worker()
    heavy = subprocess.Popen([sys.executable, "-m", "pipeline", "sql", HEAVY], env=pipeline.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        pipeline.cli("replay", str(traffic))
        counts = []
        while heavy.poll() is None:
            counts.append(pipeline.rows("SELECT count() AS n FROM handling_times_raw")[0]["n"])
            if counts[-1] > 0 and len(set(counts)) > 1:
                break
            time.sleep(0.5)
        running = heavy.poll() is None
        _, err = heavy.communicate(timeout=120)
    finally:
        heavy.kill()
    assert running and counts[-1] > 0, f"no rows written while the query ran: {counts}"
    assert heavy.returncode == 3, err
    assert err.strip() == "sql: query stopped: it ran longer than 20 s (MAILSLA_SQL_MAX_SECONDS)"
    over = pipeline.cli("sql", "SELECT number FROM numbers(200000)", check=False)
    assert over.returncode == 3 and "MAILSLA_SQL_MAX_ROWS" in over.stderr
    assert pipeline.cli("sql", "INSERT INTO handling_times_raw (message_id) VALUES ('x')", check=False).returncode == 2


def _sink_committed(pipeline) -> int:
    """Results the sink has committed, i.e. written to ClickHouse (it commits only after the insert)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def go() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.env["MAILSLA_KAFKA"])
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(f"{pipeline.env['MAILSLA_APP_ID']}-sink")
        finally:
            await admin.close()
        return sum(max(0, o.offset) for tp, o in offsets.items() if tp.topic == pipeline.env["MAILSLA_TOPIC_RESULTS"])
    return asyncio.run(go())


def test_more_heavy_queries_than_readers_still_leave_the_sink_writing(pipeline, tmp_path: Path) -> None:
    pipeline.env["MAILSLA_SQL_MAX_SECONDS"] = "30"
    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "20", "--duration", "120", "--seed", "6", "--start", "2026-11-10T00:00:00Z",
                 "--out", str(traffic))
    pipeline.start_worker()
    url, token = _api(pipeline)
    answers: list[int] = []
    crowd = [threading.Thread(target=lambda: answers.append(
        _call(f"{url}/sql", HEAVY.encode(), {"Authorization": f"Bearer {token}"})[0])) for _ in range(9)]
    for t in crowd:
        t.start()
    time.sleep(1.0)
    pipeline.cli("replay", str(traffic))
    written = 0
    while any(t.is_alive() for t in crowd) and written == 0:
        written = _sink_committed(pipeline)  # from Kafka: /sql is busy with the crowd
        time.sleep(0.5)
    alive = any(t.is_alive() for t in crowd)
    for t in crowd:
        t.join(120)
    assert written > 0 and alive, "the sink wrote nothing while the queries ran"
    # 3 run (a 4th reader stays for the page), 5 wait for a slot, the 9th is turned away; each runs into
    # its limit (422) or waits too long (503)
    assert 503 in answers and set(answers) <= {422, 503}, answers
    assert _call(f"{url}/api/snapshot")[0] == 200


def test_a_client_that_goes_away_cancels_its_query(pipeline) -> None:
    pipeline.env["MAILSLA_SQL_MAX_SECONDS"] = "300"
    pipeline.start_worker()
    url, token = _api(pipeline)
    body = HEAVY.encode()
    s = socket.create_connection((urlsplit(url).hostname, urlsplit(url).port))
    s.sendall(f"POST /sql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    running = "SELECT count() AS n FROM system.processes WHERE query LIKE '%sipHash64%' AND query NOT LIKE '%processes%'"
    deadline = time.monotonic() + 30
    while pipeline.rows(running)[0]["n"] == 0:
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.3)
    s.close()  # the client goes away
    deadline = time.monotonic() + 60
    while pipeline.rows(running)[0]["n"] != 0:
        assert time.monotonic() < deadline, "the query still runs after its client left"
        time.sleep(0.5)


WATCHDOG = r"""
import os, sys, tempfile
from dataclasses import replace
os.environ["MAILSLA_DATA"] = tempfile.mkdtemp()
from pipeline.store import adhoc
from pipeline.core import config
adhoc.WATCHDOG_GRACE_S = -8.0  # the watchdog fires 2 s in, before the engine's own 10 s limit
readers = adhoc.Readers(replace(config.load(), sql_max_seconds=10))
try:
    readers.query(sys.argv[1])
except adhoc.LimitExceeded as exc:
    print(exc.kind)
readers.close()
"""


def test_the_watchdog_kills_a_query_the_engine_did_not_stop() -> None:
    proc = subprocess.run([sys.executable, "-c", WATCHDOG, HEAVY], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout.strip() == "cancelled", proc.stderr[-2000:]
