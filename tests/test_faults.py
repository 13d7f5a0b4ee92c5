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

from helpers.cli import Outcomes, cli_env, finish_cli, run_cli, start_cli, together
from helpers.overrides import QUICK
from helpers.servers import free_port
from helpers.store import all_runs, client_for, wait_for_metric, wait_for_run, with_store

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


def stop_a_plain_multirun(cwd: Path) -> tuple[subprocess.Popen, str, object]:
    """A two-job multirun stopped by SIGTERM once its first job has written training metrics: the
    CLI (exited), its stderr, and the job's run as it was then."""
    proc = start_cli(cwd, "-m", "noise=0,1", *LONG_RUN)
    job = wait_for_run(cwd, proc, "params.`noise.level` = '0.0'")
    wait_for_metric(cwd, proc, job.info.run_id, "train/loss")
    proc.send_signal(signal.SIGTERM)
    _, err = finish_cli(proc)
    return proc, err, job


def kill_a_run_hard(cwd: Path) -> dict:
    """A long run, a QUICK one beside it while it lives, then SIGKILL on the long one and a QUICK
    run after it: what each step saw (the long run's status after each, the processes, the
    metrics the long run had written before the kill)."""
    seen: dict = {}
    victim = seen["victim"] = start_cli(cwd, *LONG_RUN)
    run = seen["run"] = wait_for_run(cwd, victim, "attributes.run_name = 'run'")
    seen["metrics"] = wait_for_metric(cwd, victim, run.info.run_id, "train/loss")
    seen["beside"] = run_cli(cwd, *QUICK, "analysis.figures=false")  # while the victim is alive
    seen["status beside"] = client_for(cwd).get_run(run.info.run_id).info.status
    victim.kill()  # SIGKILL, as the out-of-memory killer sends: no handler runs
    finish_cli(victim)
    seen["status killed"] = client_for(cwd).get_run(run.info.run_id).info.status
    seen["after"] = run_cli(cwd, *QUICK, "analysis.figures=false")
    return seen


def leave_runs_of_other_processes(cwd: Path) -> tuple[dict, dict, subprocess.CompletedProcess]:
    """Runs as other processes left them in a store (made by a QUICK run): what each is (name ->
    (host, pid, start stamp or None, to be closed?)), their ids, and the next command's result."""
    first = run_cli(cwd, *QUICK, "analysis.figures=false")  # makes the experiment, with a run
    assert first.returncode == 0, first.stderr
    client = client_for(cwd)
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
    return left, ids, run_cli(cwd, *QUICK, "analysis.figures=false")


@pytest.fixture(scope="module")
def faults(tmp_path_factory, made_store) -> Outcomes:
    """The module's faults, each in a directory of its own holding a store made as the CLI makes
    one (each fault lands after the store is open), made together rather than one test after
    another (every wait is for an event, so a loaded machine only makes them slower):
    name -> (directory, what the fault's function returned)."""
    jobs = {"ctrl-c": lambda cwd: stop_a_single_run(cwd, signal.SIGINT),
            "sigterm": lambda cwd: stop_a_single_run(cwd, signal.SIGTERM),
            "multirun": stop_a_plain_multirun, "killed hard": kill_a_run_hard,
            "left by others": leave_runs_of_other_processes}
    dirs = {name: with_store(made_store, tmp_path_factory.mktemp("fault")) for name in jobs}
    return together({name: (lambda name=name: (dirs[name], jobs[name](dirs[name]))) for name in jobs},
                    workers=len(jobs))


def test_ctrl_c_on_a_single_run_leaves_it_killed_with_its_metrics(faults):
    tmp_path, (proc, err, killed, before) = faults["ctrl-c"]
    assert proc.returncode == 130 and err.strip().splitlines() == ["lvsweep: interrupted"]
    assert killed.info.status == "KILLED" and killed.data.tags["lvsweep.error"] == "interrupted"
    history = client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss")
    assert len(history) >= len(before) and all(h.step < 1_000_000 for h in history)  # logged before the stop


