"""The cluster nodes' broker config (pipeline/ops/kafkacluster.py), read as the broker reads it:
java.util.Properties, where a later key replaces an earlier one. No JVM is started here; the
integration test tests/integration/test_shipped_k8s.py runs the cluster itself."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.ops.kafkacluster import _Node, _Spec

PORTS = {i: {"broker": 9000 + i, "controller": 9100 + i, "client": 9200 + i} for i in (1, 2, 3)}


def _props(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value  # the last one counts, as in java.util.Properties
    return out


def _node(tmp_path: Path, scram: tuple[str, str] | None) -> _Node:
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "keystore.pass").write_text("ks-pass")
    return _Node(tmp_path / "node-2", node_id=2, spec=_Spec("cid", PORTS, scram, tls if scram else None))


@pytest.mark.parametrize("scram", [None, ("mailsla", "pw")], ids=["plaintext", "sasl_ssl"])
def test_a_node_binds_127_0_0_1_only_and_knows_the_whole_quorum(tmp_path: Path, scram: tuple[str, str] | None) -> None:
    p = _props(_node(tmp_path, scram)._properties(PORTS[2]))
    assert p["node.id"] == "2"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    hosts = re.findall(r"://([^:]+):", p["listeners"] + "," + p["advertised.listeners"])
    assert hosts and set(hosts) == {"127.0.0.1"}
    assert p["offsets.topic.replication.factor"] == "3" and p["min.insync.replicas"] == "2"
    assert "default.replication.factor" not in p  # 1: a topic made without the pipeline's replication shows


def test_with_scram_the_client_listener_is_sasl_ssl_and_the_others_stay_plaintext(tmp_path: Path) -> None:
    node = _node(tmp_path, ("mailsla", "pw"))
    p = _props(node._properties(PORTS[2]))
    assert p["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CLIENT:SASL_SSL"
    assert p["inter.broker.listener.name"] == "PLAINTEXT"
    assert p["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert p["listener.name.client.ssl.keystore.password"] == "ks-pass"
    assert node._format_args() == ["-t", "cid", "--add-scram", "SCRAM-SHA-512=[name=mailsla,password=pw]"]
    assert node._client_address(PORTS[2]) == "127.0.0.1:9202"


def test_without_scram_every_listener_is_plaintext(tmp_path: Path) -> None:
    node = _node(tmp_path, None)
    p = _props(node._properties(PORTS[2]))
    assert p["listener.security.protocol.map"].endswith("CLIENT:PLAINTEXT")
    assert not [k for k in p if "sasl" in k or "ssl" in k]
    assert node._format_args() == ["-t", "cid"]
