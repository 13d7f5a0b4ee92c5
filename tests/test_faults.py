"""Faults through the real CLI: Ctrl-C and SIGTERM on a run, a plain multirun and a study, a
worker killed with SIGKILL in the middle of a trial and restarted, a run killed with SIGKILL and
closed by the next command, a launcher's worker killed in a plain multirun, and stores that
cannot be reached.

A fault lands while a trial's MLflow run is RUNNING (the test polls the store for it), so it
really hits the middle of a trial. Afterwards nothing finished before it may be lost or doubled.
Every wait is for an event (a status or a metric in the store, the process's exit), so the
tests hold on a loaded machine, where a CLI takes tens of seconds to start and to shut down.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers.cli import cli_env, finish_cli, run_cli, start_cli
from helpers.overrides import QUICK
from helpers.servers import free_port
from helpers.store import all_runs, client_for, wait_for_metric, wait_for_run

OBJECTIVE = "align/anticorrelation"
# 4000 epochs: a trial lasts a second or two, long enough to be hit in the middle.
STUDY = ["-m", "search=optuna", "hydra.sweeper.study_name=f", "hydra.sweeper.n_trials=null",
         "hydra.sweeper.target_complete=3", "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2",
         "trainer.epochs=4000", "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=false"]


def children_by_trial(cwd: Path) -> dict[int, list]:
    by_trial: dict[int, list] = {}
    for run in all_runs(cwd):
        if "optuna_trial" in run.data.tags:
            by_trial.setdefault(int(run.data.tags["optuna_trial"]), []).append(run)
    return by_trial


def load_study(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name="f", storage=f"sqlite:///{cwd}/mlruns/optuna.db")


LONG_RUN = ["trainer.epochs=1000000", "system.n_steps=300", "analysis.figures=false"]


def stop_a_single_run(cwd: Path, sig: signal.Signals) -> tuple[subprocess.Popen, str, object, list]:
    """A single run stopped by `sig` once it has written training metrics to the store: the CLI
    (exited), its stderr, the run as the store has it then, and the train/loss history it had
    written before the signal."""
    proc = start_cli(cwd, *LONG_RUN)
    run = wait_for_run(cwd, proc, "attributes.run_name = 'run'")
    before = wait_for_metric(cwd, proc, run.info.run_id, "train/loss")
    proc.send_signal(sig)
    _, err = finish_cli(proc)
    return proc, err, client_for(cwd).get_run(run.info.run_id), before


def test_ctrl_c_on_a_single_run_leaves_it_killed_with_its_metrics(tmp_path):
    proc, err, killed, before = stop_a_single_run(tmp_path, signal.SIGINT)
    assert proc.returncode == 130 and err.strip().splitlines() == ["lvsweep: interrupted"]
    assert killed.info.status == "KILLED" and killed.data.tags["lvsweep.error"] == "interrupted"
    history = client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss")
    assert len(history) >= len(before) and all(h.step < 1_000_000 for h in history)  # logged before the stop


def test_sigterm_on_a_single_run_leaves_it_killed_with_its_metrics_and_config(tmp_path):
    proc, err, killed, before = stop_a_single_run(tmp_path, signal.SIGTERM)
    assert proc.returncode == 143 and err.strip().splitlines() == ["lvsweep: terminated"]
    assert killed.info.status == "KILLED" and killed.data.tags["lvsweep.error"] == "terminated"
    history = client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss")
    assert {(h.step, h.value) for h in before} <= {(h.step, h.value) for h in history}  # nothing lost
    assert all(h.step < 1_000_000 for h in history)
    assert "config.yaml" in {a.path for a in client_for(tmp_path).list_artifacts(killed.info.run_id)}
    logged = client_for(tmp_path).download_artifacts(killed.info.run_id, "config.yaml", str(tmp_path))
    assert "epochs: 1000000" in Path(logged).read_text()  # written before training, not at its end


def test_sigterm_on_a_plain_multirun_closes_the_job_and_the_sweep(tmp_path):
    proc = start_cli(tmp_path, "-m", "noise=0,1", *LONG_RUN)
    job = wait_for_run(tmp_path, proc, "params.`noise.level` = '0.0'")
    wait_for_metric(tmp_path, proc, job.info.run_id, "train/loss")
    proc.send_signal(signal.SIGTERM)
    _, err = finish_cli(proc)
    assert proc.returncode == 143 and err.strip().splitlines() == ["lvsweep: terminated"]
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    (parent,) = [r for r in runs.values() if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "KILLED" and parent.data.tags["lvsweep.error"] == "terminated"
    assert runs[job.info.run_id].info.status == "KILLED"
    assert runs[job.info.run_id].data.tags["lvsweep.error"] == "terminated"
    assert [r.data.params["noise.level"] for r in runs.values() if r is not parent] == ["0.0"]  # job 1 never began


@pytest.mark.slow
def test_ctrl_c_on_a_study_fails_the_running_trial_and_the_study_resumes(tmp_path):
    proc = start_cli(tmp_path, *STUDY)
    wait_for_run(tmp_path, proc, "tags.optuna_trial = '1'")
    proc.send_signal(signal.SIGINT)
    finish_cli(proc)
    assert proc.returncode == 130
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
def test_sigterm_on_a_study_fails_the_running_trial_and_closes_its_runs(tmp_path):
    proc = start_cli(tmp_path, *STUDY)
    trial_run = wait_for_run(tmp_path, proc, "tags.optuna_trial = '1'")
    proc.send_signal(signal.SIGTERM)
    _, err = finish_cli(proc)
    assert proc.returncode == 143 and err.strip().splitlines() == ["lvsweep: terminated"]
    trials = {t.number: t for t in load_study(tmp_path).get_trials()}
    assert trials[0].state == TrialState.COMPLETE and trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["lvsweep.failure"].startswith("terminated")
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    assert runs[trial_run.info.run_id].info.status == "KILLED"
    assert runs[trial_run.info.run_id].data.tags["lvsweep.error"] == "terminated"
    assert children_by_trial(tmp_path)[0][0].info.status == "FINISHED"  # finished before: untouched
    (parent,) = [r for r in runs.values() if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "KILLED" and parent.data.tags["lvsweep.error"] == "terminated"


def test_a_run_killed_hard_is_closed_as_lost_by_the_next_command_and_a_live_one_is_not(tmp_path):
    victim = start_cli(tmp_path, *LONG_RUN)
    run = wait_for_run(tmp_path, victim, "attributes.run_name = 'run'")
    metrics = wait_for_metric(tmp_path, victim, run.info.run_id, "train/loss")

    beside = run_cli(tmp_path, *QUICK, "analysis.figures=false")  # while the victim is alive
    assert beside.returncode == 0, beside.stderr
    assert client_for(tmp_path).get_run(run.info.run_id).info.status == "RUNNING"

    victim.kill()  # SIGKILL, as the out-of-memory killer sends: no handler runs
    finish_cli(victim)
    assert client_for(tmp_path).get_run(run.info.run_id).info.status == "RUNNING"
    after = run_cli(tmp_path, *QUICK, "analysis.figures=false")
    assert after.returncode == 0, after.stderr
    assert f"run {run.info.run_id} (run) was left RUNNING by process {victim.pid}" in after.stdout
    lost = client_for(tmp_path).get_run(run.info.run_id)
    reason = lost.data.tags["lvsweep.error"]
    assert lost.info.status == "FAILED" and reason.startswith(f"lost: process {victim.pid} on host ")
    assert "is gone" in reason
    history = client_for(tmp_path).get_metric_history(run.info.run_id, "train/loss")
    assert {(h.step, h.value) for h in metrics} <= {(h.step, h.value) for h in history}  # nothing lost
    assert "config.yaml" in {a.path for a in client_for(tmp_path).list_artifacts(run.info.run_id)}
    assert sorted(r.info.status for r in all_runs(tmp_path)) == ["FAILED", "FINISHED", "FINISHED"]


def test_only_runs_whose_process_is_certainly_gone_are_closed_as_lost(tmp_path):
    """Runs as other processes left them in the store: the next command closes those of a process
    that has ended or whose pid now belongs to a later process, and leaves the rest alone."""
    first = run_cli(tmp_path, *QUICK, "analysis.figures=false")  # makes the store
    assert first.returncode == 0, first.stderr
    client = client_for(tmp_path)
    experiment_id = client.get_experiment_by_name("lvsweep").experiment_id
    host, me = socket.gethostname(), os.getpid()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    my_start = Path("/proc/self/stat").read_text().rpartition(")")[2].split()[19]
    left = {  # name -> (host, pid, start stamp or None, closed?)
        "alive": (host, me, f"proc:{boot}:{namespace}:{my_start}", False),
        "alive, no stamp": (host, me, None, False),
        "pid reused": (host, me, f"proc:{boot}:{namespace}:{int(my_start) - 1}", True),
        "before a reboot": (host, me, f"proc:not-this-boot:{namespace}:{my_start}", True),
        "other pid namespace": (host, 999_999_999, f"proc:{boot}:1:{my_start}", False),
        "ended": (host, _pid_of_ended(), None, True),
        "other host": (host + "-elsewhere", 999_999_999, None, False),
    }
    ids = {}
    for name, (run_host, pid, stamp, _) in left.items():
        tags = {"lvsweep.host": run_host, "lvsweep.pid": str(pid), **({"lvsweep.pid_start": stamp} if stamp else {})}
        ids[name] = client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    after = run_cli(tmp_path, *QUICK, "analysis.figures=false")
    assert after.returncode == 0, after.stderr
    for name, (_, pid, _, closed) in left.items():
        run = client.get_run(ids[name])
        if closed:
            assert run.info.status == "FAILED" and run.data.tags["lvsweep.error"].startswith(f"lost: process {pid} "), name
            assert f"({name}) was left RUNNING" in after.stdout
        else:
            assert run.info.status == "RUNNING" and "lvsweep.error" not in run.data.tags, name


def _pid_of_ended() -> int:
    """The pid of a child process that has exited and been reaped: no process has it now."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_retried_and_closed_on_restart(tmp_path):
    proc = start_cli(tmp_path, *STUDY)
    wait_for_run(tmp_path, proc, "tags.optuna_trial = '1'")
    proc.kill()  # SIGKILL: no handler runs, the trial and its runs are left RUNNING
    finish_cli(proc)
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
    killed = by_trial[1][0]  # closed by the restart as soon as it opened the store: its process is gone
    assert killed.info.status == "FAILED" and killed.data.tags["lvsweep.error"].startswith(f"lost: process {proc.pid} ")
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
    victim = wait_for_run(tmp_path, proc, "params.`trainer.epochs` = '400000'")
    # The short job finishes first, so the kill cannot take it down with the worker pool.
    wait_for_run(tmp_path, proc, "params.`trainer.epochs` = '100'", status="FINISHED")
    os.kill(int(victim.data.tags["lvsweep.pid"]), signal.SIGKILL)
    _, err = finish_cli(proc)
    assert proc.returncode == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("lvsweep: error: sweep: the launcher stopped")
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    lost = runs[victim.info.run_id]
    assert lost.info.status == "FAILED" and lost.data.tags["lvsweep.error"].startswith("lost:")
    (done,) = [r for r in runs.values() if r.data.params.get("trainer.epochs") == "100"]
    assert done.info.status == "FINISHED" and "align/anticorrelation" in done.data.metrics
    (parent,) = [r for r in runs.values() if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "FAILED" and "TerminatedWorkerError" in parent.data.tags["lvsweep.error"]


def test_an_unreachable_tracking_server_stops_a_sweep_before_it_starts(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_cli(tmp_path, "-m", "seed=0,1", *QUICK, env=cli_env(MLFLOW_TRACKING_URI=url))
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"lvsweep: error: tracking.uri: cannot reach {url}: ")
    assert not list(tmp_path.rglob("attention.csv"))  # nothing trained