def test_sigterm_on_a_single_run_leaves_it_killed_with_its_metrics_and_config(faults):
    tmp_path, (proc, err, killed, before) = faults["sigterm"]
    assert proc.returncode == 143 and err.strip().splitlines() == ["lvsweep: terminated"]
    assert killed.info.status == "KILLED" and killed.data.tags["lvsweep.error"] == "terminated"
    history = client_for(tmp_path).get_metric_history(killed.info.run_id, "train/loss")
    assert {(h.step, h.value) for h in before} <= {(h.step, h.value) for h in history}  # nothing lost
    assert all(h.step < 1_000_000 for h in history)
    assert "config.yaml" in {a.path for a in client_for(tmp_path).list_artifacts(killed.info.run_id)}
    logged = client_for(tmp_path).download_artifacts(killed.info.run_id, "config.yaml", str(tmp_path))
    assert "epochs: 1000000" in Path(logged).read_text()  # written before training, not at its end


def test_sigterm_on_a_plain_multirun_closes_the_job_and_the_sweep(faults):
    tmp_path, (proc, err, job) = faults["multirun"]
    assert proc.returncode == 143 and err.strip().splitlines() == ["lvsweep: terminated"]
    runs = {r.info.run_id: r for r in all_runs(tmp_path)}
    (parent,) = [r for r in runs.values() if r.data.tags.get("lvsweep.kind") == "sweep"]
    assert parent.info.status == "KILLED" and parent.data.tags["lvsweep.error"] == "terminated"
    assert runs[job.info.run_id].info.status == "KILLED"
    assert runs[job.info.run_id].data.tags["lvsweep.error"] == "terminated"
    assert [r.data.params["noise.level"] for r in runs.values() if r is not parent] == ["0.0"]  # job 1 never began


def interrupt_a_study_and_resume_it(cwd: Path) -> dict:
    """Ctrl-C on a study once trial 1's run is open, then the same command again: what the study
    and the store held after the stop, and the rerun's result."""
    seen: dict = {}
    proc = seen["proc"] = start_cli(cwd, *STUDY)
    wait_for_run(cwd, proc, "tags.optuna_trial = '1'")
    proc.send_signal(signal.SIGINT)
    finish_cli(proc)
    seen["before"] = {t.number: t for t in load_study(cwd).get_trials()}
    seen["trial 1 status"] = children_by_trial(cwd)[1][0].info.status
    seen["parents"] = [r for r in all_runs(cwd) if r.data.tags.get("lvsweep.kind") == "sweep"]
    seen["resumed"] = run_cli(cwd, *STUDY)
    return seen


def terminate_a_study(cwd: Path) -> tuple[subprocess.Popen, str, object]:
    """SIGTERM on a study once trial 1's run is open: the CLI (exited), its stderr, trial 1's run."""
    proc = start_cli(cwd, *STUDY)
    trial_run = wait_for_run(cwd, proc, "tags.optuna_trial = '1'")
    proc.send_signal(signal.SIGTERM)
    _, err = finish_cli(proc)
    return proc, err, trial_run


def kill_a_worker_and_restart_it(cwd: Path) -> dict:
    """SIGKILL on a study's worker once trial 1's run is open, then the same command again: the
    study and the store after the kill, and the restart's result."""
    seen: dict = {}
    proc = seen["proc"] = start_cli(cwd, *STUDY)
    wait_for_run(cwd, proc, "tags.optuna_trial = '1'")
    proc.kill()  # SIGKILL: no handler runs, the trial and its runs are left RUNNING
    finish_cli(proc)
    seen["before"] = {t.number: t for t in load_study(cwd).get_trials()}
    seen["first run"] = children_by_trial(cwd)[0][0]
    seen["restarted"] = run_cli(cwd, *STUDY)
    return seen


