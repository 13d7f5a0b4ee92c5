"""Pruning, warm starts, per-trial time limits and asynchronous slots, through the real CLI.

Which trial is pruned must not hang on rounding: a `ThresholdPruner` whose bound no
anticorrelation can reach (2) prunes every trial that reports past its warm-up (step 100) and none
that ends before it, so the outcome is set by the enqueued epochs alone. The trial that must time
out never ends by itself (10^7 epochs) and reports nothing a pruner could act on.
"""
from __future__ import annotations

import re
import signal

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper._study import StudySweeper
from hydra_plugins.lvsweep_optuna_sweeper._tracking import untrained_verdict
from hydra_plugins.lvsweep_optuna_sweeper.lvsweep_optuna_sweeper import check_settings
from lvsweep.errors import LvsweepError
from lvsweep.tracking.overview import panels_of
from lvsweep.tracking.report import write_report
from helpers.cli import finish_cli, run_cli, start_cli
from helpers.store import all_runs, client_for, live_trials, load_study, parents_and_children, wait_until
from test_optuna_sweeper import sweep_config

OBJECTIVE = "align/anticorrelation"
FAST = ["system.n_steps=200", "analysis.perturb.k=3", "analysis.figures=false", "analysis.log_model=false"]
ENDLESS, SHORT, LONG = 10_000_000, 40, 400
NO_REPORTS = 100_000_000  # trainer.align_every past every epoch: only the untrained step-0 value is reported
PRUNE_ALL = "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, lower: 2.0, n_warmup_steps: 100}"


