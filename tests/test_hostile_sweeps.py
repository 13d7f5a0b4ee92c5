"""Hostile sweeps through the real CLI: a study's storage that is not a database, a study that
this sweep cannot continue, searched or swept values no job could compose or run, a heartbeat
grace that would fail live trials, a trial another worker failed while its job ran, and single
runs started in the same second in one directory.

What can be checked up front is refused before the sweep's parent run opens: one line naming
the field, exit 2, the store as it was (the rows, through `helpers.table`). Each row's directory
holds a copy of a store with one FINISHED run; a row's setup prepares what it needs beside it.
The first row of each group runs as a subprocess, the others of the group call the CLI's entry
function in this process (`entry_calls`, see `helpers.table`).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState, create_trial

from helpers.cli import Outcomes, finish_all, finish_cli, start_cli, together
from helpers.overrides import QUICK
from helpers.store import all_runs, live_trials, load_study, wait_until, with_store
from helpers.table import Row, check_rows, entry_calls

OPTUNA = ("-m", "search=optuna", "hydra.sweeper.n_trials=1", *QUICK)
STORAGE = "hydra.sweeper.storage"


def text_in_the_study_place(cwd: Path) -> None:
    (cwd / "mlruns" / "optuna.db").write_text("notes, not a database\n")


def study_with_one_trial(cwd: Path, direction: str = "minimize") -> None:
    """The presets' study `lvsweep`, made by optuna itself: one trial that searched `model.lr`
    as a choice of two values."""
    study = optuna.create_study(study_name="lvsweep", storage=f"sqlite:///{cwd}/mlruns/optuna.db", direction=direction)
    study.add_trial(create_trial(params={"noise.level": 1.0, "model.lr": 0.01}, value=0.5,
                                 distributions={"noise.level": FloatDistribution(0.0, 4.0),
                                                "model.lr": CategoricalDistribution([0.01, 0.02])}))


def maximizing_study(cwd: Path) -> None:
    study_with_one_trial(cwd, "maximize")


ROWS = [
    # the study's storage, opened before the sweep's parent run
    Row((*OPTUNA, f"{STORAGE}=study.db"), STORAGE, says="sqlite:///study.db"),
    Row(OPTUNA, STORAGE, setup=text_in_the_study_place, label="a text file at mlruns/optuna.db",
        says="is not a SQLite database"),
    *entry_calls(
        Row((*OPTUNA, f"{STORAGE}=sqlite:/x"), STORAGE, says="not a well-formed database URL"),
        Row((*OPTUNA, f"{STORAGE}=foo://"), STORAGE, says="unknown kind of database 'foo'"),
        Row((*OPTUNA, f"{STORAGE}=sqlite://"), STORAGE, says="in-memory"),
        Row((*OPTUNA, f"{STORAGE}=sqlite:////proc/optuna.db"), STORAGE, says="cannot write in /proc"),
    ),
    # a study in the storage that this sweep cannot continue
    Row(OPTUNA, "hydra.sweeper.direction", setup=study_with_one_trial, label="a minimizing study 'lvsweep'",
        says="hydra.sweeper.direction=minimize"),
    *entry_calls(
        Row(OPTUNA, "hydra.sweeper.params.model.lr", setup=maximizing_study, label="model.lr searched as a choice",
            says="choice(0.01, 0.02)"),
    ),
    # searched values a trial's config refuses: every choice and both ends of a range are composed
    Row((*OPTUNA, "noise.level=choice(loud,quiet)"), "hydra.sweeper.params.noise.level", says="choice loud"),
    *entry_calls(
        Row((*OPTUNA, "noise=choice(gaussian,nosuch)"), "hydra.sweeper.params.noise", says="unknown option 'nosuch'"),
        Row((*OPTUNA, "noise.level=interval(-1,2)"), "hydra.sweeper.params.noise.level", says="low end"),
        Row((*OPTUNA, "trainer.threads=range(1,5000,1000)"), "hydra.sweeper.params.trainer.threads", says="high end"),
        Row((*OPTUNA, "seed=-1"), "seed", says="got -1"),  # a fixed override: said as a single run says it
    ),
    # a plain multirun's swept values and settings, checked before its parent run
    Row(("-m", "noise=gaussian,foo", *QUICK), "noise: unknown option 'foo'"),
    *entry_calls(
        Row(("-m", "noise.level=interval(0,1)", *QUICK), "noise.level", says="search=optuna"),
        Row(("-m", "noise=1,2", "hydra.sweeper.max_batch_size=0", *QUICK), "hydra.sweeper.max_batch_size"),
        Row(("-m", "hydra.sweeper.params={noise.level: 'interval('}", *QUICK), "hydra.sweeper.params.noise.level"),
    ),
    # a heartbeat grace period that would let workers fail each other's live trials
    Row((*OPTUNA, "hydra.sweeper.heartbeat_interval=10", "hydra.sweeper.grace_period=10"),
        "hydra.sweeper.grace_period", says="at least 2 x"),
    *entry_calls(
        Row((*OPTUNA, "hydra.sweeper.grace_period=60"), "hydra.sweeper.grace_period", says="(120 s)"),  # 60 s beats
    ),
]


def test_hostile_sweeps_are_refused_before_anything_is_recorded(seeded_store: Path, tmp_path: Path):
    assert len(ROWS) >= 15
    failures = check_rows(ROWS, seeded_store, tmp_path)
    assert not failures, "\n".join(failures)


def fail_a_running_trial(cwd: Path, study_name: str) -> FrozenTrial | None:
    """Fail a RUNNING trial whose job is running (its MLflow run is RUNNING) through the study's
    storage, as another worker that took it for dead would: the trial failed, or None while there
    is none to fail. A trial its own worker told first cannot be failed any more (optuna refuses in
    one transaction), so the next is tried."""
    trials = [t for t in live_trials(cwd, study_name) if t.state == TrialState.RUNNING]
    running = {r.data.tags.get("optuna_trial") for r in all_runs(cwd, "attributes.status = 'RUNNING'")} if trials else set()
    for trial in trials:
        if str(trial.number) not in running:
            continue
        try:
            load_study(cwd, study_name)._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue
        return trial
    return None


def fail_a_trial_of_a_live_study(cwd: Path) -> tuple[FrozenTrial, subprocess.Popen, str, str]:
    """A two-trial study, one of whose trials is failed through the storage while its job runs:
    the trial as it was failed, the CLI (exited), its stdout and stderr."""
    proc = start_cli(cwd, "-m", "search=optuna", "hydra.sweeper.study_name=told", "hydra.sweeper.n_trials=2", *QUICK)
    failed = wait_until(lambda: fail_a_running_trial(cwd, "told"), proc, "a RUNNING trial to fail")
    out, err = finish_cli(proc)
    return failed, proc, out, err


def start_in_the_same_second(cwd: Path) -> Path:
    """Four single runs started at once in one directory (a new one: the first makes the store)."""
    procs: list[subprocess.Popen] = [start_cli(cwd, *QUICK, f"seed={seed}") for seed in range(4)]
    finish_all(procs)
    return cwd


@pytest.fixture(scope="module")
def live(tmp_path_factory, made_store) -> Outcomes:
    """The live study (in a store made as the CLI makes one) and the four runs started in the same
    second, made together rather than one test after another."""
    study_dir = with_store(made_store, tmp_path_factory.mktemp("told"))
    same_dir = tmp_path_factory.mktemp("same")
    return together({"told": lambda: (study_dir, fail_a_trial_of_a_live_study(study_dir)),
                     "same second": lambda: start_in_the_same_second(same_dir)})


def test_a_trial_failed_by_another_worker_keeps_its_run_and_the_study_goes_on(live):
    tmp_path, (failed, proc, out, err) = live["told"]
    assert proc.returncode == 0, err
    assert "Cannot tell" not in err and "Traceback" not in err, err
    (line,) = [line for line in out.splitlines() if "another worker ended it" in line]
    assert f"(#{failed.number})" in line or line.startswith(f"  trial {failed.number + 1}/2"), line
    assert "FAIL already" in line and "align/anticorrelation" in line, line
    trials = load_study(tmp_path, "told").get_trials()
    assert len(trials) == 2 and trials[failed.number].state == TrialState.FAIL
    assert [t.state for t in trials if t.number != failed.number] == [TrialState.COMPLETE]
    runs = {r.data.tags["optuna_trial"]: r for r in all_runs(tmp_path) if "optuna_trial" in r.data.tags}
    run = runs[str(failed.number)]  # the job's result, recorded as it was
    assert run.info.status == "FINISHED" and "align/anticorrelation" in run.data.metrics
    assert "lvsweep.error" not in run.data.tags


def test_single_runs_started_in_the_same_second_each_write_their_own_output_directory(live):
    tmp_path = live["same second"]
    dirs = sorted((tmp_path / "outputs" / "runs").glob("*/*"))
    assert len(dirs) == 4, dirs
    seeds = set()
    for run_dir in dirs:
        assert {"config.yaml", "attention.csv", ".hydra"} <= {p.name for p in run_dir.iterdir()}, run_dir
        seeds.add(yaml.safe_load((run_dir / "config.yaml").read_text())["seed"])
    assert seeds == {0, 1, 2, 3}  # each directory holds one run's files, none written over