def kill_a_launcher_worker(cwd: Path) -> tuple[subprocess.Popen, str, object]:
    """SIGKILL on the joblib worker of a plain multirun's long job once the short job finished:
    the CLI (exited), its stderr, the long job's run."""
    proc = start_cli(cwd, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.epochs=100,400000",
                     "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=false")
    victim = wait_for_run(cwd, proc, "params.`trainer.epochs` = '400000'")
    # The short job finishes first, so the kill cannot take it down with the worker pool.
    wait_for_run(cwd, proc, "params.`trainer.epochs` = '100'", status="FINISHED")
    os.kill(int(victim.data.tags["lvsweep.pid"]), signal.SIGKILL)
    _, err = finish_cli(proc)
    return proc, err, victim


@pytest.fixture(scope="module")
def study_faults(tmp_path_factory, made_store) -> Outcomes:
    """The slow faults, each in a directory of its own holding a store made as the CLI makes one,
    made together rather than one test after another: name -> (directory, what its function returned)."""
    jobs = {"ctrl-c": interrupt_a_study_and_resume_it, "sigterm": terminate_a_study,
            "worker killed": kill_a_worker_and_restart_it, "launcher worker killed": kill_a_launcher_worker}
    dirs = {name: with_store(made_store, tmp_path_factory.mktemp("study-fault")) for name in jobs}
    return together({name: (lambda name=name: (dirs[name], jobs[name](dirs[name]))) for name in jobs},
                    workers=len(jobs))


@pytest.mark.slow
def test_ctrl_c_on_a_study_fails_the_running_trial_and_the_study_resumes(study_faults):
    tmp_path, seen = study_faults["ctrl-c"]
    before = seen["before"]
    assert seen["proc"].returncode == 130
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.FAIL
    assert seen["trial 1 status"] == "KILLED"
    (parent,) = seen["parents"]
    assert parent.info.status == "KILLED"

    resumed = seen["resumed"]
    assert resumed.returncode == 0, resumed.stderr
    trials = load_study(tmp_path).get_trials()
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 3
    assert trials[0].value == before[0].value and trials[1].state == TrialState.FAIL  # kept as they were
    by_trial = children_by_trial(tmp_path)
    assert sorted(by_trial) == [t.number for t in trials] and all(len(runs) == 1 for runs in by_trial.values())
    assert [by_trial[t.number][0].info.status for t in trials] == \
        ["FINISHED", "KILLED"] + ["FINISHED"] * (len(trials) - 2)


@pytest.mark.slow
def test_sigterm_on_a_study_fails_the_running_trial_and_closes_its_runs(study_faults):
    tmp_path, (proc, err, trial_run) = study_faults["sigterm"]
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


def test_a_run_killed_hard_is_closed_as_lost_by_the_next_command_and_a_live_one_is_not(faults):
    tmp_path, seen = faults["killed hard"]
    run, victim, metrics = seen["run"], seen["victim"], seen["metrics"]
    assert seen["beside"].returncode == 0, seen["beside"].stderr
    assert seen["status beside"] == "RUNNING"  # a command beside a live run leaves it alone
    assert seen["status killed"] == "RUNNING"  # SIGKILL: nothing closed it
    after = seen["after"]
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


def test_only_runs_whose_process_is_certainly_gone_are_closed_as_lost(faults):
    """Runs as other processes left them in the store: the next command closes those of a process
    that has ended or whose pid now belongs to a later process, and leaves the rest alone."""
    tmp_path, (left, ids, after) = faults["left by others"]
    client = client_for(tmp_path)
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
def test_a_worker_killed_mid_trial_is_failed_retried_and_closed_on_restart(study_faults):
    tmp_path, seen = study_faults["worker killed"]
    proc, before, first_run = seen["proc"], seen["before"], seen["first run"]
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING

    restarted = seen["restarted"]
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
def test_a_launcher_worker_killed_in_a_plain_multirun_leaves_no_run_running(study_faults):
    """The joblib launcher loses a job whose worker dies; the sweep closes what it left behind."""
    tmp_path, (proc, err, victim) = study_faults["launcher worker killed"]
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