def enqueue(*points: tuple[int, int]) -> str:
    return "hydra.sweeper.enqueue=[" + ", ".join(
        f"{{trainer.epochs: {e}, trainer.align_every: {a}}}" for e, a in points) + "]"


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_pruned_timed_out_and_complete_trials_are_told_apart(tmp_path):
    timeout = 20  # the endless trial goes first and pays the imports; the others need a second or two
    proc = run_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.study_name=p", "hydra.sweeper.n_trials=3",
                   PRUNE_ALL, f"hydra.sweeper.trial_timeout={timeout}",
                   f"trainer.epochs=choice({SHORT}, {LONG}, {ENDLESS})", f"trainer.align_every=choice(20, {NO_REPORTS})",
                   enqueue((ENDLESS, NO_REPORTS), (SHORT, 20), (LONG, 20)), *FAST)
    assert proc.returncode == 1, proc.stderr  # the timed-out trial is a failed job; the study went on
    out = proc.stdout
    assert "3 enqueued first" in out
    assert re.search(rf"trial 1/3  FAIL \(timeout after {timeout} s\)  elapsed \d+:\d\d  eta \d+:\d\d", out)
    assert re.search(rf"trial 2/3  {OBJECTIVE} [-\d.]+  best [-\d.]+ \(trial 1\)  elapsed \d+:\d\d  eta", out)
    assert re.search(rf"trial 3/3  PRUNED at step 100 \({OBJECTIVE} [-\d.]+\)  best [-\d.]+ \(trial 1\)", out)
    assert "3 trial(s), 1 complete, 1 pruned, 1 failed" in out
    assert "Launching 1 jobs" not in out and "++tracking" not in out  # Hydra's launch lines went to the log
    (log,) = tmp_path.glob("outputs/multirun/*/*/sweeper.log")
    assert "Launching 1 jobs locally" in log.read_text()

    study = load_study(tmp_path, "p")
    timed_out, complete, pruned = study.get_trials()
    assert [t.state for t in (timed_out, complete, pruned)] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.PRUNED]
    assert timed_out.user_attrs["lvsweep.failure"] == f"timeout after {timeout} s"
    assert sorted(pruned.intermediate_values) == [0, 20, 40, 60, 80, 100]  # reported at the history cadence
    assert sorted(complete.intermediate_values) == [0, 20, 40]
    assert pruned.user_attrs["lvsweep.pruned"].startswith("pruned at step 100")

    parents, children = parents_and_children(tmp_path)
    runs = {int(r.data.tags["optuna_trial"]): r for r in children}
    client = client_for(tmp_path)
    assert runs[0].info.status == "KILLED" and runs[0].data.tags["lvsweep.error"] == f"timeout after {timeout} s"
    assert "dynamics/max_lyapunov" in runs[0].data.metrics  # what it logged before the limit is kept
    assert runs[2].info.status == "KILLED" and runs[2].data.tags["lvsweep.pruned_at_step"] == "100"
    history = client.get_metric_history(runs[2].info.run_id, OBJECTIVE)
    assert max(m.step for m in history) == 100
    assert runs[1].info.status == "FINISHED"
    assert not any(k.startswith("tracking.trial") for k in runs[1].data.params)  # the link is not a param
    config = client.download_artifacts(runs[1].info.run_id, "config.yaml", str(tmp_path))
    assert "optuna.pruners" not in open(config).read()  # nor part of the recorded config
    (parent,) = parents
    learnt = runs[1].data.metrics["align/training_gain"] >= 0  # the best (only complete) trial
    assert ("lvsweep.verdict" in parent.data.tags) == (not learnt)
    assert parent.data.tags["optuna_n_pruned"] == "1" and parent.data.tags["optuna_n_failed"] == "1"
    assert parent.data.metrics["sweep/pruned"] == 1 and parent.data.metrics["sweep/failed"] == 1
    # The overview: the complete trial drawn, the timed-out and pruned ones as panels without data.
    assert "sweep_overview.png" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    panels = panels_of(client, [runs[0], runs[1], runs[2]], tmp_path / "panels")
    assert [(p.status, p.drawn) for p in panels] == [("KILLED", False), ("FINISHED", True), ("PRUNED", False)]
    table = out[out.index("sweep parent run"):]
    assert re.search(r"trial_2 .* PRUNED ", table) and re.search(r"trial_0 .*KILLED", table)
    assert "browse with: mlflow ui" in table  # a study ends with its link, as a single run does
    assert proc.stderr.strip().splitlines()[-1].startswith("lvsweep: 1 job(s) failed: trial_0 ")
    report = write_report(client, parent, tmp_path / "report")[0].read_text()
    assert re.search(r"Not in the table: 1 pruned by the study's pruner \(trial_2 [^)]*\); 1 not FINISHED \(trial_0 ", report)


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_a_slot_is_refilled_while_a_long_trial_runs_and_sigterm_closes_every_run(tmp_path):
    """Two asynchronous slots on joblib: the endless trial 0 holds one, trial 1 passes through the
    other (pruned at step 100 inside its worker), so trial 2 is asked while trial 0 still runs (a
    batch would wait for it). Then SIGTERM to the sweeper alone: every running trial is FAIL and
    every run is closed."""
    proc = start_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.study_name=a", "hydra.sweeper.n_trials=3",
                     "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", PRUNE_ALL,
                     f"trainer.epochs=choice({SHORT}, {LONG}, {ENDLESS})", f"trainer.align_every=choice(20, {NO_REPORTS})",
                     enqueue((ENDLESS, NO_REPORTS), (LONG, 20), (SHORT, 20)), *FAST)
    def third_trial_asked() -> list:  # the three are queued (WAITING) from the start
        trials = live_trials(tmp_path, "a")
        return trials if len(trials) == 3 and trials[2].state != TrialState.WAITING else []

    trials = wait_until(third_trial_asked, proc, "trial 2 asked")
    assert trials[0].state == TrialState.RUNNING and trials[1].state == TrialState.PRUNED  # pruned in a joblib worker
    wait_until(lambda: all_runs(tmp_path, "tags.optuna_trial = '0' and attributes.status = 'RUNNING'"), proc,
               "trial 0's run")
    proc.send_signal(signal.SIGTERM)
    _, err = finish_cli(proc)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "lvsweep: terminated"
    trials = load_study(tmp_path, "a").get_trials()
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["lvsweep.failure"].startswith("terminated")
    assert trials[1].state == TrialState.PRUNED and max(trials[1].intermediate_values) == 100
    assert not all_runs(tmp_path, "attributes.status = 'RUNNING'")  # nothing left open, parent included
    (run0,) = all_runs(tmp_path, "tags.optuna_trial = '0'")
    assert run0.info.status == "KILLED"


