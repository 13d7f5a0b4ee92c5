"""Editing the search space on the command line: removing, replacing and adding params of
`hydra.sweeper.params` does what a user means, and whatever Hydra refuses is one line naming
the field, never a schema class.

Most checks compose the config in process exactly as the CLI does (its argument rewrite, then
Hydra) and parse the search space the sweeper would search; three CLI runs check what only the
real command shows: an early refusal, a trial that really ran the edited space, and Hydra's own
refusal of a sweep over one of its settings.
"""
from __future__ import annotations

from typing import Any

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper._edits import search_space_edits
from hydra_plugins.lvsweep_optuna_sweeper._search_space import (NOTHING_TO_SEARCH, flatten_params,
                                                                 parse_search_space)
from lvsweep.cli import SEARCH_SPACE_EDITS, one_line
from lvsweep.config import CONF_MODULE
from lvsweep.errors import LvsweepError
from helpers.cli import error_line, run_cli
from helpers.overrides import QUICK_SWEEP
from helpers.store import load_study, parents_and_children

PRESET = {"noise.level": FloatDistribution(0.0, 4.0), "model.lr": FloatDistribution(1e-4, 1e-1, log=True)}
EPOCHS = {"trainer.epochs": CategoricalDistribution([1, 2])}
INTERNAL_NAMES = ("Conf", "DictConfig", "did you mean", "Traceback")


def hydra_config(*overrides: str, rewrite: bool = True) -> DictConfig:
    """The config with its `hydra` node, composed from these overrides as the CLI composes them
    (`rewrite=False`: handed to Hydra as typed, what the CLI did before it rewrote the edits)."""
    args = search_space_edits(list(overrides)) if rewrite else list(overrides)
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        return compose(config_name="config", overrides=args, return_hydra_config=True)


def searched(edits: list[str], task: list[str]) -> dict[str, Any]:
    """What the Optuna sweeper searches after `search=optuna` and these edits, with these task
    overrides (sweeps too) on the command line."""
    cfg = hydra_config("search=optuna", *edits)
    params = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)["params"]
    return parse_search_space(params, task).distributions


def composition_error(*overrides: str, rewrite: bool = True) -> str:
    """The CLI's one line for the error Hydra raises while composing these overrides."""
    with pytest.raises(Exception) as err:
        hydra_config(*overrides, rewrite=rewrite)
    line = one_line(err.value)
    assert not any(name in line for name in INTERNAL_NAMES), line
    return line


@pytest.mark.parametrize("edits, task, expected", [
    ([], [], PRESET),
    # the preset's params removed: the command line's sweeps are the search space
    (["~hydra.sweeper.params"], ["model.lr=interval(0.001, 0.1)"], {"model.lr": FloatDistribution(0.001, 0.1)}),
    (["hydra.sweeper.params=null"], ["seed=choice(1, 2)"], {"seed": CategoricalDistribution([1, 2])}),
    # the whole mapping replaced, a dotted key inside it kept as one param
    (['hydra.sweeper.params={trainer.epochs: "choice(1,2)"}'], [], EPOCHS),
    (["hydra.sweeper.params={trainer.epochs: choice(1,2)}"], [], EPOCHS),
    (["hydra.sweeper.params={}"], ["seed=choice(1, 2)"], {"seed": CategoricalDistribution([1, 2])}),
    (["hydra.sweeper.params={a: {b: interval(0, 1)}}"], [], {"a.b": FloatDistribution(0.0, 1.0)}),
    # `+` before the whole mapping adds to the preset's params
    (["+hydra.sweeper.params={trainer.epochs: choice(1,2)}"], [], {**PRESET, **EPOCHS}),
    # one param added, with `+`, `++` or neither; an existing one replaced, its text kept as typed
    (["+hydra.sweeper.params.trainer.epochs=choice(1,2)"], [], {**PRESET, **EPOCHS}),
    (["hydra.sweeper.params.trainer.epochs=choice(1,2)"], [], {**PRESET, **EPOCHS}),
    (["++hydra.sweeper.params.trainer.epochs=1,2"], [], {**PRESET, **EPOCHS}),
    (["hydra.sweeper.params.model.lr=tag(log, interval(1e-3, 1e-2))"], [],
     {**PRESET, "model.lr": FloatDistribution(1e-3, 1e-2, log=True)}),
    # one param removed, then a later edit of the same command adds another
    (["~hydra.sweeper.params.model.lr"], [], {"noise.level": PRESET["noise.level"]}),
    (["hydra.sweeper.params.model.lr=null", "hydra.sweeper.params.trainer.epochs='choice(1,2)'"], [],
     {"noise.level": PRESET["noise.level"], **EPOCHS}),
    # a task sweep still joins the config's params and replaces one of the same name
    (["~hydra.sweeper.params.model.lr"], ["noise.level=interval(1, 2)", "trainer.epochs=choice(1,2)"],
     {"noise.level": FloatDistribution(1.0, 2.0), **EPOCHS}),
])
def test_each_edit_of_the_search_space_searches_what_it_says(edits, task, expected):
    assert searched(edits, task) == expected


