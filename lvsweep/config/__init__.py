"""Structured config schemas and the range checks OmegaConf cannot express.

OmegaConf checks types (and unknown keys) while Hydra composes the config; `validate` checks
ranges and cross-field rules before any work starts, so a bad value costs nothing and names the
field it is about.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from lvsweep.errors import LvsweepError

# The configs travel inside the package (the repository's top-level conf/ is mapped to
# lvsweep.conf), so an installed wheel finds them wherever it is run from: Hydra through
# pkg://lvsweep.conf, the help text through the folder that module lives in.
CONF_MODULE = "lvsweep.conf"


def conf_dir() -> Path:
    """The folder holding config.yaml and the groups, in a checkout or an installed wheel."""
    from importlib.resources import files

    return Path(str(files(CONF_MODULE)))


class NoiseKind(str, Enum):
    gaussian = "gaussian"
    relative = "relative"
    multiplicative = "multiplicative"
    none = "none"


class LinearForm(str, Enum):
    paper = "paper"
    scaled = "scaled"


# ODE solving: scipy methods (explicit first, the default; then stiff-capable ones) and the default
# bounds of one solve. Sized from measurement: the largest solve of any default system (Rossler's
# orbit, PRC batches, FTLE propagators) takes ~35,000 evaluations and ~1 s, so neither bound touches
# a normal run, while a stiff system under DOP853 stops within a minute instead of running for hours.
ODE_METHODS = ("DOP853", "Radau", "LSODA", "BDF")
MAX_STEPS = 1_000_000
MAX_SECONDS = 120.0


class Sensitivity(str, Enum):
    auto = "auto"  # lyapunov_normal where the system has V, else ftle
    lyapunov_normal = "lyapunov_normal"
    ftle = "ftle"


@dataclass
class SystemConfig:
    """Any ODE system: its parameters are a free mapping checked by the system's own module."""

    # The system's registered name (picks its module in lvsweep.systems).
    name: str = MISSING
    # One name per state variable: column names of attention.csv and figure labels.
    state_names: List[str] = MISSING
    # The right-hand side's parameters by name; the system checks that all of its own are given.
    params: Dict[str, float] = field(default_factory=dict)
    # The initial state, one value per state variable.
    start: List[float] = MISSING
    # Time integrated from `start` and discarded before t_start, so orbits begin on their attractor.
    transient: float = 0.0
    # The orbit is sampled at n_steps evenly spaced times from t_start to t_end (both included).
    t_start: float = 0.0
    t_end: float = MISSING
    n_steps: int = MISSING
    # Relative and absolute tolerances of the ODE solver.
    rtol: float = 1e-12
    atol: float = 1e-12
    # scipy's solve_ivp method: DOP853 (explicit, the default) or a stiff-capable Radau, LSODA, BDF.
    method: str = ODE_METHODS[0]
    # Bounds of every single solve, so a stiff or runaway system fails with an error instead of
    # hanging: right-hand-side evaluations, and wall time in seconds.
    max_steps: int = MAX_STEPS
    max_seconds: float = MAX_SECONDS


@dataclass
class NoiseConfig:
    # Additive in state units (gaussian), additive in units of each state's spread (relative),
    # proportional to the state (multiplicative), or none.
    kind: NoiseKind = NoiseKind.gaussian
    # Standard deviation in state units (gaussian), in units of each state's standard deviation
    # over the orbit (relative), or relative to the state (multiplicative).
    level: float = 2.0


@dataclass
class ModelConfig:
    # The model's registered name (picks its class in lvsweep.models).
    name: str = MISSING
    # Adam learning rate.
    lr: float = 1e-2


@dataclass
class LinearModelConfig(ModelConfig):
    name: str = "linear"
    # paper: x̂_t = a_t·x̃_t; scaled: x̂_t = T·a_t·x̃_t (an ablation of the normalisation).
    form: LinearForm = LinearForm.paper


