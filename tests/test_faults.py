"""Faults through the real CLI: Ctrl-C on a run and on a study, a worker killed with SIGKILL in the
middle of a trial and restarted, a launcher's worker killed in a plain multirun, and stores that
cannot be reached.

A fault lands while a trial's MLflow run is RUNNING (the test polls the store for it), so it
really hits the middle of a trial. Afterwards nothing finished before it may be lost or doubled.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from tests.helpers.servers import free_port
from lvsweep.tracking.stores import creation_lock
from tests.conftest import QUICK, cli_env, run_cli, start_cli, store_uri

OBJECTIVE = "align/anticorrelation"
# 4000 epochs: a trial lasts a second or two, long enough to be hit in the middle.
STUDY = ["-m", "search=optuna", "hydra.sweeper.study_name=f", "hydra.sweeper.n_trials=null",
         "hydra.sweeper.target_complete=3", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2",
         "trainer.epochs=4000", "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=false"]


def client_for(cwd: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=store_uri(cwd))


def all_runs(cwd: Path) -> list:
    client = client_for(cwd)
    exp = client.get_experiment_by_name("lvsweep")
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


def wait_for_running(cwd: Path, proc: subprocess.Popen, where: str, timeout: float = 120) -> object:
    """The first RUNNING run matching `where` (an MLflow filter), once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if (cwd / "mlruns" / "mlflow.db").exists():
            with creation_lock(store_uri(cwd)):  # the CLI may be creating the store right now
                exp = client_for(cwd).get_experiment_by_name("lvsweep")
            found = exp and client_for(cwd).search_runs([exp.experiment_id],
                                                        f"attributes.status = 'RUNNING' and {where}")
            if found:
                return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no RUNNING run with {where} within {timeout} s")


def children_by_trial(cwd: Path) -> dict[int, list]:
    by_trial: dict[int, list] = {}
    for run in all_runs(cwd):
        if "optuna_trial" in run.data.tags:
            by_trial.setdefault(int(run.data.tags["optuna_trial"]), []).append(run)
    return by_trial


def load_study(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name="f", storage=f"sqlite:///{cwd}/mlruns/optuna.db")


def test_ctrl_c_on_a_single_run_leaves_it_killed_with_its_metrics(tmp_path):
    proc = start_cli(tmp_path, "trainer.epochs=1000000", "system.n_steps=300", "analysis.figures=false")
    run = wait_for_running(tmp_path, proc, "attributes.run_name = 'run'")
    deadline = time.monotonic() + 60
    while not client_for(tmp_path).get_run(run.info.run_id).data.metrics.get("train/loss"):
        assert time.monotonic() < deadline, "no metric was flushed while training"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "lvsweep: interrupted" in err
    killed = client_for(tmp_path).get_run(run.info.run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["lvsweep.error"] == "interrupted"
    history = client_for(tmp_path).get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 2 and all(h.step < 1_000_000 for h in history)  # logged before the stop, not after


@pytest.mark.slow
def test_ctrl_c_on_a_study_fails_the_running_trial_and_the_study_resumes(tmp_path):
    proc = start_cli(tmp_path, *STUDY)
    wait_for_running(tmp_path, proc, "tags.optuna_trial = '1'")
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    before = {t.number: t for t in load_study(tmp_path).get_trials()}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.FAIL
    assert children_by_trial(tmp_path)[1][0].info.status == "KILLED"
    (parent,) = [r for r in all_runs(tmp_path) if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "KILLED"

    resumed = run_cli(tmp_path, *STUDY)
    assert resumed.returncode == 0, resumed.stderr
    trials = load_study(tmp_path).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    assert trials[0].value == before[0].value and trials[1].state == TrialState.FAIL  # kept as they were
    by_trial = children_by_trial(tmp_path)
    assert sorted(by_trial) == [t.number for t in trials] and all(len(runs) == 1 for runs in by_trial.values())
    assert [by_trial[t.number][0].info.status for t in trials] == \
        ["FINISHED", "KILLED"] + ["FINISHED"] * (len(trials) - 2)


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_retried_and_closed_on_restart(tmp_path):
    proc = start_cli(tmp_path, *STUDY)
    wait_for_running(tmp_path, proc, "tags.optuna_trial = '1'")
    proc.kill()  # SIGKILL: no handler runs, the trial and its runs are left RUNNING
    proc.communicate(timeout=30)
    before = {t.number: t for t in load_study(tmp_path).get_trials()}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING
    first_run = children_by_trial(tmp_path)[0][0]

    restarted = run_cli(tmp_path, *STUDY)
    assert restarted.returncode == 0, restarted.stderr
    trials = load_study(tmp_path).get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1
    assert trials[1].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 1)  # RetryFailedTrialCallback
    assert retry.state == TrialState.COMPLETE and retry.params == before[1].params
    assert trials[0].value == before[0].value  # finished before the fault: untouched

    by_trial = children_by_trial(tmp_path)
    assert sorted(by_trial) == [t.number for t in trials] and all(len(runs) == 1 for runs in by_trial.values())
    killed = by_trial[1][0]
    assert killed.info.status == "FAILED" and "worker stopped during trial 1" in killed.data.tags["lvsweep.error"]
    assert by_trial[0][0].info.status == "FINISHED" and by_trial[0][0].data.metrics == first_run.data.metrics
    assert all(by_trial[t.number][0].info.status == "FINISHED" for t in trials if t.state == TrialState.COMPLETE)
    parents = {r.info.run_id: r for r in all_runs(tmp_path) if r.data.tags.get("lvsweep.kind") == "sweep"}
    assert parents[killed.data.tags["mlflow.parentRunId"]].info.status == "FAILED"  # the dead worker's sweep
    assert sorted(p.info.status for p in parents.values()) == ["FAILED", "FINISHED"]


@pytest.mark.slow
def test_a_launcher_worker_killed_in_a_plain_multirun_leaves_no_run_running(tmp_path):
    """The joblib launcher loses a job whose worker dies; the sweep closes what it left behind."""
    proc = start_cli(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.epochs=100,400000",
                     "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=false")
    victim = wait_for_running(tmp_path, proc, "params.`trainer.epochs` = '400000'")
    # The short job finishes first, so the kill cannot take it down with the worker pool.
    wait_for(lambda: any(r.info.status == "FINISHED" for r in all_runs(tmp_path)), proc)
    os.kill(int(victim.data.tags["lvsweep.pid"]), signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("lvsweep: error: sweep: the launcher stopped")
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    lost = runs[victim.info.run_id]
    assert lost.info.status == "FAILED" and lost.data.tags["lvsweep.error"].startswith("lost:")
    (done,) = [r for r in runs.values() if r.data.params.get("trainer.epochs") == "100"]
    assert done.info.status == "FINISHED" and "align/anticorrelation" in done.data.metrics
    (parent,) = [r for r in runs.values() if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "FAILED" and "TerminatedWorkerError" in parent.data.tags["lvsweep.error"]


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.1)


def test_an_unreachable_tracking_server_stops_a_sweep_before_it_starts(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(tmp_path, "-m", "seed=0,1", *QUICK, env=cli_env(MLFLOW_TRACKING_URI=url))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"lvsweep: error: tracking.uri: cannot reach {url}: ")
    assert not list(tmp_path.rglob("attention.csv"))  # nothing trained
