"""Shared helpers: run the real CLI in a temp dir and read the real MLflow store back.

Waits end on events (a status in the store, a metric written, the process exiting), never on a
budget tuned on a quiet machine: on a loaded one (load average 5 on 2 cores) a CLI takes tens of
seconds to import torch and Lightning, and as long again to shut its interpreter down after it
has closed its run. `HANG_S` only stops a test that would otherwise wait forever.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from lvsweep.app import compose_config
from lvsweep.tracking.stores import creation_lock

# Small but real: a full pipeline run (simulation, training, alignment, perturbation) in < 1 s.
QUICK = ["trainer.epochs=40", "system.n_steps=300", "analysis.perturb.k=5"]
HANG_S = 600.0  # a limit against true hangs only; nothing is expected to come near it
T = TypeVar("T")


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without tracking settings that would leak into the run."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LVSWEEP_PARENT_RUN_ID")}
    return {**env, **extra}


def run_cli(cwd: Path, *args: str, timeout: float = HANG_S, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=env or cli_env(),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in the background, for concurrent workers and for signals."""
    return subprocess.Popen([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=env or cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_cli(proc: subprocess.Popen) -> tuple[str, str]:
    """Wait for a background CLI to exit (however slowly a loaded machine shuts it down): its output."""
    return proc.communicate(timeout=HANG_S)


def store_uri(cwd: Path) -> str:
    return f"sqlite:///{cwd}/mlruns/mlflow.db"


def client_for(cwd: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(cwd))


def all_runs(cwd: Path, where: str = "") -> list:
    """Every run in the `lvsweep` experiment of the store under `cwd` (narrowed by an MLflow filter),
    or none while the store or the experiment does not exist yet."""
    if not (cwd / "mlruns" / "mlflow.db").exists():
        return []
    with creation_lock(store_uri(cwd)):  # a CLI may be creating the store right now
        exp = client_for(cwd).get_experiment_by_name("lvsweep")
    return client_for(cwd).search_runs([exp.experiment_id], where, max_results=1000) if exp else []


def wait_until(condition: Callable[[], T], proc: Optional[subprocess.Popen], what: str) -> T:
    """Poll `condition` until it returns something truthy, and return that. A CLI that exits first
    fails the test at once with its stderr, rather than leaving it to wait for the limit."""
    deadline = time.monotonic() + HANG_S
    while True:
        found = condition()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the CLI exited ({proc.returncode}) before {what}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"still no {what} after {HANG_S:.0f} s: the CLI hangs")
        time.sleep(0.1)


def wait_for_run(cwd: Path, proc: Optional[subprocess.Popen], where: str, status: str = "RUNNING") -> Any:
    """The first run matching `where` (an MLflow filter) with this status, once the store has it."""
    return wait_until(lambda: next(iter(all_runs(cwd, f"attributes.status = '{status}' and {where}")), None),
                      proc, f"{status} run with {where}")


def wait_for_metric(cwd: Path, proc: Optional[subprocess.Popen], run_id: str, key: str) -> list:
    """The history of a metric, once the run has written at least one value of it to the store."""
    return wait_until(lambda: client_for(cwd).get_metric_history(run_id, key), proc, f"metric {key} in run {run_id}")


@pytest.fixture
def lv_config() -> DictConfig:
    return compose_config()
