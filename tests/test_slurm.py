"""lvsweep on a live SLURM scheduler: the throwaway single-node cluster of `.ci/slurm-up`, with
accounting, driven through the real CLI and the real SLURM commands (sbatch, scancel, scontrol).

What the scheduler does to a job (cancel, preempt, a time limit with and without requeue, a hard
kill) and what lvsweep must record for it are in `lvsweep.slurm`. Jobs run on this host, so a run
lost to SIGKILL could also be found by its pid; the sacct test checks that the scheduler's
account is what closes it, as it must be on a cluster whose jobs run elsewhere.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from helpers.cli import finish_cli, start_cli
from helpers.overrides import QUICK_SWEEP
from helpers.servers import MlflowServer, PostgresCluster, missing_postgres
from helpers.slurm import SlurmCluster
from helpers.store import all_runs, child_runs, client_for, sweep_parents, wait_until
from helpers.system import require
from lvsweep.slurm import JOB_TAG, REQUEUED_TAG, RESTARTS_TAG

# One throwaway cluster a session: every test of it in one xdist worker, so no second one starts.
pytestmark = pytest.mark.xdist_group("slurm")

OBJECTIVE = "align/anticorrelation"
# One CPU and 1 GB a job: two jobs at once on a 2-core node (the launcher's default asks 2 CPUs, 4 GB).
ON_SLURM = ["-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
LONG_EPOCHS = "5000000"
LONG = f"trainer.epochs={LONG_EPOCHS}"  # a job that runs until the scheduler stops it
# Time-limit settings: 1 minute (SLURM's least), USR2 30 s before it.
LIMIT = ["hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=30"]


def start_sweep(cluster: SlurmCluster, cwd: Path, *args: str) -> subprocess.Popen:
    return start_cli(cwd, *ON_SLURM, *QUICK_SWEEP, *args, env=cluster.env())


def sweep_with_a_training_job(cluster: SlurmCluster, cwd: Path, *args: str) -> tuple[subprocess.Popen, object, str]:
    """A sweep on the cluster, once one of its jobs is training: (controller, that job's run, the job)."""
    proc = start_sweep(cluster, cwd, *args)
    submitted(cwd, proc)
    victim = training_job(cwd, proc)[0]
    return proc, victim, victim.data.tags[JOB_TAG]


def training_job(cwd: Path, proc: subprocess.Popen) -> list:
    """Long child runs (LONG) RUNNING with metrics logged (training under way), once there is one. Waited for
    only after the controller has submitted its jobs, so the store is made by then."""
    return wait_until(lambda: [r for r in child_runs(cwd) if r.info.status == "RUNNING" and r.data.metrics
                               and r.data.params.get("trainer.epochs") == LONG_EPOCHS],
                      proc, "a long job training")


def submitted(cwd: Path, proc: subprocess.Popen) -> str:
    """The job array the controller in `cwd` submitted, once submitit's folder for it appears: by
    then the controller has made the store and opened the sweep's parent run."""
    return wait_until(lambda: next((p.name for p in cwd.glob("outputs/multirun/*/*/.submitit/*") if p.name.isdigit()), None),
                      proc, "a submitted job array")


def test_explain_reads_a_cancelled_and_a_signalled_job_off_the_scheduler(slurm_cluster: SlurmCluster, tmp_path):
    """What a SIGTERM in a job means comes from the scheduler's state of it at that moment."""
    env = slurm_cluster.env()

    def sleeper() -> str:
        job = slurm_cluster.command("sbatch", "--parsable", "-o", str(tmp_path / "%j.out"), "--wrap", "sleep 600").strip()
        wait_until(lambda: slurm_cluster.live_state(job) == "RUNNING", None, f"job {job} running")
        return job

    def explain(job: str) -> str:
        code = f"from lvsweep.slurm import explain_sigterm; print(explain_sigterm({job!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()

    running = sleeper()
    assert explain(running).startswith(f"preempted: SIGTERM while SLURM job {running} was RUNNING")
    slurm_cluster.command("scancel", running)
    assert explain(running) == f"cancelled: SLURM job {running} was cancelled (scancel)"


@pytest.mark.slow
def test_a_multirun_is_one_job_array_and_every_job_finishes(slurm_cluster: SlurmCluster, tmp_path):
    proc = start_sweep(slurm_cluster, tmp_path, "noise=0,1")
    out, err = finish_cli(proc)
    assert proc.returncode == 0 and err == "", err[-3000:]
    assert "submitted as SLURM job array" in out
    children = child_runs(tmp_path)
    assert sorted(r.data.params["noise.level"] for r in children) in (["0", "1"], ["0.0", "1.0"])
    assert {r.info.status for r in children} == {"FINISHED"}
    jobs = sorted(r.data.tags[JOB_TAG] for r in children)
    array = jobs[0].partition("_")[0]
    assert jobs == [f"{array}_0", f"{array}_1"]  # one array, one task per job
    assert {slurm_cluster.wait_for_state(j, {"COMPLETED"}) for j in jobs} == {"COMPLETED"}
    assert [p.info.status for p in sweep_parents(tmp_path)] == ["FINISHED"]


@pytest.mark.slow
def test_scancel_kills_the_job_s_run_with_its_metrics_and_the_sweep_goes_on(slurm_cluster: SlurmCluster, tmp_path):
    """Job 1 runs until cancelled; job 0, short, finishes; the sweep waits for both and fails."""
    proc, victim, job = sweep_with_a_training_job(slurm_cluster, tmp_path, f"trainer.epochs=20,{LONG_EPOCHS}")
    slurm_cluster.command("scancel", job)
    out, err = finish_cli(proc)
    assert proc.returncode == 1, err[-3000:]
    assert err.strip().splitlines() == [f"lvsweep: 1 job(s) failed: {victim.info.run_name}"]
    run = client_for(tmp_path).get_run(victim.info.run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["lvsweep.error"] == f"cancelled: SLURM job {job} was cancelled (scancel)"
    assert run.data.metrics  # what it logged before the signal
    assert "config.yaml" in {a.path for a in client_for(tmp_path).list_artifacts(run.info.run_id)}
    assert {r.info.status for r in child_runs(tmp_path)} == {"FINISHED", "KILLED"}
    assert f"(SLURM job {job}) ended CANCELLED" in out
    assert slurm_cluster.final_state(job) == "CANCELLED"


@pytest.mark.slow
def test_preemption_kills_the_run_as_preempted(slurm_cluster: SlurmCluster, tmp_path):
    """Preemption as a job sees it: SIGTERM while the job still runs, then the kill."""
    proc, victim, job = sweep_with_a_training_job(slurm_cluster, tmp_path, "noise=0", LONG)
    slurm_cluster.command("scancel", "--signal=TERM", job)
    wait_until(lambda: client_for(tmp_path).get_run(victim.info.run_id).info.status != "RUNNING", proc,
               "the preempted run closed")
    subprocess.run(["scancel", job], env=slurm_cluster.env(), capture_output=True)  # the kill (the job may be gone)
    finish_cli(proc)
    assert proc.returncode == 1
    run = client_for(tmp_path).get_run(victim.info.run_id)
    assert run.info.status == "KILLED" and run.data.metrics
    assert run.data.tags["lvsweep.error"].startswith(
        f"preempted: SIGTERM while SLURM job {job} was RUNNING")


@pytest.mark.slow
def test_a_hard_killed_job_s_run_is_closed_from_the_accounting(slurm_cluster: SlurmCluster, tmp_path):
    proc, victim, job = sweep_with_a_training_job(slurm_cluster, tmp_path, "noise=0", LONG)
    # The out-of-memory killer's way: SIGKILL to the job's process, no handler runs. (`scancel
    # --signal=KILL` is a plain cancel to SLURM: SIGTERM first.)
    os.kill(int(victim.data.tags["lvsweep.pid"]), signal.SIGKILL)
    finish_cli(proc)
    assert proc.returncode == 1
    run = client_for(tmp_path).get_run(victim.info.run_id)
    assert run.info.status == "FAILED"
    state = slurm_cluster.final_state(job)
    assert run.data.tags["lvsweep.error"].startswith(f"lost: SLURM job {job} ended {state} (sacct)")


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="on CI and once here the requeued job never started again before the "
                   "sweep ended (one child run, not two); the same flow driven by hand restarts the job and "
                   "records both runs: the cause is open (docs/scaling.md, Known problem)")
def test_time_limits_without_and_with_requeue(slurm_cluster: SlurmCluster, tmp_path):
    """Two sweeps at once, each one job that outlives its time limit. Without requeue (the
    default) the run ends KILLED at the limit. With `max_num_timeout=1` the USR2 before the limit
    closes the run as requeued, the job starts again (a new run, restart 1), and at its second
    limit, with no requeue left, it ends KILLED like the first sweep's."""
    once, twice = tmp_path / "once", tmp_path / "twice"
    once.mkdir()
    twice.mkdir()
    # 2-minute limits: SLURM may send the USR2 up to a minute before its time, and on a busy node a
    # job may not have opened its run a minute after it started.
    plain = start_sweep(slurm_cluster, once, "noise=0", LONG, *LIMIT, "hydra.launcher.timeout_min=2")
    requeue = start_sweep(slurm_cluster, twice, "noise=0", LONG, *LIMIT, "hydra.launcher.timeout_min=2",
                          "hydra.launcher.max_num_timeout=1")
    submitted(twice, requeue)
    # A requeued job waits 120 s (SLURM's BeginTime for requeued jobs) before it may start again:
    # the test lets it start at once, the scheduler's only deviation here.
    job_of_requeue = wait_until(lambda: next((r.data.tags[JOB_TAG] for r in all_runs(twice)
                                              if r.data.tags.get(REQUEUED_TAG) == "true"), None),
                                requeue, "the run closed for its requeue")
    wait_until(lambda: slurm_cluster.live_state(job_of_requeue) == "PENDING", requeue, "the requeued job pending")
    slurm_cluster.command("scontrol", "update", f"JobId={job_of_requeue}", "StartTime=now")
    for proc in (plain, requeue):
        finish_cli(proc)
        assert proc.returncode == 1

    [run] = child_runs(once)
    job = run.data.tags[JOB_TAG]
    assert run.info.status == "KILLED", run.data.tags.get("lvsweep.error")
    assert run.data.tags["lvsweep.error"] == f"time limit: SLURM job {job} reached its time limit (hydra.launcher.timeout_min)"
    assert run.data.metrics and slurm_cluster.final_state(job) == "TIMEOUT"

    first, second = sorted(child_runs(twice), key=lambda r: int(r.data.tags[RESTARTS_TAG]))
    assert first.data.tags[JOB_TAG] == second.data.tags[JOB_TAG] == job_of_requeue
    assert (first.data.tags[RESTARTS_TAG], second.data.tags[RESTARTS_TAG]) == ("0", "1")
    assert first.info.status == "KILLED" and first.data.tags[REQUEUED_TAG] == "true"
    assert first.data.tags["lvsweep.error"].startswith(f"time limit: SLURM job {job_of_requeue} is near its time limit; requeued")
    assert second.info.status == "KILLED" and REQUEUED_TAG not in second.data.tags
    assert second.data.tags["lvsweep.error"].startswith(f"time limit: SLURM job {job_of_requeue} reached its time limit")


@pytest.mark.slow
def test_a_study_run_by_a_job_array_of_workers_loses_and_doubles_no_trial(slurm_cluster: SlurmCluster, tmp_path):
    """The cluster recipe of docs/scaling.md: two workers as one `sbatch --array`, one PostgreSQL
    study, every run logged to an MLflow server (backed by the same PostgreSQL cluster)."""
    require(missing_postgres())
    pg = PostgresCluster().start()
    try:
        study_url = pg.create_database("optuna")
        server = MlflowServer(pg.create_database("mlflow"), tmp_path / "artifacts").start()
        try:
            script = tmp_path / "sweep.sbatch"
            overrides = " ".join(QUICK_SWEEP)
            script.write_text(textwrap.dedent(f"""\
                #!/bin/bash
                #SBATCH --array=0-1 --cpus-per-task=1 --mem=1G --output={tmp_path}/worker-%a.log
                cd {tmp_path}
                exec {sys.executable} -m lvsweep -m search=optuna hydra.sweeper.study_name=array \\
                    hydra.sweeper.storage={study_url} hydra.sweeper.n_trials=2 {overrides}
                """))
            env = slurm_cluster.env(MLFLOW_TRACKING_URI=server.url)  # the workers inherit it (--export=ALL)
            array = slurm_cluster.command("sbatch", "--parsable", str(script), env=env).strip()
            for task in (f"{array}_0", f"{array}_1"):
                assert slurm_cluster.wait_for_state(task, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}) == "COMPLETED", \
                    (tmp_path / f"worker-{task[-1]}.log").read_text()[-3000:]
            trials = optuna.load_study(study_name="array", storage=study_url).get_trials()
            assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # none lost, none doubled
            assert {t.state for t in trials} == {TrialState.COMPLETE}
            runs = {r.info.run_id: r for r in child_runs(server.url)}
            assert sorted(int(r.data.tags["optuna_trial"]) for r in runs.values()) == [0, 1, 2, 3]
            for t in trials:  # every trial linked to its run, and the run to its trial
                run = runs[t.user_attrs["mlflow_run_id"]]
                assert run.data.tags["optuna_trial"] == str(t.number) and run.info.status == "FINISHED"
                assert t.value == pytest.approx(run.data.metrics[OBJECTIVE], rel=1e-12)
                assert run.data.tags[JOB_TAG] in (f"{array}_0", f"{array}_1")
            parents = sweep_parents(server.url)
            assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
        finally:
            server.stop()
    finally:
        pg.stop()


