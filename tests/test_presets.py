"""Every preset in conf/experiment/ and conf/search/: it composes, validates, keeps what its kind
promises, and (slow) runs through the real CLI.

The presets are found by listing the two folders, so a new preset is tested without editing this
file. In the default suite each is composed in process (a fraction of a second); through the CLI,
shrunk to one job of QUICK size, each costs a CLI start, which is why that part is `slow`; those
runs are made together, each in a directory of its own.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution

from hydra_plugins.lvsweep_optuna_sweeper._search_space import format_value, parse_search_space
from hydra_plugins.lvsweep_optuna_sweeper.lvsweep_optuna_sweeper import check_settings
from lvsweep.app import compose_config
from lvsweep.config import CONF_MODULE, conf_dir, validate
from lvsweep.tracking.runs import flatten
from helpers.cli import Outcomes, run_cli, together
from helpers.overrides import QUICK
from helpers.store import parents_and_children, with_store

EXPERIMENTS = sorted(path.stem for path in (conf_dir() / "experiment").glob("*.yaml"))
SEARCHES = sorted(path.stem for path in (conf_dir() / "search").glob("*.yaml"))
PRESETS = [*(f"experiment={name}" for name in EXPERIMENTS), *(f"search={name}" for name in SEARCHES)]


def with_hydra(*overrides: str) -> DictConfig:
    """The config with its `hydra` node, as the CLI composes it: where a preset says how it sweeps."""
    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


def swept_values(key: str, value: str) -> list[str]:
    """The values a basic-sweeper entry `key: value` gives its jobs, as overrides."""
    override = OverridesParser.create().parse_override(f"{key}={value}")
    if not override.is_sweep_override():
        return [f"{key}={value}"]
    assert override.is_discrete_sweep(), f"{key}: {value} is not a list of values"
    return [f"{key}={v}" for v in override.sweep_string_iterator()]


def composed(preset: str) -> DictConfig:
    """The preset's config with its `hydra` node, once the config every job starts from validates."""
    validate(compose_config(preset))
    return with_hydra(preset)


def sweep_params(cfg: DictConfig) -> dict[str, str]:
    params = cfg.hydra.sweeper.get("params")
    return {str(k): str(v) for k, v in (params or {}).items()}


def test_the_preset_folders_are_found_and_hold_both_kinds():
    assert EXPERIMENTS and SEARCHES
    assert "optuna" in SEARCHES and "model_ablation" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_preset_validates_and_a_sweeping_one_is_a_multirun_naming_its_params(name):
    preset = f"experiment={name}"
    cfg = composed(preset)
    params = sweep_params(cfg)
    sweeps = cfg.hydra.mode == RunMode.MULTIRUN
    # `python -m lvsweep experiment=<name>` sweeps without -m exactly when the preset names what it sweeps.
    assert sweeps == bool(params), f"hydra.mode={cfg.hydra.mode}, hydra.sweeper.params={params}"
    if sweeps:
        assert cfg.hydra.runtime.choices["hydra/sweeper"] == "basic"
    for key, value in params.items():
        jobs = swept_values(key, value)
        assert len(jobs) >= 2, f"{key}: a sweep of one value"
        for job in jobs:  # every job of the sweep composes to a valid config
            validate(compose_config(preset, job))


@pytest.mark.parametrize("name", SEARCHES)
def test_a_search_preset_selects_the_optuna_sweeper_with_a_valid_search_space(name):
    preset = f"search={name}"
    cfg = composed(preset)
    assert cfg.hydra.runtime.choices["hydra/sweeper"] == "lvsweep_optuna"
    params = sweep_params(cfg)
    assert params, "no search space in hydra.sweeper.params"
    check_settings(cfg)  # the sweeper's own checks: settings, directions against objectives, the space
    space = parse_search_space(params, [])
    assert set(space.distributions) == set(params)  # every entry is searched, none fixed
    for key, dist in space.distributions.items():  # the ends of every range compose to a valid config
        values = dist.choices if isinstance(dist, CategoricalDistribution) else (dist.low, dist.high)
        for value in values:
            validate(compose_config(preset, f"{key}={format_value(value)}"))


class Job(NamedTuple):
    args: list[str]  # the command line
    overrides: list[str]  # what the job's config is composed from
    multirun: bool
    sampled: set[str]  # keys a search sets trial by trial


def one_job(preset: str) -> Job:
    """The preset shrunk to one QUICK job of one replicate: a basic sweep keeps the first value of
    each param (the command line comes after the preset's params, and the last value of a key
    wins), a search runs one trial."""
    cfg = with_hydra(preset)
    overrides = [preset, *QUICK, "replicates=1"]
    if cfg.hydra.runtime.choices["hydra/sweeper"] == "lvsweep_optuna":
        return Job(["-m", *overrides, "hydra.sweeper.n_trials=1"], overrides, True, set(sweep_params(cfg)))
    overrides += [swept_values(key, value)[0] for key, value in sweep_params(cfg).items()]
    return Job(overrides, overrides, cfg.hydra.mode == RunMode.MULTIRUN, set())


@pytest.fixture(scope="module")
def preset_runs(tmp_path_factory, made_store) -> Outcomes:
    """Every preset's one job through the CLI, each in a directory holding a store made as the CLI
    makes one, two or three at once rather than one test after another: preset -> (job, dir, result).
    The jobs are composed first, one after another: composing sets Hydra's global state."""
    jobs = {preset: one_job(preset) for preset in PRESETS}

    def one(preset: str) -> tuple[Job, Path, subprocess.CompletedProcess]:
        job = jobs[preset]
        cwd = with_store(made_store, tmp_path_factory.mktemp("preset"))
        return job, cwd, run_cli(cwd, *job.args)

    return together({preset: (lambda preset=preset: one(preset)) for preset in PRESETS})


@pytest.mark.slow
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_one_quick_job_through_the_cli(preset, preset_runs):
    job, tmp_path, proc = preset_runs[preset]
    assert proc.returncode == 0, proc.stderr
    parents, children = parents_and_children(tmp_path)
    if job.multirun:
        (parent,), (run,) = parents, children
        assert parent.info.status == "FINISHED" and parent.data.tags["lvsweep.kind"] == "sweep"
    else:
        (run,), () = parents, children
    assert run.info.status == "FINISHED"
    # The job ran the config the preset composes to (bar what a search samples, and the run's tags).
    expected = compose_config(*job.overrides)
    for key, value in flatten(OmegaConf.to_container(expected)).items():
        if key not in job.sampled and not key.startswith("tracking."):
            assert run.data.params[key] == str(value), key
    assert all(name in run.data.metrics for name in expected.objectives)