def test_nested_and_dotted_keys_name_one_param_and_null_takes_params_out():
    params = {"model.lr": "interval(0, 1)", "model": {"lr": "interval(1, 2)", "name": "choice(linear, multihead)"},
              "noise.level": "interval(0, 4)", "noise": None, "trainer.epochs": "choice(1,2)", "trainer": {}}
    assert flatten_params(params) == {"model.lr": "interval(1, 2)", "model.name": "choice(linear, multihead)",
                                      "trainer.epochs": "choice(1,2)"}
    assert parse_search_space(OmegaConf.create(params), []).distributions == {
        "model.lr": FloatDistribution(1.0, 2.0), "model.name": CategoricalDistribution(["linear", "multihead"]),
        **EPOCHS}


@pytest.mark.parametrize("params, task", [({}, ["seed=1"]), ({"model.lr": None}, []), ({"model.lr": "0.01"}, [])])
def test_a_search_space_with_nothing_to_search_is_refused_saying_how_to_give_params(params, task):
    with pytest.raises(LvsweepError) as err:
        parse_search_space(params, task)
    assert err.value.field == "hydra.sweeper.params" and err.value.problem == NOTHING_TO_SEARCH
    assert "model.lr=interval(" in NOTHING_TO_SEARCH and "hydra.sweeper.params={" in NOTHING_TO_SEARCH


def test_arguments_that_do_not_edit_the_search_space_pass_unchanged():
    args = ["-m", "search=optuna", "hydra.sweeper.n_trials=1", "model.lr=interval(0.001,0.1)", "noise=1",
            "hydra.sweeper.paramsx=1", "hydra.sweeper.params.x=interval(", "+trainer.epochs=3"]
    assert search_space_edits(args) == args
    parser = OverridesParser.create()
    for line in search_space_edits(["+hydra.sweeper.params.x=choice(a, 'b c', [1,2])", "~hydra.sweeper.params"]):
        assert not parser.parse_override(line).is_sweep_override()  # Hydra refuses a sweep over its settings


def test_edits_work_for_hydras_basic_sweeper_too():
    cfg = hydra_config("experiment=noise_ablation", "hydra.sweeper.params.noise.level=0,1")
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == {"noise.level": "0,1"}
    cfg = hydra_config("experiment=noise_ablation", "hydra.sweeper.params={model.lr: '0.1,0.2'}")
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == {"model.lr": "0.1,0.2"}
    assert composition_error("experiment=noise_ablation", "~hydra.sweeper.params.noise.level") == (
        "hydra.sweeper.params.noise.level: the basic sweeper's params cannot be removed one at a time; "
        "replace all with hydra.sweeper.params={KEY: SPEC, ...}")


@pytest.mark.parametrize("overrides, rewrite, expected", [
    (["~hydra.sweeper.n_trials"], True,
     "hydra.sweeper.n_trials: cannot be removed, only set to another value (null where the setting allows it)"),
    (["hydra.sweeper.params=5"], True, f"hydra.sweeper.params: Cannot assign int to a mapping; {SEARCH_SPACE_EDITS}"),
    # what Hydra alone says to the edits the CLI rewrites
    (["~hydra.sweeper.params"], False, f"hydra.sweeper.params: cannot be removed this way; {SEARCH_SPACE_EDITS}"),
    (["hydra.sweeper.params.seed=3"], False, f"hydra.sweeper.params.seed: cannot be set this way; {SEARCH_SPACE_EDITS}"),
])
def test_hydras_errors_on_the_sweeper_are_one_line_naming_the_field(overrides, rewrite, expected):
    assert composition_error("search=optuna", *overrides, rewrite=rewrite) == expected


# ---------------------------------------------------------------- through the real CLI

def test_removing_every_param_is_refused_before_anything_is_recorded(tmp_path):
    proc = run_cli(tmp_path, "-m", "search=optuna", "~hydra.sweeper.params", *QUICK_SWEEP)
    assert error_line(proc) == f"lvsweep: error: hydra.sweeper.params: {NOTHING_TO_SEARCH}"
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_a_trial_runs_the_replaced_search_space(tmp_path):
    proc = run_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.study_name=edits", "hydra.sweeper.n_trials=1",
                   'hydra.sweeper.params={seed: "choice(1,2)", model.lr: "interval(0.001, 0.01)"}',
                   "+hydra.sweeper.params.noise.level=interval(0.5, 1)", "~hydra.sweeper.params.model.lr",
                   *QUICK_SWEEP)
    assert proc.returncode == 0, proc.stderr
    (trial,) = load_study(tmp_path, "edits").get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.distributions == {"seed": CategoricalDistribution([1, 2]), "noise.level": FloatDistribution(0.5, 1.0)}
    _, (run,) = parents_and_children(tmp_path)
    assert run.data.params["seed"] == str(trial.params["seed"])  # the job ran the sampled values
    assert float(run.data.params["noise.level"]) == pytest.approx(trial.params["noise.level"])
    assert float(run.data.params["model.lr"]) == 0.01  # no longer searched: the config's own value


def test_a_sweep_over_a_sweeper_setting_is_one_line_naming_it(tmp_path):
    proc = run_cli(tmp_path, "-m", "search=optuna", "hydra.sweeper.n_trials=1,2", *QUICK_SWEEP)
    assert error_line(proc) == ("lvsweep: error: hydra.sweeper.n_trials: Hydra's own settings take one value, not a "
                                "sweep (a sweep goes in the search space: hydra.sweeper.params, or as an override "
                                "of the task)")
