"""Every setting the deployment files ship is one an integration test runs (issue #18).

docker-compose.yml, deploy/k8s (ConfigMap, Secret example), the Dockerfile and .env.example set
MAILSLA_* variables. Each (variable, value) they set must be either the value every integration
test runs (the default, where the test fixture does not override it), or named in `RUN_BY` with
the integration test that runs it, whose module (or a helper module it imports) holds that value.
Values that are the deployment's own (an address, a path, a credential) count by their kind.
A shipped value no test runs fails here, naming the file and the variable.
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INTEGRATION = ROOT / "tests" / "integration"

# (variable, value or kind) -> the integration test that runs it ("file.py::test_name")
RUN_BY: dict[tuple[str, str], str] = {
    ("MAILSLA_STORE", "rocksdb://"): "test_join_live.py::test_sigkill_in_the_middle_of_a_messy_replay_then_restart_is_exact",
    ("MAILSLA_PARTITIONS", "8"): "test_shipped.py::test_the_container_settings_run_exact",
    ("MAILSLA_WEB_HOST", "0.0.0.0"): "test_shipped.py::test_the_container_settings_run_exact",
    ("MAILSLA_API_PORT", "8642"): "test_shipped.py::test_the_container_settings_run_exact",
    ("MAILSLA_ALLOWED_HOSTS", "mailsla-web,mailsla-web.mailsla,.mailsla.svc,.mailsla.svc.cluster.local"):
        "test_shipped.py::test_the_container_settings_run_exact",
    ("MAILSLA_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_KAFKA_SASL_USERNAME", "<credential>"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_KAFKA_SASL_PASSWORD", "<credential>"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_REPLICATION", "3"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_POLICY", "<path>"): "test_shipped_k8s.py::test_the_kubernetes_settings_run_exact",
    ("MAILSLA_KAFKA", "<address>"): "test_pipeline.py::test_the_golden_examples_give_their_expected_rows_and_verdicts",
    ("MAILSLA_DATA", "<path>"): "test_pipeline.py::test_the_golden_examples_give_their_expected_rows_and_verdicts",
}

# Shipped values no test on this machine can run, and why: each is a decision, written down.
NOT_RUN_HERE: dict[tuple[str, str], str] = {
    ("MAILSLA_CLICKHOUSE", "http"): "no ClickHouse server is installable here (no Docker; none of the reachable "
                                    "registries ships the server): the embedded engine runs the same SQL through "
                                    "the same clickhouse-connect client (pipeline/store/clickhouse.py)",
}

KINDS = {  # variables whose value is the deployment's own: what counts is the kind
    "MAILSLA_KAFKA": lambda v: "<address>",
    "MAILSLA_DATA": lambda v: "<path>",
    "MAILSLA_POLICY": lambda v: "<path>",
    "MAILSLA_KAFKA_SASL_USERNAME": lambda v: "<credential>",
    "MAILSLA_KAFKA_SASL_PASSWORD": lambda v: "<credential>",
    "MAILSLA_CLICKHOUSE": lambda v: v.split("://", 1)[0],
}


def shipped() -> dict[tuple[str, str], list[str]]:
    """(variable, value or kind) -> the deployment files that set it."""
    found: dict[tuple[str, str], list[str]] = {}

    def add(name: str, value: Any, where: str) -> None:
        if not name.startswith("MAILSLA_"):
            return
        value = str(value)
        m = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)  # compose's ${VAR:-default}
        value = m.group(1) if m else value
        found.setdefault((name, KINDS.get(name, lambda v: v)(value)), []).append(where)

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for svc, spec in compose["services"].items():
        for name, value in (spec.get("environment") or {}).items():
            add(name, value, f"docker-compose.yml:{svc}")
    for path in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "mailsla-config":
                for name, value in doc["data"].items():
                    add(name, value, f"deploy/k8s/{path.name}")
            if doc and doc.get("kind") == "Secret":
                for name, value in (doc.get("stringData") or {}).items():
                    add(name, value, f"deploy/k8s/{path.name}")
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        for name, value in re.findall(r"(MAILSLA_[A-Z_]+)=(\S+)", line):
            add(name, value.rstrip("\\"), "Dockerfile")
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            add(name.strip(), value.strip(), ".env.example")
    return found


def defaults() -> dict[str, str]:
    """What every integration test runs for a variable nobody sets: the settings' defaults, minus
    what the integration fixture overrides (tests/integration/conftest.py `Pipeline.env`)."""
    from pipeline.core import config

    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSLA_")}
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        s = config.load()
    finally:
        os.environ.clear()
        os.environ.update(old)
    out = {"MAILSLA_SQL_MAX_SECONDS": str(int(s.sql_max_seconds)), "MAILSLA_SQL_MAX_MEMORY": str(s.sql_max_memory),
           "MAILSLA_SQL_MAX_ROWS": str(s.sql_max_rows), "MAILSLA_CLICKHOUSE_CLUSTER": s.clickhouse_cluster,
           "MAILSLA_STORE": s.store, "MAILSLA_WEB_HOST": s.web_host, "MAILSLA_API_PORT": str(s.api_port),
           "MAILSLA_PARTITIONS": str(s.partitions), "MAILSLA_REPLICATION": str(s.replication),
           "MAILSLA_KAFKA_SECURITY_PROTOCOL": s.kafka_security_protocol}
    return {k: v for k, v in out.items() if k not in fixture_overrides()}


def fixture_overrides() -> set[str]:
    """The MAILSLA_* keys the integration fixture's `Pipeline.env` sets itself."""
    tree = ast.parse((INTEGRATION / "conftest.py").read_text())
    keys = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and re.fullmatch(r"MAILSLA_[A-Z_]+", n.value)}
    keys |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.keyword) and (n.arg or "").startswith("MAILSLA_")}
    return keys


