# syntax=docker/dockerfile:1
# mailsla worker image. Build: docker build -t mailsla:0.1.0 .
# Runs `mailsla worker` (join + ClickHouse sink + live page/API/metrics on :8642) as uid 10001.

# ---- build: install the project and its pinned dependencies into a venv -------
FROM python:3.11.10-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# accumulation_tree (pulled in by tdigest) has no manylinux wheel: it compiles. Build stage only;
# the compiler's version is whatever the pinned base image's Debian release ships.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Every dependency at the exact version the tests ran with, hash-checked (deploy/requirements.lock,
# `make lock`), then the project alone: nothing is resolved at build time.
COPY deploy/requirements.lock ./requirements.lock
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml ./
COPY pipeline/ ./pipeline/
RUN pip install --no-cache-dir --no-deps .

# ---- runtime: the venv only, no compiler, non-root ----------------------------
FROM python:3.11.10-slim-bookworm

RUN groupadd --system --gid 10001 mailsla \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/mailsla --shell /usr/sbin/nologin mailsla \
    && mkdir -p /var/lib/mailsla \
    && chown mailsla:mailsla /var/lib/mailsla

COPY --from=build /opt/venv /opt/venv

# MAILSLA_WEB_HOST=0.0.0.0: the live page, /healthz, /readyz and /metrics must be reachable from
# outside the container (publish the port on 127.0.0.1 only, or put it behind your ingress).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAILSLA_DATA=/var/lib/mailsla \
    MAILSLA_WEB_HOST=0.0.0.0 \
    MAILSLA_API_PORT=8642

WORKDIR /var/lib/mailsla
VOLUME ["/var/lib/mailsla"]
EXPOSE 8642

# The mailsla user, by number so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# GET /healthz on the worker's own server over loopback. The server starts once ClickHouse
# answers, hence the start period. Containers running other commands (generate, replay)
# override or disable this check.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-m", "pipeline.ops.healthcheck", "/healthz"]

ENTRYPOINT ["mailsla"]
CMD ["worker"]