class AttentionReduce(str, Enum):
    received = "received"
    last_layer = "last_layer"
    rollout = "rollout"


@dataclass
class AttentionConfig:
    # How per-step attention is read from the maps: mean attention received over queries, heads and
    # layers; the same for the last layer only; or attention rollout through the layers (transformer).
    reduce: AttentionReduce = AttentionReduce.received


@dataclass
class MultiHeadModelConfig(ModelConfig):
    name: str = "multihead"
    # Attention heads per layer.
    heads: int = 4
    # Embedding width, a multiple of heads.
    width: int = 32
    # Each step attends to steps within ±window/2; null or 0 = full attention (memory grows with T²).
    window: Optional[int] = 64
    # Dropout on attention weights (and the transformer's residual branches), in training only.
    dropout: float = 0.0
    # How the per-step attention is read from the attention maps.
    attention: AttentionConfig = field(default_factory=AttentionConfig)


@dataclass
class TransformerModelConfig(MultiHeadModelConfig):
    name: str = "transformer"
    # Encoder layers.
    layers: int = 2
    # Width of each layer's feed-forward block.
    ff_width: int = 64


@dataclass
class TrainerConfig:
    # One epoch is one full-batch optimisation step over the whole trajectory.
    epochs: int = 2000
    # Epochs per Lightning step: the loss history cadence, and what amortises framework overhead.
    log_every: int = 10
    # Epochs between validation losses in the history.
    val_every: int = 100
    # Epochs between alignment measurements in the history (and at the end).
    align_every: int = 100
    # Torch threads for training.
    threads: int = 1
    # Where training runs: cpu (the default: these models are small and full-batch), auto
    # (Lightning picks a GPU when there is one, else the CPU) or gpu (CUDA; an error without it).
    accelerator: str = "cpu"
    # Devices of that accelerator. Training is one full batch, which data parallelism cannot split,
    # so only 1 is accepted for now.
    devices: int = 1


@dataclass
class PerturbConfig:
    # Kicks at the k highest- and the k lowest-attention times.
    k: int = 10
    # Kick size in state units, along the outward normal n̂ (with ftle: the fastest-growing direction).
    epsilon: float = 0.1
    # Time over which each kicked orbit and its unkicked twin are integrated before comparing.
    horizon: float = 5.0


@dataclass
class PrcKickConfig:
    # Kick size as a fraction of the kicked state's range along the orbit (scale-free across systems).
    epsilon: float = 0.01
    # The kicked state variable: its name or its index.
    state: str = "0"


@dataclass
class AnalysisConfig:
    # The sensitivity profile attention is compared with: ∇V·n̂ (lyapunov_normal), the largest
    # finite-time Lyapunov exponent (ftle), or auto: lyapunov_normal where the system has V, else ftle.
    sensitivity: Sensitivity = Sensitivity.auto
    # FTLE horizon τ in time units (rounded to whole sampling steps).
    ftle_horizon: float = 1.0
    # The perturbation test: kicks at high- and low-attention times.
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    # Write the PNG figures (into the run directory and as MLflow artifacts).
    figures: bool = True
    # Phase response curve of oscillators: prc.csv, figures/prc.png, prc/spearman.
    prc: bool = False
    # The kicks that measure the phase response.
    prc_kick: PrcKickConfig = field(default_factory=PrcKickConfig)
    # Limit cycles: the shift is read this many cycles after the kick, once the orbit is back on the cycle.
    prc_cycles: int = 10
    # Log the trained model as the run's MLflow PyTorch model `model` (about 0.2 s a run, plus
    # about 1-3 s once per process the first time; see docs/performance.md).
    log_model: bool = True


@dataclass
class TrackingConfig:
    # None: $MLFLOW_TRACKING_URI if set, else sqlite:///mlruns/mlflow.db under the launch directory.
    uri: Optional[str] = None
    # MLflow experiment the runs go to.
    experiment: str = "lvsweep"
    # Run name; None: "run" for a single run, the job's overrides (e.g. noise.level=2) in a multirun.
    run_name: Optional[str] = None
    # Extra tags for the run (a sweeper adds e.g. its trial number here).
    tags: Dict[str, str] = field(default_factory=dict)


