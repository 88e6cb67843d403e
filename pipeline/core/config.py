"""Settings, read once from the environment when a command starts.

Every setting has a default that works on a developer machine; nothing here
opens a connection. Secrets (the ClickHouse DSN password) are never logged:
use `Settings.redacted_dsn` when printing.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.core.policy import Policy

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _str(name: str, default: str) -> str:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else raw


def _secret(name: str) -> str:
    """From NAME, or from the file named by NAME_FILE (Kubernetes/Docker secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return os.environ.get(name, "")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    kafka: str
    clickhouse: str = field(repr=False)  # may hold a password: print `redacted_dsn`
    database: str = "mailsla"
    topic_accepted: str = "mta.accepted"
    topic_ready: str = "mta.queue_ready"
    topic_dead_letters: str = "mailsla.dead_letters"
    topic_results: str = "mailsla.results"
    topic_ticks: str = "mailsla.ticks"
    topic_accounts: str = "mailsla.accounts"
    topic_maintenance: str = "mailsla.maintenance"
    topic_faults: str = "mailsla.faults"
    topic_injections: str = "mta.injections"  # availability (issue #12): one record per submission attempt
    topic_probes: str = "mailsla.probes"  # availability: one record per synthetic check
    webhook_url: str = field(default="", repr=False)  # fault events are POSTed here; may carry a token
    fault_interval_s: float = 10.0  # how often the sink re-evaluates faults (<= 0: never)
    partitions: int = 8
    replication: int = 1
    app_id: str = "mailsla"
    store: str = "memory://"
    # Kafka client security (MAILSLA_KAFKA_*): see pipeline/stream/kafka.py client_kwargs
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)  # never printed
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""
    clickhouse_cluster: str = ""  # ClickHouse cluster name: Replicated*/Distributed DDL ON CLUSTER; "" = one node
    threshold_ms: dict[str, int] = field(
        default_factory=lambda: {"transactional": 30 * MINUTE_MS, "campaign": 12 * HOUR_MS}
    )
    never_ready_ms: int = 72 * HOUR_MS
    orphan_grace_ms: int = HOUR_MS
    dedup_retention_ms: int = 24 * HOUR_MS
    lateness_ms: int = 0
    idle_grace_s: float = 5.0  # <= 0 disables wall-clock advance (pure replay)
    batch_rows: int = 20_000
    batch_ms: int = 500
    api_port: int = 8642  # the sink's local API, web page and /metrics; 0 = pick a free port
    web_host: str = "127.0.0.1"  # bind address of that server (0.0.0.0 in a container)
    session_timeout_s: float = 0.0  # Kafka group session timeout of the worker and the sink; 0 = the clients' own
    shutdown_s: float = 20.0  # SIGTERM: the process is gone within this, whatever Kafka or ClickHouse do
    producer_timeout_s: float = 0.0  # how long the worker's producer keeps an undelivered record; 0 = Faust's (1200 s)
    # ad-hoc SQL (`mailsla sql`, the API's /sql, the page's snapshot): ClickHouse limits per query
    sql_max_seconds: float = 30.0  # max_execution_time
    sql_max_memory: int = 1 << 30  # max_memory_usage, bytes
    sql_max_rows: int = 100_000  # max_result_rows (result_overflow_mode = 'throw')
    # the API (pipeline/store/api.py, pipeline/store/guard.py)
    api_token: str = field(default="", repr=False)  # /sql bearer token; "" = the one in $MAILSLA_DATA/run/api.token
    allowed_hosts: tuple[str, ...] = ()  # extra Host names the server answers (".example.org" = any subdomain)
    api_max_body: int = 256 * 1024  # bytes of a request body
    api_max_live_clients: int = 32  # concurrent live-page (server-sent events) streams
    policy: "Policy | None" = None  # the loaded policy file (None only in hand-made test settings)

    @property
    def group_sink(self) -> str:
        return f"{self.app_id}-sink"

    @property
    def redacted_dsn(self) -> str:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.clickhouse)


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _kafka_security() -> dict[str, str]:
    """The MAILSLA_KAFKA_* security settings, validated. The password is never in a message."""
    protocol = _str("MAILSLA_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper()
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ConfigError(f"MAILSLA_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}, "
                          f"got {protocol!r}")
    mechanism = _str("MAILSLA_KAFKA_SASL_MECHANISM", "PLAIN").strip().upper()
    if mechanism not in KAFKA_SASL_MECHANISMS:
        raise ConfigError(f"MAILSLA_KAFKA_SASL_MECHANISM must be one of {', '.join(KAFKA_SASL_MECHANISMS)}, "
                          f"got {mechanism!r}")
    out = {
        "kafka_security_protocol": protocol, "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": _str("MAILSLA_KAFKA_SASL_USERNAME", ""),
        "kafka_sasl_password": _secret("MAILSLA_KAFKA_SASL_PASSWORD"),
        "kafka_ssl_cafile": _str("MAILSLA_KAFKA_SSL_CAFILE", ""),
        "kafka_ssl_certfile": _str("MAILSLA_KAFKA_SSL_CERTFILE", ""),
        "kafka_ssl_keyfile": _str("MAILSLA_KAFKA_SSL_KEYFILE", ""),
    }
    if protocol.startswith("SASL_"):
        if not out["kafka_sasl_username"] or not out["kafka_sasl_password"]:
            raise ConfigError(f"MAILSLA_KAFKA_SECURITY_PROTOCOL={protocol} needs MAILSLA_KAFKA_SASL_USERNAME and "
                              "MAILSLA_KAFKA_SASL_PASSWORD (or MAILSLA_KAFKA_SASL_PASSWORD_FILE)")
    elif out["kafka_sasl_username"] or out["kafka_sasl_password"]:
        raise ConfigError(f"MAILSLA_KAFKA_SASL_USERNAME/_PASSWORD are set but MAILSLA_KAFKA_SECURITY_PROTOCOL is "
                          f"{protocol}: use SASL_PLAINTEXT or SASL_SSL")
    files = {k: out[f"kafka_ssl_{k}"] for k in ("cafile", "certfile", "keyfile")}
    if not protocol.endswith("SSL") and any(files.values()):
        raise ConfigError(f"MAILSLA_KAFKA_SSL_* files are set but MAILSLA_KAFKA_SECURITY_PROTOCOL is {protocol}: "
                          "use SSL or SASL_SSL")
    if files["keyfile"] and not files["certfile"]:
        raise ConfigError("MAILSLA_KAFKA_SSL_KEYFILE needs MAILSLA_KAFKA_SSL_CERTFILE")
    for k, path in files.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"MAILSLA_KAFKA_SSL_{k.upper()}: no such file: {path}")
    return out