@pytest.mark.slow
def test_a_study_on_the_cluster_prunes_inside_its_jobs(slurm_cluster: SlurmCluster, tmp_path):
    """Two slots, each trial a SLURM job that reports to its trial in the study's database: the
    400-epoch trial is pruned at step 100 inside its job, the 40-epoch trial never reaches it."""
    pruner = "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0, n_warmup_steps: 100}"
    proc = start_sweep(slurm_cluster, tmp_path, "search=optuna", "hydra.sweeper.study_name=pr", "hydra.sweeper.n_trials=2",
                       "hydra.sweeper.n_jobs=2", pruner, "trainer.epochs=choice(40, 400)", "trainer.align_every=20",
                       "hydra.sweeper.enqueue=[{trainer.epochs: 400}, {trainer.epochs: 40}]")
    out, err = finish_cli(proc)
    assert proc.returncode == 0, err[-3000:]
    trials = optuna.load_study(study_name="pr", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE]
    assert max(trials[0].intermediate_values) == 100
    runs = {int(r.data.tags["optuna_trial"]): r for r in child_runs(tmp_path)}
    assert runs[0].info.status == "KILLED" and runs[0].data.tags["lvsweep.pruned_at_step"] == "100"
    assert runs[1].info.status == "FINISHED"
    jobs = [runs[n].data.tags[JOB_TAG] for n in (0, 1)]
    assert jobs[0] != jobs[1]  # one job per slot
    assert {slurm_cluster.wait_for_state(j, {"COMPLETED"}) for j in jobs} == {"COMPLETED"}  # a pruned job ends normally
    assert "PRUNED at step 100" in out
