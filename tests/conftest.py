"""Fixtures. The shared helpers live in tests/helpers/ and are imported as `helpers.<module>`:
pyproject.toml's `pythonpath = ["tests"]` puts this folder on sys.path wherever pytest starts."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from lvsweep.app import compose_config


@pytest.fixture
def lv_config() -> DictConfig:
    return compose_config()


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory) -> Path:
    """A store holding one FINISHED run, for the input tables to copy into each row's directory."""
    from helpers.table import seed_store

    return seed_store(tmp_path_factory.mktemp("seed"))


from helpers.slurm import slurm_cluster  # noqa: E402,F401  (a session fixture: one cluster for every SLURM test)
