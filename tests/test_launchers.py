"""Hydra's process-based launchers against the real SQLite MLflow store: every job lands, each
under the sweep's parent run, with no write lost to SQLite's single-writer lock."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import Outcomes, finish_cli, run_cli, start_cli, together
from helpers.overrides import QUICK
from helpers.store import all_runs, parents_and_children


def assert_sweep_recorded(cwd: Path, seeds: list[int]) -> None:
    (parent,), children = parents_and_children(cwd)
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/jobs"] == len(seeds)
    assert sorted(int(r.data.params["seed"]) for r in children) == seeds
    assert all(r.info.status == "FINISHED" and "align/anticorrelation" in r.data.metrics for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}


def two_first_runs(cwd: Path) -> list[tuple[int, str]]:
    """Two single runs started at once in an empty directory: each one's exit status and stderr."""
    procs = [start_cli(cwd, *QUICK, f"seed={seed}") for seed in (0, 1)]
    errs = [finish_cli(proc)[1] for proc in procs]
    return [(proc.returncode, err) for proc, err in zip(procs, errs)]


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> Outcomes:
    """The three launches, each in an empty directory of its own, made together rather than one
    test after another: name -> (directory, result)."""
    dirs = {name: tmp_path_factory.mktemp(name) for name in ("joblib", "submitit", "first")}
    commands = {
        "joblib": lambda: run_cli(dirs["joblib"], "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                  "seed=0,1,2,3,4,5", *QUICK),
        "submitit": lambda: run_cli(dirs["submitit"], "-m", "hydra/launcher=submitit_local", "seed=0,1", *QUICK),
        "first": lambda: two_first_runs(dirs["first"]),
    }
    return together({name: (lambda name=name: (dirs[name], commands[name]())) for name in commands})


@pytest.mark.slow
def test_joblib_launcher_runs_six_jobs_on_two_workers_into_one_sqlite_store(launched):
    tmp_path, proc = launched["joblib"]
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    assert_sweep_recorded(tmp_path, [0, 1, 2, 3, 4, 5])


@pytest.mark.slow
def test_submitit_local_launcher_runs_jobs_as_separate_processes(launched):
    tmp_path, proc = launched["submitit"]
    assert proc.returncode == 0, proc.stderr
    assert_sweep_recorded(tmp_path, [0, 1])
    # Each job ran in a process of its own, with its own submitit log.
    assert len(list(tmp_path.glob("outputs/multirun/*/*/.submitit/*/*_log.out"))) == 2


@pytest.mark.slow
def test_processes_creating_a_new_store_at_once_all_land(launched):
    """Two first runs in an empty directory: one creates the store, the other waits for it
    (without the lock both migrate it and one dies on 'duplicate column name')."""
    tmp_path, ended = launched["first"]
    for status, err in ended:
        assert status == 0, err
    runs = all_runs(tmp_path)
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1"]
    assert all(r.info.status == "FINISHED" for r in runs)
