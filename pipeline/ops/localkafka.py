"""A real single-node Apache Kafka 3.9 (KRaft) as a background java process.

For development, tests and the demo; production uses its own Kafka. Jars come
from Maven Central through `pipeline/ops/kafka/pom.xml` and are cached under
`$MAILSLA_KAFKA_HOME` (default `~/.cache/mailsla/kafka-3.9.1`). Broker data, its
log and the recorded bootstrap address live under `$MAILSLA_DATA/kafka`.
Binds 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "3.9.1"


class KafkaError(RuntimeError):
    """The broker could not be installed or started; the message says why."""


class PortTaken(KafkaError):
    """The recorded port is held by another process: the CLI says so in one line and exits 2."""


PORT_WAIT_S = 60.0  # how long `up` waits for a recorded port that something still holds


def jars_dir() -> Path:
    default = Path.home() / ".cache" / "mailsla" / f"kafka-{KAFKA_VERSION}"
    return Path(os.environ.get("MAILSLA_KAFKA_HOME", default))


def ensure_jars() -> Path:
    """Resolve the broker's jars once (mvn, Maven Central); later calls are instant."""
    target = jars_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    pom = resources.files("pipeline.ops.kafka") / "pom.xml"
    with resources.as_file(pom) as pom_path:
        cmd = ["mvn", "-B", "-q", "-f", str(pom_path),
               "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={target}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except FileNotFoundError:
            raise KafkaError("mvn not found: install Maven (and Java 17) to fetch the Kafka jars") from None
    if proc.returncode != 0:
        raise KafkaError(f"mvn could not fetch Kafka jars: {(proc.stdout + proc.stderr)[-500:]}")
    marker.write_text(KAFKA_VERSION)
    return target


@dataclass
class LocalKafka:
    home: Path  # $MAILSLA_DATA/kafka

    @property
    def bootstrap_file(self) -> Path:
        return self.home / "bootstrap"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        try:  # a recycled pid is not our broker
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"kafka.Kafka" in cmdline else None

    def bootstrap(self) -> str | None:
        try:
            return self.bootstrap_file.read_text().strip() or None
        except OSError:
            return None

    def running(self) -> bool:
        addr = self.bootstrap()
        return self.pid() is not None and addr is not None and _port_open(addr)

    def up(self, timeout: float = 120.0, port_wait: float | None = None) -> str:
        """Start the broker unless it runs; returns host:port. Idempotent.

        The ports are chosen once and recorded (`ports.json`); every later start, after a
        crash too, uses the same ones, so clients configured with the address (workers,
        `MAILSLA_KAFKA`) reconnect by themselves. A recorded port still held (a broker that is
        dying, connections closing) is waited for up to `port_wait` seconds; still taken
        after that: PortTaken."""
        if self.running():
            return self.bootstrap()  # type: ignore[return-value]
        proc, addr = self._launch(PORT_WAIT_S if port_wait is None else port_wait)
        return self._await(proc, addr, timeout)

    # The hooks below let pipeline/ops/kafkacluster.py run one node of a cluster with the same code.
    heap = ("256m", "1g")  # -Xms, -Xmx

    def _launch(self, port_wait: float) -> tuple[subprocess.Popen, str]:
        """Format the data dir once, start the java process; returns it and the client address."""
        jars = ensure_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        ports = self._ports(port_wait)
        props = self._write_config(ports)
        cp = f"{jars}/*"
        if not (self.home / "logs" / "meta.properties").exists():
            fmt = subprocess.run(
                ["java", "-cp", cp, f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
                 "kafka.tools.StorageTool", "format", *self._format_args(), "-c", str(props), "--ignore-formatted"],
                capture_output=True, text=True, timeout=180)
            if fmt.returncode != 0:
                raise KafkaError(f"kafka storage format failed: {(fmt.stdout + fmt.stderr)[-500:]}")
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            ["java", f"-Xms{self.heap[0]}", f"-Xmx{self.heap[1]}", "-XX:+UseG1GC", "-cp", cp,
             f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}", "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            cwd=self.home)
        self.pid_file.write_text(str(proc.pid))
        return proc, self._client_address(ports)

    def _await(self, proc: subprocess.Popen, addr: str, timeout: float) -> str:
        """Until the broker answers on `addr` and logged that it started; records the address."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KafkaError(f"broker exited with {proc.returncode}; see {self.log_file}:\n{self.log_tail()}")
            if _port_open(addr) and b"Kafka Server started" in self.log_file.read_bytes()[-200_000:]:
                self.bootstrap_file.write_text(addr)
                return addr
            time.sleep(0.3)
        self.down()
        raise KafkaError(f"broker not ready after {timeout:.0f}s; see {self.log_file}:\n{self.log_tail()}")

    def _format_args(self) -> list[str]:
        """`StorageTool format` arguments besides the config: a new cluster id."""
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=").replace("-", "A")
        return ["-t", cluster]

    def _client_address(self, ports: dict[str, int]) -> str:
        return f"127.0.0.1:{ports['broker']}"

    def down(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL). Returns whether one was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def _ports(self, wait_s: float) -> dict[str, int]:
        """The recorded ports (waiting up to `wait_s` for them to be free), else new ones, recorded."""
        path = self.home / "ports.json"
        try:
            ports = {k: int(v) for k, v in json.loads(path.read_text()).items()}
            if set(ports) != {"broker", "controller"}:
                raise ValueError("ports.json: unexpected keys")
        except (OSError, ValueError, AttributeError):
            ports = {"broker": _free_port(), "controller": _free_port()}
            path.write_text(json.dumps(ports))
            return ports
        deadline = time.monotonic() + wait_s
        while True:
            taken = [p for p in ports.values() if not _port_free(p)]
            if not taken:
                return ports
            if time.monotonic() >= deadline:
                raise PortTaken(f"port {taken[0]} (recorded in {path}) is still in use after {wait_s:.0f}s; "
                                f"stop what holds it (e.g. `ss -ltnp 'sport = :{taken[0]}'`) and run it again")
            time.sleep(0.5)

    def _write_config(self, ports: dict[str, int]) -> Path:
        props = self.home / "server.properties"
        props.write_text(self._properties(ports))
        (self.home / "log4j.properties").write_text("""log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
""")
        return props

    def _properties(self, ports: dict[str, int]) -> str:
        """server.properties of the single node (a cluster node appends its overrides: the last one counts)."""
        b, c = ports["broker"], ports["controller"]
        return f"""# written by `mailsla kafka up`; binds 127.0.0.1 only
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{c}
listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}
advertised.listeners=PLAINTEXT://127.0.0.1:{b}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={self.home / 'logs'}
num.partitions=8
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.io.threads=2
num.network.threads=2
auto.create.topics.enable=false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    """Whether a listener could bind it now. SO_REUSEADDR, as the broker's own listener (the JVM sets it):
    connections of a killed broker left in TIME_WAIT do not count, only a live listener or bound socket."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _port_open(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False
