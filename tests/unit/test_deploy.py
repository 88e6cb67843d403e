"""Static checks of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s.

Offline and without Docker: the files are parsed and checked against the rules
we deploy by (pinned images, health checks, loopback-only ports, non-root).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
K8S_FILES = sorted(K8S.glob("*.yaml"))


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


# -- docker-compose.yml ------------------------------------------------------------
def test_every_compose_service_has_a_pinned_image_or_a_build() -> None:
    services = compose()["services"]
    assert services
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        if "image" in svc:
            assert image_is_pinned(svc["image"]), f"{name}: {svc['image']}"


def test_every_compose_service_has_a_healthcheck() -> None:
    for name, svc in compose()["services"].items():
        check = svc.get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable", False), name


def test_every_published_port_is_bound_to_loopback() -> None:
    ports = [(n, p) for n, s in compose()["services"].items() for p in s.get("ports", [])]
    assert ports, "expected kafka and clickhouse to publish ports"
    for name, port in ports:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port!r}"


def test_the_worker_waits_for_healthy_kafka_and_clickhouse() -> None:
    depends = compose()["services"]["worker"]["depends_on"]
    assert isinstance(depends, dict)
    for dep in ("kafka", "clickhouse"):
        assert depends[dep]["condition"] == "service_healthy", dep


def test_the_worker_reaches_kafka_and_clickhouse_by_their_internal_names() -> None:
    doc = compose()
    env = doc["services"]["worker"]["environment"]
    assert env["MAILSLA_KAFKA"] == "kafka:19092"
    assert "kafka:19092" in doc["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["MAILSLA_CLICKHOUSE"].startswith("http://") and "@clickhouse:8123/" in env["MAILSLA_CLICKHOUSE"]


def test_the_generator_only_runs_in_the_demo_profile() -> None:
    services = compose()["services"]
    assert services["generator"]["profiles"] == ["demo"]
    assert all("profiles" not in services[n] for n in ("kafka", "clickhouse", "worker"))


def test_the_clickhouse_password_comes_from_env_and_has_an_example() -> None:
    text = COMPOSE.read_text()
    assert "${CLICKHOUSE_PASSWORD:?" in text
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert set(example) >= {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}


def test_every_compose_volume_mount_uses_a_named_volume() -> None:
    doc = compose()
    declared = set(doc.get("volumes") or {})
    mounts = [(n, v) for n, s in doc["services"].items() for v in s.get("volumes", [])]
    assert mounts
    for name, mount in mounts:
        source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source")
        assert source in declared, f"{name}: {mount!r} is not a named volume"


# -- deploy/k8s --------------------------------------------------------------------
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


def test_every_kustomization_resource_exists() -> None:
    (kust,) = k8s_docs(K8S / "kustomization.yaml")
    assert kust["namespace"] == "mailsla"
    assert kust["resources"]
    for res in kust["resources"]:
        assert (K8S / res).is_file(), res


def test_the_workloads_use_stable_api_versions() -> None:
    kinds = {d["kind"]: d["apiVersion"] for p in K8S_FILES for d in k8s_docs(p)}
    assert kinds["StatefulSet"] == "apps/v1"
    assert kinds["PodDisruptionBudget"] == "policy/v1"


def test_the_statefulset_container_runs_as_non_root() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    for c in pod["containers"]:
        ctx = {**(pod.get("securityContext") or {}), **(c.get("securityContext") or {})}
        assert ctx.get("runAsNonRoot") is True, c["name"]
        assert ctx.get("runAsUser") not in (None, 0), c["name"]
        assert ctx.get("allowPrivilegeEscalation") is False, c["name"]


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
    assert c["livenessProbe"]["exec"]["command"][:2] == ["python", "-c"]


def test_the_statefulset_has_no_more_replicas_than_partitions() -> None:
    (cm,) = k8s_docs(K8S / "configmap.yaml")
    assert statefulset()["spec"]["replicas"] <= int(cm["data"]["MAILSLA_PARTITIONS"])


def test_the_statefulset_env_refers_to_the_shipped_configmap_and_secret() -> None:
    (cm,) = k8s_docs(K8S / "configmap.yaml")
    (secret,) = k8s_docs(K8S / "secret.example.yaml")
    (c,) = statefulset()["spec"]["template"]["spec"]["containers"]
    refs = {(k, v["name"]) for e in c["envFrom"] for k, v in e.items()}
    assert refs == {("configMapRef", cm["metadata"]["name"]), ("secretRef", secret["metadata"]["name"])}
    assert "MAILSLA_CLICKHOUSE" in secret["stringData"]


def test_the_service_is_headless_and_selects_the_statefulset_pods() -> None:
    sts = statefulset()
    (svc,) = k8s_docs(K8S / "service.yaml")
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()


def test_the_pdb_allows_one_worker_down_at_a_time() -> None:
    (pdb,) = k8s_docs(K8S / "pdb.yaml")
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
