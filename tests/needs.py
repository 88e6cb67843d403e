"""What a test needs of the machine (a Debian package, root, a tmpfs), and what happens without it.

Called at the start of a test (or a fixture) that needs something the Python environment does not
bring. Outside CI a missing need skips the test with a one-line reason naming what to install. In
CI (`CI` or `MAILSLA_CI` set to a true value; `.ci/run` sets both) it fails the test: CI installs
everything it needs as root, so a need missing there is a broken CI, not a reason to skip.
"""
from __future__ import annotations

import os

import pytest

_TRUE = {"1", "true", "yes", "on"}


def in_ci() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("CI", "MAILSLA_CI"))


def need(ok: object, reason: str) -> None:
    """Go on if `ok`; else skip (outside CI) or fail (in CI) with `reason`."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"missing in CI, which must provide it: {reason}", pytrace=False)
    pytest.skip(reason)