def _sources(module: Path) -> str:
    """The module's text and that of the local helper modules it imports (stores, oracle, ...)."""
    text = module.read_text()
    for name in re.findall(r"^from (\w+) import", text, re.M):
        helper = INTEGRATION / f"{name}.py"
        if helper.exists() and helper != module:
            text += helper.read_text()
    return text


def test_every_shipped_value_is_run_by_an_integration_test() -> None:
    base = defaults()
    missing = {f"{name}={value} ({', '.join(where)})" for (name, value), where in shipped().items()
               if base.get(name) != value and (name, value) not in RUN_BY and (name, value) not in NOT_RUN_HERE}
    assert not missing, "shipped, but no integration test runs it: " + "; ".join(sorted(missing))


@pytest.mark.parametrize("key", sorted(RUN_BY), ids=lambda k: f"{k[0]}={k[1]}")
def test_each_named_test_exists_and_holds_the_value(key: tuple[str, str]) -> None:
    file, _, name = RUN_BY[key].partition("::")
    module = INTEGRATION / file
    assert module.exists(), f"{RUN_BY[key]}: no such file"
    tree = ast.parse(module.read_text())
    assert name in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, f"{RUN_BY[key]}: no such test"
    text, (var, value) = _sources(module), key
    if value.startswith("<"):  # a kind: the test sets the variable itself (or every test does, for the address)
        assert var in text or var in fixture_overrides(), f"{RUN_BY[key]} does not set {var}"
    else:
        assert value in text, f"{RUN_BY[key]} does not run {var}={value}"


def test_the_registry_names_only_what_is_shipped() -> None:
    stale = (set(RUN_BY) | set(NOT_RUN_HERE)) - set(shipped())
    assert not stale, f"no deployment file sets these any more: {sorted(stale)}"


def test_the_check_fails_for_a_shipped_value_no_test_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shipped()
    monkeypatch.setattr(__import__(__name__), "shipped",
                        lambda: {**real, ("MAILSLA_STORE", "aerospike://"): ["docker-compose.yml:worker"]})
    with pytest.raises(AssertionError, match="MAILSLA_STORE=aerospike://"):
        test_every_shipped_value_is_run_by_an_integration_test()
