"""Kafka client security from the environment (MAILSLA_KAFKA_SECURITY_PROTOCOL and friends):
validation in pipeline/core/config.py, the aiokafka keyword arguments and the Faust credentials in
pipeline/stream/kafka.py, and every Kafka client in the package built with them."""
from __future__ import annotations

import ast
import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from pipeline.core import config
from pipeline.core.config import ConfigError
from pipeline.stream.kafka import broker_credentials, client_kwargs, producer
from needs import need

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-Pa55"
VARS = ["MAILSLA_KAFKA_SECURITY_PROTOCOL", "MAILSLA_KAFKA_SASL_MECHANISM", "MAILSLA_KAFKA_SASL_USERNAME",
        "MAILSLA_KAFKA_SASL_PASSWORD", "MAILSLA_KAFKA_SASL_PASSWORD_FILE", "MAILSLA_KAFKA_SSL_CAFILE",
        "MAILSLA_KAFKA_SSL_CERTFILE", "MAILSLA_KAFKA_SSL_KEYFILE"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MAILSLA_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MAILSLA_KAFKA", "broker:9093")
    return monkeypatch


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway self-signed certificate and key (made here, so no key is kept in git)."""
    need(shutil.which("openssl"), "openssl is not installed (Debian's openssl package)")
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "2",
                    "-subj", "/CN=mailsla-test"], check=True, capture_output=True)
    return {"cafile": str(d / "cert.pem"), "certfile": str(d / "cert.pem"), "keyfile": str(d / "key.pem")}


def test_plaintext_by_default(env: pytest.MonkeyPatch) -> None:
    s = config.load()
    assert s.kafka_security_protocol == "PLAINTEXT"
    assert client_kwargs(s) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(s) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "scram-sha-512"])
def test_sasl_plaintext_maps_to_aiokafka_and_faust(env: pytest.MonkeyPatch, mechanism: str) -> None:
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
    env.setenv("MAILSLA_KAFKA_SASL_MECHANISM", mechanism)
    env.setenv("MAILSLA_KAFKA_SASL_USERNAME", "mailsla")
    env.setenv("MAILSLA_KAFKA_SASL_PASSWORD", PASSWORD)
    s = config.load()
    assert client_kwargs(s) == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism.upper(),
                                "sasl_plain_username": "mailsla", "sasl_plain_password": PASSWORD}
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(broker_credentials(s)) == client_kwargs(s) | {"ssl_context": None}


def test_sasl_ssl_with_the_password_from_a_file_and_a_ca(env: pytest.MonkeyPatch, tmp_path: Path,
                                                          pki: dict[str, str]) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    env.setenv("MAILSLA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    env.setenv("MAILSLA_KAFKA_SASL_USERNAME", "mailsla")
    env.setenv("MAILSLA_KAFKA_SASL_PASSWORD_FILE", str(secret))
    env.setenv("MAILSLA_KAFKA_SSL_CAFILE", pki["cafile"])
    s = config.load()
    kw = client_kwargs(s)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kw["sasl_plain_password"] == PASSWORD
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c["subject"] == ((("commonName", "mailsla-test"),),) for c in ctx.get_ca_certs())
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(broker_credentials(s))
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_plain_password"] == PASSWORD
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


def test_ssl_with_a_client_certificate(env: pytest.MonkeyPatch, pki: dict[str, str]) -> None:
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SSL")
    for k, v in pki.items():
        env.setenv(f"MAILSLA_KAFKA_SSL_{k.upper()}", v)
    s = config.load()
    kw = client_kwargs(s)
    assert set(kw) == {"security_protocol", "ssl_context"} and kw["security_protocol"] == "SSL"
    import faust

    creds = broker_credentials(s)
    assert isinstance(creds, faust.SSLCredentials) and isinstance(creds.context, ssl.SSLContext)


def test_the_clients_are_built_with_the_security_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("MAILSLA_KAFKA_SASL_USERNAME", "mailsla")
    env.setenv("MAILSLA_KAFKA_SASL_PASSWORD", PASSWORD)
    s = config.load()

    async def build() -> tuple[str, str]:
        p = producer(s, acks="all")  # not started: no connection
        return p.client._security_protocol, p.client._sasl_plain_password  # noqa: SLF001

    assert asyncio.run(build()) == ("SASL_PLAINTEXT", PASSWORD)


def test_the_faust_app_gets_the_broker_credentials(env: pytest.MonkeyPatch) -> None:
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("MAILSLA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    env.setenv("MAILSLA_KAFKA_SASL_USERNAME", "mailsla")
    env.setenv("MAILSLA_KAFKA_SASL_PASSWORD", PASSWORD)
    from pipeline.stream.app import create_app

    app = create_app(config.load(), with_sink=False)
    creds = app.conf.broker_credentials
    assert (creds.username, creds.password, creds.mechanism.value) == ("mailsla", PASSWORD, "SCRAM-SHA-256")
    assert PASSWORD not in repr(creds)


@pytest.mark.parametrize("values, message", [
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "TLS"},
     "MAILSLA_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MAILSLA_KAFKA_SASL_MECHANISM": "GSSAPI",
      "MAILSLA_KAFKA_SASL_USERNAME": "u", "MAILSLA_KAFKA_SASL_PASSWORD": PASSWORD},
     "MAILSLA_KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "MAILSLA_KAFKA_SASL_USERNAME": "u"},
     "needs MAILSLA_KAFKA_SASL_USERNAME and MAILSLA_KAFKA_SASL_PASSWORD"),
    ({"MAILSLA_KAFKA_SASL_USERNAME": "u", "MAILSLA_KAFKA_SASL_PASSWORD": PASSWORD},
     "MAILSLA_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: use SASL_PLAINTEXT or SASL_SSL"),
    ({"MAILSLA_KAFKA_SSL_CAFILE": "/etc/hostname"}, "MAILSLA_KAFKA_SECURITY_PROTOCOL is PLAINTEXT: use SSL"),
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "SSL", "MAILSLA_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "MAILSLA_KAFKA_SSL_CAFILE: no such file: /nonexistent/ca.pem"),
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "SSL", "MAILSLA_KAFKA_SSL_KEYFILE": "/etc/hostname"},
     "MAILSLA_KAFKA_SSL_KEYFILE needs MAILSLA_KAFKA_SSL_CERTFILE"),
    ({"MAILSLA_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "MAILSLA_KAFKA_SASL_USERNAME": "u",
      "MAILSLA_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
     "MAILSLA_KAFKA_SASL_PASSWORD_FILE: cannot read /nonexistent/pw"),
])
def test_a_bad_security_setting_is_a_config_error_naming_the_variable(env: pytest.MonkeyPatch, values: dict,
                                                                       message: str) -> None:
    for k, v in values.items():
        env.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        config.load()
    assert message in str(exc.value)
    assert PASSWORD not in str(exc.value)


def test_the_password_is_never_in_the_settings_repr(env: pytest.MonkeyPatch) -> None:
    env.setenv("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    env.setenv("MAILSLA_KAFKA_SASL_USERNAME", "mailsla")
    env.setenv("MAILSLA_KAFKA_SASL_PASSWORD", PASSWORD)
    s = config.load()
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)


# -- every client in the package is built with client_kwargs --------------------------------
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}
EXEMPT: set[str] = set()  # none: the bench's ceiling consumer passes them too


def _constructions(path: Path) -> list[tuple[int, bool]]:
    """(line, passes **client_kwargs(...)) for each aiokafka client built in `path`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in CLIENTS:
            spread = [kw.value for kw in node.keywords if kw.arg is None]
            ok = any("client_kwargs(" in ast.unparse(v) for v in spread)
            out.append((node.lineno, ok))
    return out


MODULES = sorted(p for p in (ROOT / "pipeline").rglob("*.py") if p.name not in EXEMPT and _constructions(p))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_kafka_client_gets_the_security_kwargs(path: Path) -> None:
    missing = [line for line, ok in _constructions(path) if not ok]
    assert not missing, f"{path.name}: clients without **client_kwargs(settings) at lines {missing}"


def test_the_sink_and_the_kafka_adapter_are_among_the_checked_modules() -> None:
    assert {"kafka.py", "writer.py"} <= {p.name for p in MODULES}


def test_the_kafka_adapter_builds_all_its_clients_with_the_security_kwargs() -> None:
    sites = _constructions(ROOT / "pipeline" / "stream" / "kafka.py")
    assert len(sites) == 5 and all(ok for _, ok in sites)
