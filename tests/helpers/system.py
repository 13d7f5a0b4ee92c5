"""System parts a test needs beyond Python (a PostgreSQL server, Chromium, a SLURM cluster).

Where one is absent the test skips with one line saying what to install; under CI (`CI=true`)
that is an error instead, so a missing install step in `.ci/run` cannot hide behind a skip.
`bash .ci/system-packages` installs all of them.
"""
from __future__ import annotations

import os
from typing import Optional

import pytest


def require(missing: Optional[str]) -> None:
    """`missing`: what is absent and how to install it, or None/"" when all is there."""
    if not missing:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{missing} (CI=true: a skip here would hide a broken install step)", pytrace=False)
    pytest.skip(missing)