@dataclass
class LvsweepConfig:
    # The dynamical system and its orbit (config group `system`).
    system: SystemConfig = MISSING
    # The observation noise (config group `noise`).
    noise: NoiseConfig = MISSING
    # The attention model (config group `model`).
    model: ModelConfig = MISSING
    # Training cadence (config group `trainer`).
    trainer: TrainerConfig = MISSING
    # Sensitivity, perturbation test, figures, phase response (config group `analysis`).
    analysis: AnalysisConfig = MISSING
    # Where runs are recorded (config group `tracking`).
    tracking: TrackingConfig = MISSING
    # Seed of the noise draws and the model's initialisation.
    seed: int = 0
    # Independent models (own initialisation, own noise draw) trained together as one vectorised
    # model; replicate 0 uses `seed`, replicate r a seed derived from (seed, r).
    replicates: int = 1
    # What the task returns: one metric name for a single objective, several for multi-objective search.
    objectives: List[str] = field(default_factory=lambda: ["align/anticorrelation"])


# Values of trainer.accelerator: Lightning's names for the CPU, its own choice, and CUDA GPUs.
ACCELERATORS = ("cpu", "auto", "gpu")

# Final metrics every run logs; `objectives` must name some of them.
RUN_METRICS = ("train/loss", "val/loss", "align/pearson", "align/spearman", "align/anticorrelation",
               "perturb/low_over_high", "val/r2", "val/noisy_mse", "align/excess", "align/pvalue",
               "align/training_gain", "dynamics/max_lyapunov")
# Final metrics only some runs log: each with the setting that turns it on (all: analysis.prc).
OPTIONAL_METRICS = {"prc/spearman": "analysis.prc=true", "prc/period": "analysis.prc=true"}


