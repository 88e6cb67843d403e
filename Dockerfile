# syntax=docker/dockerfile:1
# mailsla worker image. Build: docker build -t mailsla:0.1.0 .

# ---- build: install the project and its dependencies into a venv ---------------
FROM python:3.11.10-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# accumulation_tree (pulled in by tdigest) has no manylinux wheel: it compiles.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml ./
COPY pipeline/ ./pipeline/
# rocksdict backs MAILSLA_STORE=rocksdict:// (the k8s config); it is not a
# dependency in pyproject.toml, so the image adds it, pinned.
RUN pip install --no-cache-dir . rocksdict==0.3.29

# ---- runtime: the venv only, no compiler, non-root ----------------------------
FROM python:3.11.10-slim-bookworm

RUN groupadd --system --gid 10001 mailsla \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/mailsla --shell /usr/sbin/nologin mailsla \
    && mkdir -p /var/lib/mailsla \
    && chown mailsla:mailsla /var/lib/mailsla

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAILSLA_DATA=/var/lib/mailsla

WORKDIR /var/lib/mailsla

# The mailsla user, by number so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# Only proves the interpreter and the package load. A real health endpoint
# (HTTP /healthz reporting consumer lag and sink progress) comes later.
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import pipeline"]

ENTRYPOINT ["mailsla"]
CMD ["worker"]
