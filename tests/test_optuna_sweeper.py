"""The Optuna sweeper through the real CLI, a real SQLite study and the real MLflow store.

Each CLI process costs seconds of imports, so the end-to-end checks share invocations: one
study is run, then continued by two workers at once; a second study covers failures and
multi-objective search.
"""
from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from omegaconf import OmegaConf

from hydra_plugins.lvsweep_optuna_sweeper._notes import plain
from hydra_plugins.lvsweep_optuna_sweeper._search_space import format_value, parse_search_space, to_distribution
from hydra_plugins.lvsweep_optuna_sweeper._storage import close_orphan_runs, storage_label
from hydra_plugins.lvsweep_optuna_sweeper._study import StudySweeper
from hydra_plugins.lvsweep_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.lvsweep_optuna_sweeper.lvsweep_optuna_sweeper import check_settings
from lvsweep.errors import LvsweepError
from helpers.cli import Outcomes, error_line, finish_all, run_cli, start_cli, together
from helpers.overrides import QUICK_SWEEP
from helpers.store import client_for, dashboard_notes, load_study, parents_and_children

OBJECTIVE = "align/anticorrelation"


# ---------------------------------------------------------------- search-space parser (in process)

def parse_one(spec: str):
    return to_distribution("x", OverridesParser.create().parse_override(f"x={spec}").value())


@pytest.mark.parametrize("spec, expected", [
    ("interval(0, 4)", FloatDistribution(0.0, 4.0)),
    ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
    ("tag(int, interval(1, 8))", IntDistribution(1, 8)),
    ("range(1, 10, 2)", IntDistribution(1, 9, step=2)),  # Hydra's range is half-open
    ("range(0, 1, 0.25)", FloatDistribution(0.0, 0.75, step=0.25)),
    ("tag(log, range(1, 65))", IntDistribution(1, 64, log=True)),
    ("choice(linear, multihead)", CategoricalDistribution(["linear", "multihead"])),
    ("1,2,4", CategoricalDistribution([1, 2, 4])),
])
def test_sweep_syntax_maps_to_the_right_distribution(spec, expected):
    assert parse_one(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("interval(4, 0)", "start < end"),
    ("tag(log, interval(0, 1))", "hydra.sweeper.params.x"),
    ("tag(lgo, interval(1, 2))", "unknown tag.* lgo"),
    ("tag(int, interval(0.5, 2))", "whole-number"),
    ("range(5, 1)", "start < stop"),
    ("glob(*)", "cannot be searched"),
])
def test_a_bad_spec_fails_with_a_message_naming_the_param(spec, message):
    with pytest.raises(LvsweepError, match=message) as err:
        parse_one(spec)
    assert err.value.field == "hydra.sweeper.params.x"


def test_command_line_sweeps_join_and_replace_config_params():
    space = parse_search_space({"noise.level": "interval(0, 4)", "model.lr": "0.01"},
                               ["noise.level=interval(1, 2)", "model.lr=choice(0.1, 0.2)", "seed=3"])
    assert space.distributions == {"noise.level": FloatDistribution(1.0, 2.0),
                                   "model.lr": CategoricalDistribution([0.1, 0.2])}
    assert list(space.fixed.values()) == ["seed=3"]
    with pytest.raises(LvsweepError, match="hydra.sweeper.params.noise.level"):
        parse_search_space({"noise.level": "interval(0,"}, [])


def sweep_config(task: list[str], objectives: list[str], **sweeper) -> OmegaConf:
    settings = OmegaConf.merge(OmegaConf.structured(OptunaSweeperConf), sweeper)
    return OmegaConf.create({"objectives": objectives,
                             "hydra": {"sweeper": settings, "overrides": {"task": task}}})


@pytest.mark.parametrize("task, objectives, sweeper, field", [
    ([], ["a"], {"n_jobs": 0}, "hydra.sweeper.n_jobs"),
    ([], ["a"], {"heartbeat_interval": 0}, "hydra.sweeper.heartbeat_interval"),
    ([], ["a", "b"], {}, "hydra.sweeper.direction"),
    (["model.lr=tag(log, interval(0, 1))"], ["a"], {}, "hydra.sweeper.params.model.lr"),
    ([], ["a"], {"params": {"noise.level": "interval(4, 0)"}}, "hydra.sweeper.params.noise.level"),
])
def test_settings_are_checked_without_a_storage(task, objectives, sweeper, field):
    check_settings(sweep_config(["seed=1", "model.lr=interval(0.001, 0.1)"], ["a"],
                                storage="postgresql://nowhere/x"))  # valid: no error
    with pytest.raises(LvsweepError) as err:
        check_settings(sweep_config(task, objectives, **sweeper))
    assert err.value.field == field