def register_configs() -> None:
    """Schemas live beside the YAML options that extend them (`defaults: [base_*, _self_]`)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=LvsweepConfig)
    cs.store(group="system", name="base_system", node=SystemConfig)
    cs.store(group="noise", name="base_noise", node=NoiseConfig)
    cs.store(group="model", name="base_linear", node=LinearModelConfig)
    cs.store(group="model", name="base_multihead", node=MultiHeadModelConfig)
    cs.store(group="model", name="base_transformer", node=TransformerModelConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="analysis", name="base_analysis", node=AnalysisConfig)
    cs.store(group="tracking", name="base_tracking", node=TrackingConfig)


def _require(ok: bool, field_name: str, problem: str) -> None:
    if not ok:
        raise LvsweepError(field_name, problem)


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number(value: Any, field_name: str, low: float | None = None, high: float | None = None, *,
            integer: bool = False, low_open: bool = False, high_open: bool = False, unit: str = "") -> None:
    """One range check with one wording: the field, its allowed interval, and what it got."""
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = _finite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    kind = "an integer" if integer else "a finite number"
    if low is not None and high is not None:
        where = f"in {'(' if low_open else '['}{_shown(low)}, {_shown(high)}{')' if high_open else ']'}"
    elif low is not None:
        where = f"{'>' if low_open else '>='} {_shown(low)}"
    elif high is not None:
        where = f"{'<' if high_open else '<='} {_shown(high)}"
    else:
        where = ""
    raise LvsweepError(field_name, f"must be {kind} {where}{unit}, got {value}".replace("  ", " "))


def _shown(bound: float) -> str:
    """A bound as a user would type it: integers in full (4294967296, not 4.295e+09)."""
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e16 else f"{bound:g}"


# Largest values accepted where nothing else bounds them (memory and time grow with these).
MAX_HEADS, MAX_WIDTH, MAX_LAYERS, MAX_REPLICATES = 64, 1024, 16, 1024
MAX_N_STEPS, MAX_THREADS, MAX_FF_WIDTH = 1_000_000, 1024, 16384
SEED_LIMIT = 2**32  # numpy's SeedSequence takes non-negative integers; 32 bits keep seeds portable

# The schema of each model, by `model.name`.
MODEL_SCHEMAS: dict[str, type] = {"linear": LinearModelConfig, "multihead": MultiHeadModelConfig,
                                  "transformer": TransformerModelConfig}
# Mappings whose keys are not fixed by a schema: `system.params` is checked against the chosen
# system's parameter names when the system is built; tags are the user's own.
FREE_MAPPINGS = ("system.params", "tracking.tags")


def _schema_fields(schema: type) -> dict[str, Any]:
    """Field name → resolved type (the schemas use postponed annotations)."""
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _nested_schema(kind: Any) -> Optional[type]:
    return kind if isinstance(kind, type) and dataclasses.is_dataclass(kind) else None


def known_keys(schema: type = LvsweepConfig, prefix: str = "") -> list[str]:
    """Every dotted key a user can set, across all models: the candidates of "did you mean"."""
    keys: list[str] = []
    for name, kind in _schema_fields(schema).items():
        path = f"{prefix}{name}"
        keys.append(path)
        if schema is LvsweepConfig and name == "model":
            for model in MODEL_SCHEMAS.values():
                keys += [k for k in known_keys(model, "model.") if k not in keys]
        elif _nested_schema(kind):
            keys += known_keys(kind, f"{path}.")
    return keys


def nearest_key(path: str, candidates: Sequence[str] | None = None) -> Optional[str]:
    """The known key a mistyped `path` most likely meant: the closest full path, else the key whose
    last part is closest to the last part typed (`+epochs=5` → trainer.epochs)."""
    candidates = list(candidates) if candidates is not None else known_keys()
    close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.75)
    if close:
        return close[0]
    leaf = path.rpartition(".")[2]
    by_leaf: dict[str, str] = {}
    for key in candidates:
        by_leaf.setdefault(key.rpartition(".")[2], key)
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.75)
    if close:
        return by_leaf[close[0]]
    close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_key_problem(path: str, siblings: Sequence[str], where: str = "") -> str:
    """What to tell a user who set a key the schema does not have: the nearest known key and the
    keys allowed beside it, in the user's terms (never the names of internal schema classes)."""
    parent = path.rpartition(".")[0]
    near = [f"{parent}.{s}" if parent else str(s) for s in siblings]
    guess = nearest_key(path, [*near, *(k for k in known_keys() if k not in near)])
    hint = f"did you mean {guess}? " if guess and guess != path else ""
    where = where or parent or "the top level"
    return f"unknown key; {hint}keys of {where}: {', '.join(str(s) for s in siblings)}"


def check_keys(cfg: Mapping[str, Any] | Any) -> None:
    """Every key of the composed config must be one the schemas know. Hydra rejects an unknown
    key set without `+`; with `+` (or `++`) it adds the key, and a typo like `+trainer.epoch=5`
    would otherwise run in full and only show up as a stray param."""
    model_name = str(cfg["model"]["name"]) if "model" in cfg and "name" in cfg["model"] else None
    _require(model_name is None or model_name in MODEL_SCHEMAS, "model.name",
             f"unknown model '{model_name}'; allowed: {', '.join(MODEL_SCHEMAS)}")
    _check_node(cfg, LvsweepConfig, "", model_name)


def _check_node(node: Any, schema: type, prefix: str, model_name: Optional[str]) -> None:
    fields = _schema_fields(schema)
    for key in list(node.keys()):
        path = f"{prefix}{key}"
        if not prefix and key == "hydra":  # Hydra's own settings
            continue
        if key not in fields:
            where = f"model (model={model_name})" if prefix == "model." else ""
            raise LvsweepError(path, unknown_key_problem(path, list(fields), where))
        if path in FREE_MAPPINGS:
            continue
        kind = MODEL_SCHEMAS.get(model_name or "") if path == "model" else _nested_schema(fields[key])
        value = node[key]
        if kind is not None and hasattr(value, "keys"):
            _check_node(value, kind, f"{path}.", model_name)