def _kafka_default(data_dir: Path) -> str:
    recorded = data_dir / "kafka" / "bootstrap"
    if recorded.exists():
        text = recorded.read_text().strip()
        if text:
            return text
    return "127.0.0.1:9092"


def load() -> Settings:
    """Read the environment. Raises ConfigError on a value we cannot use."""
    from pipeline.core.policy import PolicyError, load as load_policy

    try:
        policy = load_policy(os.environ.get("MAILSLA_POLICY") or None)
    except PolicyError as exc:
        raise ConfigError(f"MAILSLA_POLICY: {exc}") from None
    data_dir = Path(_str("MAILSLA_DATA", "./data")).resolve()
    dsn = _secret("MAILSLA_CLICKHOUSE") or f"chdb://{data_dir / 'clickhouse'}"  # may hold a password
    if not dsn.startswith(("chdb://", "http://", "https://")):
        raise ConfigError("MAILSLA_CLICKHOUSE must start with chdb://, http:// or https://")
    s = Settings(
        data_dir=data_dir,
        kafka=_str("MAILSLA_KAFKA", "") or _kafka_default(data_dir),
        clickhouse=dsn,
        database=_str("MAILSLA_DATABASE", "mailsla"),
        topic_accepted=_str("MAILSLA_TOPIC_ACCEPTED", "mta.accepted"),
        topic_ready=_str("MAILSLA_TOPIC_QUEUE_READY", "mta.queue_ready"),
        topic_dead_letters=_str("MAILSLA_TOPIC_DEAD_LETTERS", "mailsla.dead_letters"),
        topic_results=_str("MAILSLA_TOPIC_RESULTS", "mailsla.results"),
        topic_ticks=_str("MAILSLA_TOPIC_TICKS", "mailsla.ticks"),
        topic_accounts=_str("MAILSLA_TOPIC_ACCOUNTS", "mailsla.accounts"),
        topic_maintenance=_str("MAILSLA_TOPIC_MAINTENANCE", "mailsla.maintenance"),
        topic_faults=_str("MAILSLA_TOPIC_FAULTS", "mailsla.faults"),
        topic_injections=_str("MAILSLA_TOPIC_INJECTIONS", "mta.injections"),
        topic_probes=_str("MAILSLA_TOPIC_PROBES", "mailsla.probes"),
        webhook_url=_secret("MAILSLA_WEBHOOK_URL"),
        fault_interval_s=_float("MAILSLA_FAULT_INTERVAL_S", 10.0),
        partitions=_int("MAILSLA_PARTITIONS", 8),
        replication=_int("MAILSLA_REPLICATION", 1),
        app_id=_str("MAILSLA_APP_ID", "mailsla"),
        # faust-streaming names its RocksDB store rocksdb:// and drives it with rocksdict
        store=_str("MAILSLA_STORE", "memory://").replace("rocksdict://", "rocksdb://"),
        **_kafka_security(),
        clickhouse_cluster=_str("MAILSLA_CLICKHOUSE_CLUSTER", "").strip(),
        threshold_ms={
            "transactional": _int("MAILSLA_THRESHOLD_TRANSACTIONAL_MS", policy.threshold_ms["transactional"]),
            "campaign": _int("MAILSLA_THRESHOLD_CAMPAIGN_MS", policy.threshold_ms["campaign"]),
        },
        never_ready_ms=_int("MAILSLA_NEVER_READY_MS", 72 * HOUR_MS),
        orphan_grace_ms=_int("MAILSLA_ORPHAN_GRACE_MS", HOUR_MS),
        dedup_retention_ms=_int("MAILSLA_DEDUP_RETENTION_MS", 24 * HOUR_MS),
        lateness_ms=_int("MAILSLA_LATENESS_MS", 0),
        idle_grace_s=_float("MAILSLA_IDLE_GRACE_S", 5.0),
        batch_rows=_int("MAILSLA_BATCH_ROWS", 20_000),
        batch_ms=_int("MAILSLA_BATCH_MS", 500),
        api_port=_int("MAILSLA_API_PORT", 8642),
        web_host=_str("MAILSLA_WEB_HOST", "127.0.0.1"),
        session_timeout_s=_float("MAILSLA_KAFKA_SESSION_TIMEOUT_S", 0.0),
        shutdown_s=_float("MAILSLA_SHUTDOWN_S", 20.0),
        producer_timeout_s=_float("MAILSLA_PRODUCER_TIMEOUT_S", 0.0),
        sql_max_seconds=_float("MAILSLA_SQL_MAX_SECONDS", 30.0),
        sql_max_memory=_int("MAILSLA_SQL_MAX_MEMORY", 1 << 30),
        sql_max_rows=_int("MAILSLA_SQL_MAX_ROWS", 100_000),
        api_token=_secret("MAILSLA_API_TOKEN").strip(),
        allowed_hosts=tuple(h.strip().lower() for h in _str("MAILSLA_ALLOWED_HOSTS", "").split(",") if h.strip()),
        api_max_body=_int("MAILSLA_API_MAX_BODY", 256 * 1024),
        api_max_live_clients=_int("MAILSLA_API_MAX_LIVE_CLIENTS", 32),
        policy=policy,
    )
    if s.shutdown_s < 5:
        raise ConfigError("MAILSLA_SHUTDOWN_S must be >= 5")
    if s.session_timeout_s and not 6 <= s.session_timeout_s <= 300:
        raise ConfigError("MAILSLA_KAFKA_SESSION_TIMEOUT_S must be 0 (default) or between 6 and 300 (the broker refuses less than 6)")
    if s.partitions < 1:
        raise ConfigError("MAILSLA_PARTITIONS must be >= 1")
    for name, value in (("MAILSLA_SQL_MAX_SECONDS", s.sql_max_seconds), ("MAILSLA_SQL_MAX_MEMORY", s.sql_max_memory),
                        ("MAILSLA_SQL_MAX_ROWS", s.sql_max_rows), ("MAILSLA_API_MAX_BODY", s.api_max_body),
                        ("MAILSLA_API_MAX_LIVE_CLIENTS", s.api_max_live_clients)):
        if value <= 0:
            raise ConfigError(f"{name} must be > 0")
    if s.api_token and len(s.api_token) < 16:
        raise ConfigError("MAILSLA_API_TOKEN must be at least 16 characters")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s.database):
        raise ConfigError("MAILSLA_DATABASE must be a plain identifier")
    if s.clickhouse_cluster:
        if not re.fullmatch(r"[A-Za-z0-9_.{}-]+", s.clickhouse_cluster):  # a name or a macro like {cluster}
            raise ConfigError("MAILSLA_CLICKHOUSE_CLUSTER must be a cluster name (letters, digits, _ . - or a "
                              "{macro})")
        if dsn.startswith("chdb://"):
            raise ConfigError("MAILSLA_CLICKHOUSE_CLUSTER needs a ClickHouse server (http:// or https:// DSN), "
                              "not the embedded chdb:// engine")
    return s