def test_orphan_runs_are_matched_to_their_study_by_name_and_storage(tmp_path, monkeypatch):
    """Two studies called `s` in two databases log to one MLflow store; trial 0 of ours failed
    while its worker was away. Only our run is closed; the other study's live run is untouched."""
    monkeypatch.chdir(tmp_path)
    ours = "sqlite:///ours/optuna.db"
    (tmp_path / "ours").mkdir()
    study = optuna.create_study(study_name="s", storage=ours)
    study.tell(study.ask(), state=TrialState.FAIL)
    client = client_for(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("lvsweep")
    runs = {label: client.create_run(exp, tags={"optuna_study": "s", "optuna_trial": "0",
                                                "optuna_storage": label}).info.run_id
            for label in (storage_label(ours), storage_label("sqlite:///theirs/optuna.db"))}
    assert storage_label(ours) == f"sqlite:///{tmp_path}/ours/optuna.db"
    assert close_orphan_runs(client, exp, study, storage_label(ours)) == [0]
    status = {label: client.get_run(run_id).info.status for label, run_id in runs.items()}
    assert status == {storage_label(ours): "FAILED", storage_label("sqlite:///theirs/optuna.db"): "RUNNING"}
    assert storage_label("postgresql://lv:secret@db:5432/optuna") == "postgresql://lv:***@db:5432/optuna"


@pytest.mark.parametrize("value", [0.0001, 3, -1, True, None, "linear", "1", "a b", "it's", "null"])
def test_sampled_values_survive_the_trip_through_an_override(value):
    parsed = OverridesParser.create().parse_override(f"k={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


# ---------------------------------------------------------------- end to end

SEARCH = ["-m", "search=optuna", "hydra.sweeper.study_name=s", *QUICK_SWEEP]
# A brute-force sampler over a choice tries each value once; one value passes every check made
# before the study starts and fails only in its job, when the ODE blows up.
MULTI_OBJECTIVE = ["-m", "hydra/sweeper=lvsweep_optuna", "hydra.sweeper.study_name=mo", "hydra.sweeper.n_trials=5",
                   "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
                   "hydra.sweeper.direction=[maximize,minimize]", f"objectives=[{OBJECTIVE},val/loss]",
                   "system.params.alpha=choice(1e308,0.9,1.1)", *QUICK_SWEEP]


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> Outcomes:
    """The first invocation of study `s` and the multi-objective study, each in an empty directory
    of its own, run together rather than one test after another: name -> (directory, result)."""
    dirs = {"s": tmp_path_factory.mktemp("study"), "mo": tmp_path_factory.mktemp("mo")}
    return together({"s": lambda: (dirs["s"], run_cli(dirs["s"], *SEARCH, "hydra.sweeper.n_trials=3")),
                     "mo": lambda: (dirs["mo"], run_cli(dirs["mo"], *MULTI_OBJECTIVE))})


def test_study_is_tracked_then_continued_by_two_parallel_workers(studies):
    tmp_path, first = studies["s"]
    search = SEARCH
    assert first.returncode == 0, first.stderr

    study = load_study(tmp_path, "s")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert 0 <= t.params["noise.level"] <= 4 and 1e-4 <= t.params["model.lr"] <= 1e-1
    parents, children = parents_and_children(tmp_path)
    assert len(parents) == 1 and len(children) == 3
    (parent,) = parents
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    by_trial = {int(r.data.tags["optuna_trial"]): r for r in children}
    assert study.metric_names == [OBJECTIVE]  # optuna-dashboard names the objective after the metric
    for t in trials:
        run = by_trial[t.number]
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id  # the trial links to its run
        assert t.user_attrs["mlflow_url"] == (f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/"
                                              f"{run.info.run_id}?workflowType=machine_learning")
        # Named by its values, each in a few characters: 3 significant digits, a short exponent below 1e-3.
        head, level, lr = run.info.run_name.split(" ")
        assert head == f"trial_{t.number}" and run.data.tags["optuna_study"] == "s"
        assert level.startswith("noise.level=") and lr.startswith("model.lr=")
        for text, value in ((level.partition("=")[2], t.params["noise.level"]), (lr.partition("=")[2], t.params["model.lr"])):
            assert float(text) == pytest.approx(value, rel=5e-3) and len(text) <= 7, text
            assert not text.startswith("0.000") and "e-0" not in text, text
        assert run.data.tags["optuna_storage"] == f"sqlite:///{tmp_path}/mlruns/optuna.db"
        assert t.value == pytest.approx(run.data.metrics[OBJECTIVE], rel=1e-12)
        assert float(run.data.params["noise.level"]) == pytest.approx(t.params["noise.level"])
    best = study.best_trial
    assert parent.data.tags["optuna_study"] == "s"
    assert parent.data.tags["optuna_storage"] == f"sqlite:///{tmp_path}/mlruns/optuna.db"
    assert parent.data.metrics[f"best/{OBJECTIVE}"] == pytest.approx(best.value)
    assert [k for k in parent.data.metrics if "best" in k] == [f"best/{OBJECTIVE}"]  # the best, once
    # The closing lines end with the parent run's page in the UI, not only its id.
    assert (f"then open http://127.0.0.1:5000/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
            "?workflowType=machine_learning") in first.stdout
    assert float(parent.data.params["best.model.lr"]) == pytest.approx(best.params["model.lr"])
    figures = {Path(a.path).name for a in client_for(tmp_path).list_artifacts(parent.info.run_id, "figures")}
    assert {"optimization_history.png", "param_importances.png", "contour.png"} <= figures
    # optuna-dashboard's notes: each trial's links its run and says its point and value; the
    # study's links the parent run and names the best trial.
    study_note, trial_notes = dashboard_notes(study)
    for t in trials:
        run_id = t.user_attrs["mlflow_run_id"]
        assert trial_notes[t.number].startswith(f"MLflow: [run {run_id[:8]}]({t.user_attrs['mlflow_url']})\n")
        assert f"**outcome:** {OBJECTIVE} {t.value:.4g}" in trial_notes[t.number]
        assert f"\n\n{by_trial[t.number].info.run_name.partition(' ')[2].replace(' ', ', ')}\n\n" in trial_notes[t.number]
    assert study_note.startswith(f"[MLflow parent run of the sweep](http://127.0.0.1:5000/#/experiments/"
                                 f"{parent.info.experiment_id}/runs/{parent.info.run_id}?workflowType=machine_learning)")
    assert f"- best {OBJECTIVE} = {best.value:.4g} (trial {best.number}): " in study_note

    # Two more invocations of the same study, started together: both resume it and share it.
    finish_all([start_cli(tmp_path, *search, "hydra.sweeper.n_trials=2") for _ in range(2)])
    trials = load_study(tmp_path, "s").get_trials()
    assert sorted(t.number for t in trials) == list(range(7))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    # Each trial has its own seed, so resumed and parallel trials do not replay earlier draws.
    assert len({(t.params["noise.level"], t.params["model.lr"]) for t in trials}) == 7
    parents, children = parents_and_children(tmp_path)
    assert len(parents) == 3
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == list(range(7))
    for t in trials:
        run = next(r for r in children if r.data.tags["optuna_trial"] == str(t.number))
        assert t.value == pytest.approx(run.data.metrics[OBJECTIVE], rel=1e-12)
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id  # parallel workers link their own trials
    # Each worker wrote the notes of the trials it told, and the study's note as it ended.
    study_note, trial_notes = dashboard_notes(load_study(tmp_path, "s"))
    for t in trials:
        assert f"]({t.user_attrs['mlflow_url']})" in trial_notes[t.number]
    ended_last = [p for p in parents if f"/runs/{p.info.run_id}?" in study_note.partition("\n")[0]]
    assert len(ended_last) == 1 and ended_last[0].info.run_id != parent.info.run_id, study_note


def test_failed_trial_is_recorded_and_multi_objective_study_keeps_pairs(studies):
    tmp_path, proc = studies["mo"]
    assert proc.returncode == 1, proc.stderr  # the CLI reports the failed job...
    assert "the sampler has covered the whole search space" in proc.stdout  # ...and the study went on

    study = load_study(tmp_path, "mo")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = study.get_trials()
    assert len(trials) == 3
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert [t.params["system.params.alpha"] for t in failed] == [1e308]
    assert sorted(t.params["system.params.alpha"] for t in complete) == [0.9, 1.1]
    _, children = parents_and_children(tmp_path)
    status = {int(r.data.tags["optuna_trial"]): r for r in children}
    assert status[failed[0].number].info.status == "FAILED"
    assert "ODE blew up" in status[failed[0].number].data.tags["lvsweep.error"]
    for t in complete:
        run = status[t.number]
        assert run.info.status == "FINISHED" and len(t.values) == 2 and all(map(math.isfinite, t.values))
        assert t.values == pytest.approx([run.data.metrics[OBJECTIVE], run.data.metrics["val/loss"]], rel=1e-6)
    # The failed trial's note says why, as its user attribute does; the study's lists the front.
    study_note, trial_notes = dashboard_notes(study)
    assert f"**outcome:** FAIL ({plain(failed[0].user_attrs['lvsweep.failure'])})" in trial_notes[failed[0].number]
    assert f"]({failed[0].user_attrs['mlflow_url']})" in trial_notes[failed[0].number]
    assert "- Pareto front (" in study_note and all(f"- trial {t.number}: " in study_note for t in study.best_trials)


@pytest.mark.parametrize("kwargs, field, message", [
    ({"n_trials": None}, "hydra.sweeper.n_trials", "null needs hydra.sweeper.target_complete"),
    ({"target_complete": 0}, "hydra.sweeper.target_complete", "must be >= 1 or null"),
    ({"heartbeat_interval": 0}, "hydra.sweeper.heartbeat_interval", "whole number of seconds >= 1"),
    ({"grace_period": -5}, "hydra.sweeper.grace_period", "whole number of seconds >= 1"),
    ({"heartbeat_interval": 10, "grace_period": 19}, "hydra.sweeper.grace_period", r"at least 2 x .* \(20 s\)"),
    ({"max_retry": -1}, "hydra.sweeper.max_retry", "must be >= 0 or null"),
])
def test_bad_stopping_and_fault_settings_name_their_field(kwargs, field, message):
    settings = {"direction": "maximize", "storage": None, "study_name": None, "n_trials": 5, "n_jobs": 1,
                "sampler": {}, "params": {}, **kwargs}
    with pytest.raises(LvsweepError, match=message) as err:
        StudySweeper(**settings)
    assert err.value.field == field


def test_a_bad_sweeper_setting_is_one_line_on_the_command_line(tmp_path):
    proc = run_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.heartbeat_interval=0", *QUICK_SWEEP)
    assert error_line(proc) == \
        "lvsweep: error: hydra.sweeper.heartbeat_interval: must be a whole number of seconds >= 1 or null, got 0"
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # rejected before the sweep's parent run


def test_importances_are_seeded_and_say_when_there_are_few_trials():
    """The same trials give the same importances every time, and a study under 20 complete trials
    says in the figure's title that they are only a hint."""
    from optuna.visualization import matplotlib as plots

    from hydra_plugins.lvsweep_optuna_sweeper._tracking import importances

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: t.suggest_float("a", 0, 1) ** 2 + 0.1 * t.suggest_float("b", 0, 1), n_trials=6)
    bars = [[p.get_width() for p in importances(study, plots, {"target_name": OBJECTIVE}).patches] for _ in range(2)]
    assert bars[0] == bars[1] and len(bars[0]) == 2
    title = importances(study, plots, {"target_name": OBJECTIVE}).get_title(loc="left")
    assert "seed 0" in title and "6 trials" in title and "only 6 complete trials (< 20)" in title
    study.optimize(lambda t: t.suggest_float("a", 0, 1) ** 2 + 0.1 * t.suggest_float("b", 0, 1), n_trials=14)
    assert "only" not in importances(study, plots, {"target_name": OBJECTIVE}).get_title(loc="left")