def validate(cfg: DictConfig | Any) -> None:
    """Key, range and consistency checks; the system's own parameter checks run when it is built."""
    check_keys(cfg)
    validate_system(cfg.system)
    _number(cfg.seed, "seed", 0, SEED_LIMIT, integer=True, high_open=True)
    _number(cfg.replicates, "replicates", 1, MAX_REPLICATES, integer=True)
    _number(cfg.noise.level, "noise.level", 0, unit=" (standard deviation)")
    _number(cfg.model.lr, "model.lr", 0, low_open=True)
    if cfg.model.name in ("multihead", "transformer"):
        validate_attention_model(cfg.model)

    t = cfg.trainer
    _number(t.epochs, "trainer.epochs", 1, integer=True)
    for name in ("log_every", "val_every", "align_every"):
        _number(getattr(t, name), f"trainer.{name}", 1, integer=True, unit=" (epochs)")
    _number(t.threads, "trainer.threads", 1, MAX_THREADS, integer=True)
    validate_accelerator(t)

    s = cfg.system
    p = cfg.analysis.perturb
    _number(p.k, "analysis.perturb.k", 1, s.n_steps // 2, integer=True, unit=" (at most system.n_steps/2)")
    _number(p.epsilon, "analysis.perturb.epsilon", 0, low_open=True)
    _number(p.horizon, "analysis.perturb.horizon", 0, low_open=True, unit=" (time units)")
    from lvsweep.systems import make_system  # numpy only: cheap

    validate_system_analysis(cfg.analysis, make_system(s), s)
    _require(bool(cfg.tracking.experiment), "tracking.experiment", "must be a non-empty name")
    allowed = ", ".join([*RUN_METRICS, *(f"{k} (with {v})" for k, v in OPTIONAL_METRICS.items())])
    _require(len(cfg.objectives) >= 1, "objectives", f"must name at least one of: {allowed}")
    for name in cfg.objectives:
        _require(name in RUN_METRICS or name in OPTIONAL_METRICS, "objectives",
                 f"unknown metric '{name}'; allowed: {allowed}")
        _require(name not in OPTIONAL_METRICS or bool(cfg.analysis.prc), "objectives",
                 f"'{name}' is logged only with {OPTIONAL_METRICS.get(name)}; set it or pick another metric")


def validate_accelerator(t: DictConfig | Any) -> None:
    """`trainer.accelerator` among ACCELERATORS and usable here (gpu needs CUDA), `trainer.devices`
    1: checked before a run opens, so a missing GPU is one line, not a failed run."""
    _require(t.accelerator in ACCELERATORS, "trainer.accelerator",
             f"unknown accelerator '{t.accelerator}'; allowed: {', '.join(ACCELERATORS)}")
    _number(t.devices, "trainer.devices", 1, 1, integer=True,
            unit=" (training is one full batch, which several devices cannot split)")
    if t.accelerator == "gpu":
        import torch

        _require(torch.cuda.is_available(), "trainer.accelerator",
                 "'gpu' needs CUDA, which this machine's torch does not see "
                 f"(torch {torch.__version__}); use cpu or auto")


def validate_system(s: DictConfig | Any) -> None:
    """The system group: names, start, parameters, time grid, tolerances, solver and its bounds."""
    d = len(s.state_names)
    _require(d >= 1, "system.state_names", "must name at least one state variable")
    _require(
        len(s.start) == d,
        "system.start",
        f"must have {d} values, one per state ({', '.join(s.state_names)}); got {len(s.start)}",
    )
    _require(all(_finite(v) for v in s.start), "system.start", "values must be finite numbers")
    from lvsweep.systems import check_start, make_system  # numpy only: cheap

    system = make_system(s)
    check_start(system, list(s.start))
    for name, value in s.params.items():
        _require(_finite(value), f"system.params.{name}", f"must be a finite number, got {value}")
    _number(s.t_start, "system.t_start", unit=" (time units)")
    _require(_finite(s.t_end) and s.t_end > s.t_start, "system.t_end",
             f"must be a finite number > system.t_start ({s.t_start}), got {s.t_end}")
    _number(s.transient, "system.transient", 0, unit=" (time discarded before t_start)")
    _number(s.n_steps, "system.n_steps", 10, MAX_N_STEPS, integer=True)
    _number(s.rtol, "system.rtol", 0, 1, low_open=True, high_open=True)
    _number(s.atol, "system.atol", 0, 1, low_open=True, high_open=True)
    _require(s.method in ODE_METHODS, "system.method",
             f"unknown method '{s.method}'; allowed: {', '.join(ODE_METHODS)} (Radau, LSODA, BDF for stiff systems)")
    _number(s.max_steps, "system.max_steps", 100, integer=True, unit=" (right-hand-side evaluations per solve)")
    _number(s.max_seconds, "system.max_seconds", 0, low_open=True, unit=" (seconds per solve)")


def validate_system_analysis(a: DictConfig | Any, system: Any, s: DictConfig | Any) -> None:
    """The sensitivity measure and the phase response must suit the system."""
    from lvsweep.systems import check_prc, resolve_measure

    resolve_measure(str(getattr(a.sensitivity, "value", a.sensitivity)), system)
    _require(_finite(a.ftle_horizon) and 0 < a.ftle_horizon <= s.t_end - s.t_start, "analysis.ftle_horizon",
             f"must be a number in (0, {s.t_end - s.t_start:g}] (time units, at most the time span), "
             f"got {a.ftle_horizon}")
    k = a.prc_kick
    _require(_finite(k.epsilon) and k.epsilon != 0 and abs(k.epsilon) <= 0.5, "analysis.prc_kick.epsilon",
             f"must be a non-zero number in [-0.5, 0.5] (fraction of the state's range), got {k.epsilon}")
    _number(a.prc_cycles, "analysis.prc_cycles", 1, 100, integer=True)
    if not a.prc:
        return
    check_prc(system)
    indices = [str(i) for i in range(len(s.state_names))]
    _require(str(k.state) in (*s.state_names, *indices), "analysis.prc_kick.state",
             f"unknown state '{k.state}'; allowed: {', '.join([*s.state_names, *indices])}")


def validate_attention_model(m: DictConfig | Any) -> None:
    """Ranges of the multi-head and transformer knobs (the config schema has already checked types)."""
    _number(m.heads, "model.heads", 1, MAX_HEADS, integer=True)
    _require(isinstance(m.width, int) and m.heads <= m.width <= MAX_WIDTH and m.width % m.heads == 0, "model.width",
             f"must be a multiple of model.heads ({m.heads}) in [{m.heads}, {MAX_WIDTH}], got {m.width}")
    _require(m.window is None or (isinstance(m.window, int) and (m.window == 0 or 2 <= m.window <= MAX_N_STEPS)),
             "model.window", f"must be null or 0 (full attention) or an integer in [2, {MAX_N_STEPS}], got {m.window}")
    _number(m.dropout, "model.dropout", 0, 1, high_open=True)
    reduce = str(getattr(m.attention.reduce, "value", m.attention.reduce))
    if m.name == "transformer":
        _number(m.layers, "model.layers", 1, MAX_LAYERS, integer=True)
        _number(m.ff_width, "model.ff_width", 1, MAX_FF_WIDTH, integer=True)
    else:
        _require(reduce != "rollout", "model.attention.reduce",
                 "rollout follows the residual path of the transformer; allowed for multihead: received, last_layer")
