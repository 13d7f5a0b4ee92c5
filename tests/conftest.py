"""Shared helpers: run the real CLI in a temp dir and read the real MLflow store back."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from lvsweep.app import compose_config

# Small but real: a full pipeline run (simulation, training, alignment, perturbation) in < 1 s.
QUICK = ["trainer.epochs=40", "system.n_steps=300", "analysis.perturb.k=5"]


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without tracking settings that would leak into the run."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LVSWEEP_PARENT_RUN_ID")}
    return {**env, **extra}


def run_cli(cwd: Path, *args: str, timeout: float = 240, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in the background, for concurrent workers and for signals."""
    return subprocess.Popen([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=env or cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def store_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd}/mlruns/mlflow.db"


@pytest.fixture
def lv_config() -> DictConfig:
    return compose_config()
