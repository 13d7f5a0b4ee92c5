"""Hydra's process-based launchers against the real SQLite MLflow store: every job lands, each
under the sweep's parent run, with no write lost to SQLite's single-writer lock."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import finish_all, run_cli, start_cli
from helpers.overrides import QUICK
from helpers.store import all_runs, parents_and_children


def assert_sweep_recorded(cwd: Path, seeds: list[int]) -> None:
    (parent,), children = parents_and_children(cwd)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/jobs"] == len(seeds)
    assert sorted(int(r.data.params["seed"]) for r in children) == seeds
    assert all(r.info.status == "FINISHED" and "align/anticorrelation" in r.data.metrics for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}


@pytest.mark.slow
def test_joblib_launcher_runs_six_jobs_on_two_workers_into_one_sqlite_store(tmp_path):
    proc = run_cli(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1,2,3,4,5", *QUICK)
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    assert_sweep_recorded(tmp_path, [0, 1, 2, 3, 4, 5])


@pytest.mark.slow
def test_submitit_local_launcher_runs_jobs_as_separate_processes(tmp_path):
    proc = run_cli(tmp_path, "-m", "hydra/launcher=submitit_local", "seed=0,1", *QUICK)
    assert proc.returncode == 0, proc.stderr
    assert_sweep_recorded(tmp_path, [0, 1])
    # Each job ran in a process of its own, with its own submitit log.
    assert len(list(tmp_path.glob("outputs/multirun/*/*/.submitit/*/*_log.out"))) == 2


@pytest.mark.slow
def test_processes_creating_a_new_store_at_once_all_land(tmp_path):
    """Two first runs in an empty directory: one creates the store, the other waits for it
    (without the lock both migrate it and one dies on 'duplicate column name')."""
    finish_all([start_cli(tmp_path, *QUICK, f"seed={seed}") for seed in (0, 1)])
    runs = all_runs(tmp_path)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
