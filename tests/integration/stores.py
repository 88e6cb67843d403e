"""The Faust stores the integration tests run: the default and the one the deployment files ship.

`memory://` is the default (`make demo`, a plain `mailsla worker`); `rocksdb://` is what
docker-compose.yml and deploy/k8s/configmap.yaml set. Modules whose drills must hold for both
mark themselves with `both_stores`; every other test runs `MAILSLA_STORE` as the environment
says (default memory://), so `MAILSLA_STORE=rocksdb:// pytest` runs the whole suite on RocksDB.
"""
from __future__ import annotations

import os

import pytest

STORES = ("memory://", "rocksdb://")
both_stores = pytest.mark.parametrize("faust_store", STORES, indirect=True, ids=["memory", "rocksdb"])


def default_store() -> str:
    return os.environ.get("MAILSLA_STORE", "memory://")
