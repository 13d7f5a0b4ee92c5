"""Every bad input, through the real CLI: one stderr line naming the field, exit status 2, no
traceback, and nothing lost or added in a store that already holds a run.

The rows are data: append a `Row` to `ROWS` to cover another input (a termination case can use
`expects_run="KILLED"` once the CLI records it so). Rows run in one test, each in its own directory
with a copy of a store that already holds one FINISHED run: the first of each kind (a value
`validate` refuses, an unknown key, an unknown option, a value the schema's type refuses, a sweeper
setting, a report flag) and every row that opens the store as parallel subprocesses, the others of
the kind through the CLI's entry function in this process (`entry_calls`, see `helpers.table`).
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from lvsweep.app import compose_config
from lvsweep.config import validate
from lvsweep.config.keys import MODEL_SCHEMAS
from lvsweep.config.schema import LvsweepConfig, ModelConfig
from lvsweep.errors import LvsweepError
from helpers.overrides import QUICK
from helpers.table import Row, check_rows, entry_calls

OPTUNA = ("-m", "search=optuna", "hydra.sweeper.n_trials=1", *QUICK)


ROWS = [
    # top level
    Row(("seed=-1",), "seed", says="[0, 4294967296)"),
    *entry_calls(
        Row(("seed=4294967296",), "seed"),
        Row(("replicates=0",), "replicates", says="[1, 1024]"),
        Row(("objectives=[nope]",), "objectives", says="unknown metric 'nope'"),
    ),
    # unknown keys, with and without +, never naming a schema class
    Row(("+unknown_key=1",), "unknown_key: unknown key"),
    Row(("unknown_key=1",), "unknown_key: unknown key"),
    *entry_calls(
        Row(("+trainer.epoch=5",), "trainer.epoch: unknown key", says="did you mean trainer.epochs?"),
        Row(("trainer.epoch=5",), "trainer.epoch: unknown key", says="did you mean trainer.epochs?"),
        Row(("+model.heads=4",), "model.heads: unknown key", says="model=linear"),
        Row(("noise.levl=3",), "noise.levl: unknown key", says="did you mean noise.level?"),
    ),
    # system
    Row(("system=nosuch",), "system: unknown option 'nosuch'"),
    *entry_calls(
        Row(("system.params.alph=2",), "system.params.alph", says="did you mean system.params.alpha?"),
        Row(("system.params.alpha=inf",), "system.params.alpha"),
        Row(("system.start=[1.0]",), "system.start"),
        Row(("system.t_start=nan",), "system.t_start"),
        Row(("system.t_end=-1",), "system.t_end"),
        Row(("system.n_steps=5",), "system.n_steps"),
        Row(("system.rtol=0",), "system.rtol"),
        Row(("system.method=RK4",), "system.method", says="allowed: DOP853, Radau, LSODA, BDF"),
        Row(("system.max_steps=0",), "system.max_steps"),
        Row(("system.max_seconds=0",), "system.max_seconds"),
    ),
    # noise, models, trainer
    Row(("noise.kind=loud",), "noise.kind"),  # a value the schema's type refuses while Hydra composes
    *entry_calls(
        Row(("noise.level=-1",), "noise.level"),
        Row(("-m", "noise=0,1,gaussian"), "noise", says="not both"),
        Row(("model.lr=0",), "model.lr"),
        Row(("model=multihead", "model.heads=0"), "model.heads"),
        Row(("model=multihead", "model.width=30"), "model.width"),
        Row(("model=multihead", "model.window=1"), "model.window"),
        Row(("model=transformer", "model.layers=17"), "model.layers"),
        Row(("model=transformer", "model.ff_width=0"), "model.ff_width"),
        Row(("trainer.epochs=0",), "trainer.epochs"),
        Row(("trainer.log_every=0",), "trainer.log_every"),
        Row(("trainer.threads=0",), "trainer.threads"),
    ),
    # analysis, tracking
    *entry_calls(
        Row(("analysis.sensitivity=foo",), "analysis.sensitivity"),
        Row(("analysis.ftle_horizon=0",), "analysis.ftle_horizon"),
        Row(("analysis.perturb.k=0",), "analysis.perturb.k"),
        Row(("analysis.perturb.epsilon=0",), "analysis.perturb.epsilon"),
        Row(("analysis.prc_kick.epsilon=0.9",), "analysis.prc_kick.epsilon"),
        Row(("tracking.experiment=''",), "tracking.experiment"),
    ),
    # the circadian pacemakers and their light protocol
    *entry_calls(
        Row(("system=forger99", "system.params.light=-1"), "system.params.light", says="must be a finite number >= 0 (lux)"),
        Row(("system=hannay19", "system.params.I0=0"), "system.params.I0", says="> 0 (lux)"),
        Row(("system=jewett99", "system.start=[0.5,0.5,1.5]"), "system.start", says="n must lie in [0, 1]"),
        Row(("experiment=circadian", "analysis.light_pulse.pulse_hours=17"), "analysis.light_pulse.pulse_hours",
            says="the pulse must fit in the 16 h waking day"),
        Row(("experiment=circadian", "analysis.light_pulse.pulse_lux=0"), "analysis.light_pulse.pulse_lux",
            says="must be a finite number > 0 (lux)"),
        Row(("experiment=circadian", "analysis.light_pulse.phases=4"), "analysis.light_pulse.phases",
            says="[8, 1000]"),
        Row(("experiment=circadian", "analysis.light_pulse.room_lux=-5"), "analysis.light_pulse.room_lux"),
        Row(("experiment=circadian", "analysis.light_pulse.step=1"), "analysis.light_pulse.step", says="(0, 0.25]"),
        Row(("analysis.lightprc=true",), "analysis.lightprc", says="allowed for lotka_volterra: false"),
        Row(("system=goodwin", "objectives=[lightprc/spearman]"), "objectives",
            says="'lightprc/spearman' is logged only with analysis.lightprc=true"),
    ),
    # the Optuna sweeper's settings, rejected before the sweep's parent run opens
    Row((*OPTUNA, "hydra.sweeper.n_trials=-1"), "hydra.sweeper.n_trials"),
    *entry_calls(
        Row((*OPTUNA, "hydra.sweeper.n_jobs=0"), "hydra.sweeper.n_jobs"),
        Row((*OPTUNA, "hydra.sweeper.direction=up"), "hydra.sweeper.direction"),
        Row((*OPTUNA, "hydra.sweeper.sampler._target_=optuna.samplers.NoSuch"), "hydra.sweeper.sampler"),
        Row((*OPTUNA, "hydra.sweeper.sampler.seed=-1"), "hydra.sweeper.sampler"),
        Row((*OPTUNA, "model.lr=interval(1,0)"), "hydra.sweeper.params.model.lr"),
        Row((*OPTUNA, "hydra.sweeper.ntrials=3"), "hydra.sweeper.ntrials",
            says="did you mean hydra.sweeper.n_trials?"),
    ),
    # the report's flags: argparse's refusals, and one the store gives (read in a process of its own)
    Row(("--bogus",), "--bogus", module="lvsweep.report"),
    *entry_calls(
        Row(("--parnt", "x"), "--parnt", says="did you mean --parent?", module="lvsweep.report"),
        Row(("--parent",), "--parent", says="expected one argument", module="lvsweep.report"),
        Row(("--tracking-uri", "sqlite:///no/such/dir/x.db"), "--tracking-uri", module="lvsweep.report"),
    ),
    Row(("--parent", "abc"), "--parent", says="no run 'abc'", module="lvsweep.report"),
    # what only the numerics can find, once the run is open: a FAILED run naming the field (each opens
    # the store, so each runs in a process of its own)
    Row((*QUICK, "system.params.alpha=1e308"), "system: the lotka_volterra ODE blew up", expects_run="FAILED",
        says="alpha=1e+308"),
    Row((*QUICK, "system=van_der_pol", "system.params.mu=1e6", "system.max_steps=20000"), "system.max_steps",
        expects_run="FAILED", says="try system.method=Radau"),
    Row((*QUICK, "system=van_der_pol", "system.params.mu=1e6", "system.max_seconds=0.5"), "system.max_seconds",
        expects_run="FAILED", says="mu=1e+06"),
    Row((*QUICK, "noise.level=1e300"), "train/loss", expects_run="FAILED"),
]
def test_every_bad_input_is_one_line_naming_the_field(seeded_store: Path, tmp_path: Path):
    assert len(ROWS) >= 30
    failures = check_rows(ROWS, seeded_store, tmp_path)
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- every numeric field has a range

# A value outside the allowed range for every int/float field of every schema (and the group it needs).
REJECTED = {
    "seed": ["seed=-1"], "replicates": ["replicates=1025"],
    "system.transient": ["system.transient=-0.5"], "system.t_start": ["system.t_start=inf"],
    "system.t_end": ["system.t_end=0"], "system.n_steps": ["system.n_steps=2000000"],
    "system.rtol": ["system.rtol=1"], "system.atol": ["system.atol=-1e-9"],
    "system.max_steps": ["system.max_steps=99"], "system.max_seconds": ["system.max_seconds=-1"],
    "system.params": ["system.params.alpha=nan"], "system.start": ["system.start=[nan,5.0]"],
    "noise.level": ["noise.level=-0.1"], "model.lr": ["model.lr=-1"],
    "model.heads": ["model=multihead", "model.heads=65"], "model.width": ["model=multihead", "model.width=2048"],
    "model.window": ["model=transformer", "model.window=-1"], "model.dropout": ["model=transformer", "model.dropout=-0.1"],
    "model.layers": ["model=transformer", "model.layers=0"], "model.ff_width": ["model=transformer", "model.ff_width=20000"],
    "trainer.epochs": ["trainer.epochs=-1"], "trainer.log_every": ["trainer.log_every=0"],
    "trainer.val_every": ["trainer.val_every=0"], "trainer.align_every": ["trainer.align_every=0"],
    "trainer.threads": ["trainer.threads=2000"],
    "trainer.devices": ["trainer.devices=2", "trainer.devices=0"],
    "analysis.ftle_horizon": ["analysis.ftle_horizon=31"], "analysis.prc_cycles": ["analysis.prc_cycles=101"],
    "analysis.perturb.k": ["analysis.perturb.k=501"], "analysis.perturb.epsilon": ["analysis.perturb.epsilon=-0.1"],
    "analysis.perturb.horizon": ["analysis.perturb.horizon=0"], "analysis.prc_kick.epsilon": ["analysis.prc_kick.epsilon=0"],
    "analysis.light_pulse.pulse_lux": ["analysis.light_pulse.pulse_lux=-1"],
    "analysis.light_pulse.pulse_hours": ["analysis.light_pulse.pulse_hours=0"],
    "analysis.light_pulse.room_lux": ["analysis.light_pulse.room_lux=nan"],
    "analysis.light_pulse.dim_lux": ["analysis.light_pulse.dim_lux=-0.1"],
    "analysis.light_pulse.phases": ["analysis.light_pulse.phases=7"],
    "analysis.light_pulse.entrain_days": ["analysis.light_pulse.entrain_days=0"],
    "analysis.light_pulse.step": ["analysis.light_pulse.step=0"],
    "estimate.walkers": ["data=lynx_hare", "estimate.walkers=1"], "estimate.steps": ["data=lynx_hare", "estimate.steps=0"],
    "estimate.burn": ["data=lynx_hare", "estimate.burn=-1"],
    "estimate.priors": ["experiment=lynx_hare", "estimate.priors.alpha.sigma=-1"],
}


def numeric_fields(schema: type, prefix: str = "") -> set[str]:
    """Every int or float field (optional or not, and mappings of floats) of a schema, nested included."""
    found: set[str] = set()
    for f in dataclasses.fields(schema):
        kind = typing.get_type_hints(schema)[f.name]
        path = f"{prefix}{f.name}"
        if schema is LvsweepConfig and f.name == "model":
            for model in MODEL_SCHEMAS.values():
                found |= numeric_fields(model, "model.")
        elif dataclasses.is_dataclass(kind):
            found |= numeric_fields(kind, f"{path}.")
        elif any(dataclasses.is_dataclass(a) and numeric_fields(a) for a in typing.get_args(kind)):
            found.add(path)  # a mapping of records with numbers (estimate.priors)
        elif {int, float} & set(typing.get_args(kind)) or kind in (int, float):
            found.add(path)
    return found


def test_every_numeric_field_of_every_schema_has_a_rejected_value():
    def subclasses(cls: type) -> set[type]:
        return {cls, *(s for c in cls.__subclasses__() for s in subclasses(c))}

    assert subclasses(ModelConfig) - {ModelConfig} == set(MODEL_SCHEMAS.values())  # no model left out
    fields = numeric_fields(LvsweepConfig)
    assert "system.max_steps" in fields and "model.ff_width" in fields and "system.params" in fields
    assert fields == set(REJECTED), f"no rejected value for {sorted(fields - set(REJECTED))}"
    for field_name, overrides in REJECTED.items():
        with pytest.raises(LvsweepError) as err:
            validate(compose_config(*overrides))
        assert err.value.field.startswith(field_name), (overrides, str(err.value))
        assert "got" in err.value.problem or "must" in err.value.problem, str(err.value)


def test_the_defaults_of_every_system_and_model_pass_validation():
    for system in ("lotka_volterra", "competitive_lv", "van_der_pol", "rossler", "lorenz", "goodwin", "forger99",
                   "jewett99", "hannay19"):
        validate(compose_config(f"system={system}"))
    for model in MODEL_SCHEMAS:
        validate(compose_config(f"model={model}"))
