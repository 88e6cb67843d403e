"""The settings the container deployment ships, run as it runs them (issue #18).

docker-compose.yml (and the Dockerfile) run the worker with the RocksDB store, 8 partitions, and
the web server on all interfaces at port 8642, behind the k8s ConfigMap's Host names. Binding
0.0.0.0 here would break the rule that nothing listens beyond 127.0.0.1, so the test runs itself
again inside a network namespace of its own (`unshare --net`: only a loopback, nothing reaches
it from outside), with its own Kafka broker in there. Inside, a worker with these settings takes
half a month boundary's traffic, is stopped and started again (the restart RocksDB failed on),
takes the rest, and every row and verdict must equal the oracle's; the page answers on the
shipped port for the shipped Host names and refuses others.

(The k8s Kafka security and replication settings: tests/integration/test_shipped_k8s.py.)
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from needs import need
from test_join_live import _assert_exact

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INSIDE = "MAILSLA_TEST_INSIDE_NETNS"  # set for the run inside the namespace

# What docker-compose.yml's worker and the k8s ConfigMap set (checked against the files below).
CONTAINER = {
    "MAILSLA_STORE": "rocksdb://",
    "MAILSLA_PARTITIONS": "8",
    "MAILSLA_WEB_HOST": "0.0.0.0",
    "MAILSLA_API_PORT": "8642",
}
ALLOWED_HOSTS = "mailsla-web,mailsla-web.mailsla,.mailsla.svc,.mailsla.svc.cluster.local"


def _compose_worker_env() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]["environment"]
    out = {}
    for k, v in env.items():
        v = str(v)
        if v.startswith("${") and ":-" in v:  # ${VAR:-default}
            v = v.split(":-", 1)[1].rstrip("}")
        out[k] = v
    return out


def _configmap() -> dict[str, str]:
    for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "configmap.yaml").read_text()):
        if doc and doc["metadata"]["name"] == "mailsla-config":
            return {k: str(v) for k, v in doc["data"].items()}
    raise AssertionError("deploy/k8s/configmap.yaml has no mailsla-config")


def _netns_works() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"], capture_output=True)
    return probe.returncode == 0


def test_the_container_settings_run_exact(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if os.environ.get(INSIDE) != "1":
        shipped = _compose_worker_env()
        assert {k: shipped[k] for k in CONTAINER} == CONTAINER, "docker-compose.yml changed: follow it here"
        assert {k: _configmap()[k] for k in CONTAINER} == CONTAINER, "deploy/k8s/configmap.yaml changed"
        assert _configmap()["MAILSLA_ALLOWED_HOSTS"] == ALLOWED_HOSTS
        need(_netns_works(), "needs root and unshare/ip (util-linux, iproute2) for a private network namespace")
        inner = ("ip link set lo up && exec \"$0\" -m pytest -q -p no:cacheprovider --basetemp \"$1\" "
                 "\"$2::test_the_container_settings_run_exact\"")
        proc = subprocess.run(["unshare", "--net", "--", "sh", "-c", inner, sys.executable,
                               str(tmp_path / "inside"), str(Path(__file__))],
                              env={**os.environ, INSIDE: "1"}, cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0 and re.search(r"\b1 passed\b", proc.stdout), proc.stdout[-6000:] + proc.stderr[-2000:]
        return
    _inside(request, tmp_path)


def _inside(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The run in the namespace: 0.0.0.0 and port 8642 are this namespace's loopback only."""
    from conftest import Pipeline

    pipeline = Pipeline(tmp_path, request.getfixturevalue("kafka"), **CONTAINER, MAILSLA_ALLOWED_HOSTS=ALLOWED_HOSTS)
    try:
        clean = tmp_path / "traffic.jsonl"
        pipeline.cli("generate", "--rate", "20", "--duration", "1200", "--seed", "8",
                     "--start", "2026-10-31T23:50:00Z", "--out", str(clean))
        lines = clean.read_bytes().splitlines(keepends=True)
        halves = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        halves[0].write_bytes(b"".join(lines[: len(lines) // 2]))
        halves[1].write_bytes(b"".join(lines[len(lines) // 2:]))
        worker = pipeline.start_worker()
        assert pipeline.settings().partitions == 8 and pipeline.settings().store == "rocksdb://"
        _page_answers_as_shipped()
        pipeline.cli("replay", str(halves[0]))
        pipeline.wait_idle(timeout=600)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=120) == 0, pipeline.log_tails()
        pipeline.start_worker()  # RocksDB reopened: the states of the first half must be read back
        pipeline.cli("replay", str(halves[1]))
        pipeline.wait_idle(timeout=600)
        _assert_exact(pipeline, clean)
        topics = pipeline.json("status", "--json")
        assert topics["total_lag"] == 0, topics
    except Exception:
        print(pipeline.log_tails())
        raise
    finally:
        pipeline.stop()


def _page_answers_as_shipped() -> None:
    """Port 8642 on every interface of the namespace; the shipped Host names pass the rebinding
    guard, others get 421."""
    for host, want in (("mailsla-web", 200), ("mailsla-web.mailsla.svc.cluster.local", 200),
                       ("evil.example", 421)):
        conn = http.client.HTTPConnection("127.0.0.1", 8642, timeout=30)
        conn.request("GET", "/healthz", headers={"Host": f"{host}:8642"})
        got = conn.getresponse().status
        conn.close()
        assert got == want, (host, got)