@pytest.mark.parametrize("sweeper, field, message", [
    ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}, "direction": ["maximize", "minimize"],
      "objectives": [OBJECTIVE, "val/loss"]},
     "hydra.sweeper.pruner", "cannot prune a study with 2 objectives"),
    ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}, "storage": None}, "hydra.sweeper.pruner", "needs hydra.sweeper.storage"),
    ({"pruner": {"_target_": "optuna.pruners.NoSuchPruner"}}, "hydra.sweeper.pruner", "cannot build"),
    ({"pruner": {"_target_": "optuna.samplers.TPESampler"}}, "hydra.sweeper.pruner", "is not an optuna pruner"),
    ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}, "monitor": "align/excess"}, "hydra.sweeper.monitor",
     "not logged during training"),
    ({"pruner": {"_target_": "optuna.pruners.MedianPruner"}, "monitor": "val/loss"}, "hydra.sweeper.monitor",
     "better when it is lower, but the study's direction is maximize"),
    ({"monitor": "val/loss"}, "hydra.sweeper.monitor", "set hydra.sweeper.pruner too"),
    ({"enqueue": [{"seed": 1}]}, "hydra.sweeper.enqueue[0].seed", "is not searched"),
    ({"enqueue": [{"noise.level": 9.0}]}, "hydra.sweeper.enqueue[0].noise.level", "outside the search space"),
    ({"n_jobs": 2}, "hydra.sweeper.n_jobs", "need a launcher that runs jobs in parallel"),
    ({"trial_timeout": 0}, "hydra.sweeper.trial_timeout", "must be seconds > 0"),
    ({"slots": "eager"}, "hydra.sweeper.slots", "must be one of async, batch"),
])
def test_pruning_warm_start_and_slot_settings_are_checked_before_anything_is_recorded(sweeper, field, message):
    base = {"params": {"noise.level": "interval(0, 4)"}, "storage": "sqlite:///x.db"}
    objectives = sweeper.pop("objectives", [OBJECTIVE])
    config = sweep_config([], objectives, **{**base, **sweeper})
    config.hydra.launcher = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    with pytest.raises(LvsweepError, match=re.escape(message)) as err:
        check_settings(config)
    assert err.value.field == field


def test_warm_start_points_are_queued_once_per_study(tmp_path):
    sweeper = StudySweeper(direction="maximize", storage=None, study_name=None, n_trials=2, n_jobs=1, sampler={},
                           params={}, enqueue=[{"noise.level": 1.0}, {"noise.level": 2.0}])
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    assert sweeper._enqueue(study) == 2
    assert sweeper._enqueue(study) == 0  # rerunning the command does not queue them again
    trial = study.ask()
    assert trial.suggest_float("noise.level", 0, 4) == 1.0


@pytest.mark.slow
def test_two_submitit_workers_prune_their_trials_of_one_study(tmp_path):
    """submitit's local executor, two slots: each trial a process of its own reporting to the study."""
    proc = run_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.study_name=sub", "hydra.sweeper.n_trials=4",
                   "hydra.sweeper.n_jobs=2", "hydra/launcher=submitit_local", PRUNE_ALL,
                   f"trainer.epochs=choice({SHORT}, {LONG})", "trainer.align_every=20",
                   "hydra.sweeper.enqueue=[" + ", ".join(f"{{trainer.epochs: {e}, noise.level: {level}}}" for e, level in
                                                         ((LONG, 1.0), (SHORT, 1.0), (LONG, 2.0), (SHORT, 2.0))) + "]",
                   *FAST)
    assert proc.returncode == 0, proc.stderr
    trials = load_study(tmp_path, "sub").get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE] * 2
    _, children = parents_and_children(tmp_path)
    pids = {r.data.tags["lvsweep.pid"] for r in children}
    assert len(pids) == 4  # every trial ran in a process of its own
    for run in children:
        pruned = trials[int(run.data.tags["optuna_trial"])].state == TrialState.PRUNED
        assert run.info.status == ("KILLED" if pruned else "FINISHED")
        assert (run.data.tags.get("lvsweep.pruned_at_step") == "100") == pruned


def test_a_study_says_when_its_best_trial_anticorrelates_less_than_untrained():
    worse = {"align/anticorrelation": 0.40, "align/training_gain": -0.35}
    sentence = untrained_verdict(OBJECTIVE, 3, worse)
    assert "best trial (3) anticorrelates less after training than its own untrained model" in sentence
    assert "(0.400 trained, 0.750 untrained)" in sentence and "align/training_gain" in sentence
    assert untrained_verdict(OBJECTIVE, 3, {**worse, "align/training_gain": 0.1}) == ""  # training added to it
    assert untrained_verdict("align/training_gain", 3, worse) == ""  # that objective already measures it
