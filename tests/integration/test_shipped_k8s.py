"""The settings deploy/k8s ships run exact (issue #18): configmap.yaml's mailsla-config and the
Secret's Kafka user, against a real 3-broker Kafka whose only client listener is SASL_SSL with
SCRAM-SHA-512, topics created with replication 3, the policy read from a file.

Values come from the shipped YAML, so the test follows the files; the asserts on them say what it
runs (SASL_SSL, SCRAM-SHA-512, replication 3). The deployment's own values are replaced: the
bootstrap (this cluster), the CA (its throwaway one), the password (a fresh one, the example's is
a placeholder), ClickHouse (embedded chdb://), and the web bind and port (127.0.0.1, a free one).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.ops.kafkacluster import LocalCluster
from pipeline.stream.kafka import client_kwargs
from test_join_live import _assert_exact

pytestmark = pytest.mark.integration

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BROKERS = 3
# ConfigMap values that are the cluster's own and would not run on this machine
NOT_HERE = {"MAILSLA_KAFKA", "MAILSLA_WEB_HOST", "MAILSLA_API_PORT"}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def _configmap(name: str) -> dict[str, str]:
    return next(d["data"] for d in _docs("configmap.yaml") if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)


def _secret() -> dict[str, str]:
    return next(d["stringData"] for d in _docs("secret.example.yaml") if d["kind"] == "Secret")


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """This module's Kafka (the `pipeline` fixture runs against it and prints its log tails on failure)."""
    user = _secret()["MAILSLA_KAFKA_SASL_USERNAME"]
    cluster = LocalCluster(tmp_path_factory.mktemp("k8s-kafka"), brokers=BROKERS,
                           scram=(user, secrets.token_hex(16)))
    cluster.up()
    yield cluster
    cluster.down()


async def _describe(settings: Any, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Partitions (replicas, isr) of every topic whose name starts with `prefix`, over the settings' security."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, **client_kwargs(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        return {d["topic"]: d["partitions"] for d in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def _connects(bootstrap: str, **security: Any) -> bool:
    """Whether an admin client with these security settings gets metadata (each step bounded: 60 s)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000, **security)
    try:
        await asyncio.wait_for(admin.start(), 60)
        await asyncio.wait_for(admin.list_topics(), 60)
        return True
    except Exception:  # noqa: BLE001 - refused, whatever aiokafka calls it
        return False
    finally:
        await admin.close()


def test_the_kubernetes_settings_run_exact(pipeline, kafka: LocalCluster, tmp_path: Path) -> None:
    shipped, secret = _configmap("mailsla-config"), _secret()
    # what this test runs, as the files ship it
    assert shipped["MAILSLA_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert shipped["MAILSLA_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert shipped["MAILSLA_REPLICATION"] == "3" == str(BROKERS)
    assert shipped["MAILSLA_POLICY"].startswith("/") and shipped["MAILSLA_STORE"] == "rocksdb://"
    policy = tmp_path / "policy.yaml"  # the mailsla-policy ConfigMap, mounted at MAILSLA_POLICY
    policy.write_text(_configmap("mailsla-policy")["policy.yaml"])
    user, password = kafka.scram or ("", "")
    assert secret["MAILSLA_KAFKA_SASL_USERNAME"] == user
    pipeline.env.update({k: v for k, v in shipped.items() if k not in NOT_HERE})
    pipeline.env.update({
        "MAILSLA_KAFKA": kafka.bootstrap() or "",
        "MAILSLA_KAFKA_SSL_CAFILE": str(kafka.ca_file),
        "MAILSLA_KAFKA_SASL_USERNAME": user,
        "MAILSLA_KAFKA_SASL_PASSWORD": password,
        "MAILSLA_POLICY": str(policy),
        "MAILSLA_CLICKHOUSE": f"chdb://{tmp_path / 'clickhouse'}",
    })
    settings = pipeline.settings()
    assert (settings.kafka_security_protocol, settings.replication, settings.partitions, settings.store) == \
        ("SASL_SSL", 3, 8, "rocksdb://")

    # premises: security is really on, so the run below could not pass with it silently off
    sasl = client_kwargs(settings)
    assert asyncio.run(_connects(settings.kafka, **sasl)), "the shipped settings do not connect"
    assert not asyncio.run(_connects(settings.kafka)), "a PLAINTEXT client was let in"
    assert not asyncio.run(_connects(settings.kafka, **(sasl | {"sasl_plain_password": password + "x"}))), \
        "a wrong password was let in"

    traffic = tmp_path / "traffic.jsonl"
    pipeline.cli("generate", "--rate", "20", "--duration", "600", "--seed", "11",
                 "--start", "2026-10-31T23:50:00Z", "--out", str(traffic))
    pipeline.start_worker()
    # the worker made its topics (and Faust the changelog) with MAILSLA_REPLICATION
    topics, deadline = asyncio.run(_describe(settings, settings.app_id)), time.monotonic() + 120
    while not any(t.endswith("-changelog") for t in topics) and time.monotonic() < deadline:
        time.sleep(1)  # Faust makes the join state's changelog as it starts its tables
        topics = asyncio.run(_describe(settings, settings.app_id))
    named = {settings.topic_accepted, settings.topic_ready, settings.topic_results, settings.topic_ticks,
             settings.topic_dead_letters, settings.topic_accounts, settings.topic_maintenance,
             settings.topic_faults, settings.topic_injections, settings.topic_probes}
    assert named <= set(topics), sorted(named - set(topics))
    assert any(t.endswith("-changelog") for t in topics), sorted(topics)  # the join state's, made by Faust
    copies = {t: sorted({len(p["replicas"]) for p in parts}) for t, parts in topics.items()}
    assert {t: c for t, c in copies.items() if c != [3]} == {}, "topics not replicated 3 times (replica counts)"
    assert {len(topics[t]) for t in named} == {8}, {t: len(topics[t]) for t in named}

    replay = pipeline.cli("replay", str(traffic), timeout=600)
    pipeline.wait_idle(timeout=600)
    _assert_exact(pipeline, traffic)

    # the password is passed to the clients only: no log or output shows it
    status = pipeline.cli("status", "--json")
    outputs = [replay.stdout, replay.stderr, status.stdout, status.stderr,
               *(log.read_text(errors="replace") for log in pipeline.logs)]
    assert not [o for o in outputs if password in o], "the SASL password is in a log"
