"""A real multi-node Apache Kafka 3.9 (KRaft) cluster, optionally with a SASL_SSL client listener.

For tests of what production runs (deploy/k8s: replication 3, SASL_SSL with SCRAM-SHA-512):
N nodes in combined broker+controller mode, a quorum of all of them, each a `LocalKafka` process
under `<home>/node-<id>`. With SCRAM credentials the client listener is SASL_SSL (a throwaway CA
and broker certificate made with openssl under `<home>/tls`, the user registered at format time
with `--add-scram`, KIP-900); the inter-broker and controller listeners stay PLAINTEXT. Binds
127.0.0.1 only. The single broker of `mailsla kafka up` and the test suite is `LocalKafka` itself.
"""
from __future__ import annotations

import base64
import secrets
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ops.localkafka import KafkaError, LocalKafka, _free_port

SCRAM = "SCRAM-SHA-512"


@dataclass
class _Spec:
    """What every node of one cluster shares."""
    cluster_id: str
    ports: dict[int, dict[str, int]]  # node id -> broker (inter-broker), controller, client
    scram: tuple[str, str] | None  # (user, password): the client listener is SASL_SSL
    tls: Path | None  # the keystore's directory


@dataclass
class _Node(LocalKafka):
    node_id: int = 1
    spec: _Spec | None = None
    heap = ("128m", "512m")  # three of them on a small machine

    def _ports(self, wait_s: float) -> dict[str, int]:
        assert self.spec is not None
        return self.spec.ports[self.node_id]

    def _format_args(self) -> list[str]:
        assert self.spec is not None
        out = ["-t", self.spec.cluster_id]
        if self.spec.scram:  # KRaft keeps SCRAM users in the metadata log: registered before the first start
            user, password = self.spec.scram
            out += ["--add-scram", f"{SCRAM}=[name={user},password={password}]"]
        return out

    def _client_address(self, ports: dict[str, int]) -> str:
        return f"127.0.0.1:{ports['client']}"

    def _properties(self, ports: dict[str, int]) -> str:
        assert self.spec is not None
        spec, n = self.spec, len(self.spec.ports)
        voters = ",".join(f"{i}@127.0.0.1:{p['controller']}" for i, p in sorted(spec.ports.items()))
        client = "SASL_SSL" if spec.scram else "PLAINTEXT"
        out = super()._properties(ports) + f"""# a node of a {n}-node cluster (pipeline/ops/kafkacluster.py)
node.id={self.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{ports['broker']},CONTROLLER://127.0.0.1:{ports['controller']},CLIENT://127.0.0.1:{ports['client']}
advertised.listeners=PLAINTEXT://127.0.0.1:{ports['broker']},CLIENT://127.0.0.1:{ports['client']}
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CLIENT:{client}
offsets.topic.replication.factor={n}
transaction.state.log.replication.factor={n}
transaction.state.log.min.isr={min(2, n)}
# default.replication.factor stays 1: a topic made without the pipeline's replication shows as such
min.insync.replicas={min(2, n)}
"""
        if spec.scram and spec.tls:
            jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            out += f"""listener.name.client.sasl.enabled.mechanisms={SCRAM}
listener.name.client.{SCRAM.lower()}.sasl.jaas.config={jaas}
listener.name.client.ssl.keystore.type=PKCS12
listener.name.client.ssl.keystore.location={spec.tls / 'broker.p12'}
listener.name.client.ssl.keystore.password={(spec.tls / 'keystore.pass').read_text()}
ssl.client.auth=none
"""
        return out


@dataclass
class LocalCluster:
    home: Path
    brokers: int = 3
    scram: tuple[str, str] | None = None  # (user, password) of the SASL_SSL client listener
    nodes: list[_Node] = field(default_factory=list)

    @property
    def ca_file(self) -> Path:
        """The CA that signed the brokers' certificate (what clients verify them with)."""
        return self.home / "tls" / "ca.pem"

    def up(self, timeout: float = 240.0) -> str:
        """Start every node (a quorum needs a majority, so all start before any is awaited);
        returns the client bootstrap "host:port,host:port,...". Call once per `home`."""
        self.home.mkdir(parents=True, exist_ok=True)
        tls = _make_tls(self.home / "tls") if self.scram else None
        ports = {i: {"broker": _free_port(), "controller": _free_port(), "client": _free_port()}
                 for i in range(1, self.brokers + 1)}
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=").replace("-", "A")
        spec = _Spec(cluster_id, ports, self.scram, tls)
        self.nodes = [_Node(self.home / f"node-{i}", node_id=i, spec=spec) for i in ports]
        try:
            started = [node._launch(0.0) for node in self.nodes]  # noqa: SLF001 - its own subclass
            return ",".join(node._await(proc, addr, timeout) for node, (proc, addr) in zip(self.nodes, started))
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        for node in self.nodes:
            node.down()

    # Read like a LocalKafka's (tests/integration/conftest.py prints them when a test fails).
    def bootstrap(self) -> str | None:
        addrs = [node.bootstrap() for node in self.nodes]
        return ",".join(a for a in addrs if a) or None

    @property
    def log_file(self) -> Path:
        return self.home  # each node's broker.log is under node-<id>/

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(f"--- node {node.node_id} ({node.log_file})\n{node.log_tail(n)}" for node in self.nodes)


def _make_tls(d: Path) -> Path:
    """A throwaway CA and a broker certificate for 127.0.0.1 in a PKCS12 keystore (openssl)."""
    d.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(16)
    (d / "keystore.pass").write_text(password)
    (d / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
                                  "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "7",
         "-subj", "/CN=mailsla test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "broker.pem", "-days", "7", "-extfile", "broker.ext"],
        ["pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem", "-name", "broker",
         "-out", "broker.p12", "-passout", f"file:{d / 'keystore.pass'}"],
    ]
    for args in steps:
        proc = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise KafkaError(f"openssl {args[0]} failed: {proc.stderr[-500:]}")
    return d
