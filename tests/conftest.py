"""Fixtures. The shared helpers live in tests/helpers/ and are imported as `helpers.<module>`:
pyproject.toml's `pythonpath = ["tests"]` puts this folder on sys.path wherever pytest starts."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from omegaconf import DictConfig

from lvsweep.app import compose_config
from lvsweep.tracking.runs import STORE_CACHE_ENV

# New stores are copies of an empty one MLflow made once (`lvsweep.tracking.runs.store_template`):
# the session keeps that template in a folder of its own, so no test reads or writes the user's
# cache and the first store of every session is made by MLflow itself.
if STORE_CACHE_ENV not in os.environ:
    os.environ[STORE_CACHE_ENV] = tempfile.mkdtemp(prefix="lvsweep-store-cache-")
    atexit.register(shutil.rmtree, os.environ[STORE_CACHE_ENV], True)


@pytest.fixture
def lv_config() -> DictConfig:
    return compose_config()


@pytest.fixture(scope="session")
def seeded_store(tmp_path_factory) -> Path:
    """A store holding one FINISHED run, for the input tables to copy into each row's directory."""
    from helpers.table import seed_store

    return seed_store(tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="session")
def made_store(tmp_path_factory) -> Path:
    """A new empty store as the CLI makes one, for tests to copy in where its creation is not what
    they check (`helpers.store.with_store`)."""
    from helpers.store import lvsweep_made_store

    return lvsweep_made_store(tmp_path_factory.mktemp("made"))


@pytest.fixture
def store_in_tmp_path(tmp_path, made_store) -> Path:
    """`tmp_path` holding a copy of `made_store`: for a test whose first run need not make the
    store (`@pytest.mark.usefixtures("store_in_tmp_path")`)."""
    from helpers.store import with_store

    return with_store(made_store, tmp_path)


from helpers.slurm import slurm_cluster  # noqa: E402,F401  (a session fixture: one cluster for every SLURM test)
