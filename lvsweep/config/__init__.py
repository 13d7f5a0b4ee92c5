"""Structured config schemas and the range checks OmegaConf cannot express.

OmegaConf checks types (and unknown keys) while Hydra composes the config; `validate` checks
ranges and cross-field rules before any work starts, so a bad value costs nothing and names the
field it is about.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from lvsweep.errors import LvsweepError


class NoiseKind(str, Enum):
    gaussian = "gaussian"
    relative = "relative"
    multiplicative = "multiplicative"
    none = "none"


class LinearForm(str, Enum):
    paper = "paper"
    scaled = "scaled"


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


# Final metrics every run logs; `objectives` must name some of them.
RUN_METRICS = ("train/loss", "val/loss", "align/pearson", "align/spearman", "align/anticorrelation",
               "perturb/low_over_high", "val/r2", "val/noisy_mse", "align/excess", "align/pvalue",
               "system/max_lyapunov")
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
    return isinstance(x, (int, float)) and math.isfinite(x)


def validate(cfg: DictConfig | Any) -> None:
    """Range and consistency checks; the system's own parameter checks run when it is built."""
    s = cfg.system
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
    _require(_finite(s.t_end) and s.t_end > s.t_start, "system.t_end",
             f"must be a finite number > system.t_start ({s.t_start}), got {s.t_end}")
    _require(_finite(s.transient) and s.transient >= 0, "system.transient",
             f"must be a finite number >= 0 (time discarded before t_start), got {s.transient}")
    _require(s.n_steps >= 10, "system.n_steps", f"must be an integer >= 10, got {s.n_steps}")
    _require(0 < s.rtol < 1, "system.rtol", f"must be in (0, 1), got {s.rtol}")
    _require(0 < s.atol < 1, "system.atol", f"must be in (0, 1), got {s.atol}")

    _require(_finite(cfg.noise.level) and cfg.noise.level >= 0, "noise.level",
             f"must be a finite number >= 0 (standard deviation), got {cfg.noise.level}")

    _require(_finite(cfg.model.lr) and cfg.model.lr > 0, "model.lr",
             f"must be a finite number > 0, got {cfg.model.lr}")
    if cfg.model.name in ("multihead", "transformer"):
        validate_attention_model(cfg.model)

    _require(1 <= cfg.replicates <= MAX_REPLICATES, "replicates",
             f"must be an integer in [1, {MAX_REPLICATES}], got {cfg.replicates}")

    t = cfg.trainer
    for name in ("epochs", "log_every", "val_every", "align_every", "threads"):
        value = getattr(t, name)
        _require(value >= 1, f"trainer.{name}", f"must be an integer >= 1, got {value}")

    p = cfg.analysis.perturb
    _require(p.k >= 1 and 2 * p.k <= s.n_steps, "analysis.perturb.k",
             f"must be an integer in [1, system.n_steps/2 = {s.n_steps // 2}], got {p.k}")
    _require(_finite(p.epsilon) and p.epsilon > 0, "analysis.perturb.epsilon",
             f"must be a finite number > 0, got {p.epsilon}")
    _require(_finite(p.horizon) and p.horizon > 0, "analysis.perturb.horizon",
             f"must be a finite number > 0, got {p.horizon}")
    validate_system_analysis(cfg.analysis, system, s)
    _require(bool(cfg.tracking.experiment), "tracking.experiment", "must be a non-empty name")
    allowed = ", ".join([*RUN_METRICS, *(f"{k} (with {v})" for k, v in OPTIONAL_METRICS.items())])
    _require(len(cfg.objectives) >= 1, "objectives", f"must name at least one of: {allowed}")
    for name in cfg.objectives:
        _require(name in RUN_METRICS or name in OPTIONAL_METRICS, "objectives",
                 f"unknown metric '{name}'; allowed: {allowed}")
        _require(name not in OPTIONAL_METRICS or bool(cfg.analysis.prc), "objectives",
                 f"'{name}' is logged only with {OPTIONAL_METRICS.get(name)}; set it or pick another metric")


def validate_system_analysis(a: DictConfig | Any, system: Any, s: DictConfig | Any) -> None:
    """The sensitivity measure and the phase response must suit the system."""
    from lvsweep.systems import check_prc, resolve_measure

    resolve_measure(str(getattr(a.sensitivity, "value", a.sensitivity)), system)
    _require(_finite(a.ftle_horizon) and 0 < a.ftle_horizon <= s.t_end - s.t_start, "analysis.ftle_horizon",
             f"must be a number in (0, {s.t_end - s.t_start:g}] (time units, at most the time span), "
             f"got {a.ftle_horizon}")
    if not a.prc:
        return
    check_prc(system)
    k = a.prc_kick
    _require(_finite(k.epsilon) and k.epsilon != 0 and abs(k.epsilon) <= 0.5, "analysis.prc_kick.epsilon",
             f"must be a non-zero number in [-0.5, 0.5] (fraction of the state's range), got {k.epsilon}")
    indices = [str(i) for i in range(len(s.state_names))]
    _require(str(k.state) in (*s.state_names, *indices), "analysis.prc_kick.state",
             f"unknown state '{k.state}'; allowed: {', '.join([*s.state_names, *indices])}")
    _require(1 <= a.prc_cycles <= 100, "analysis.prc_cycles", f"must be an integer in [1, 100], got {a.prc_cycles}")


MAX_HEADS, MAX_WIDTH, MAX_LAYERS, MAX_REPLICATES = 64, 1024, 16, 1024


def validate_attention_model(m: DictConfig | Any) -> None:
    """Ranges of the multi-head and transformer knobs (the config schema has already checked types)."""
    _require(1 <= m.heads <= MAX_HEADS, "model.heads", f"must be an integer in [1, {MAX_HEADS}], got {m.heads}")
    _require(m.heads <= m.width <= MAX_WIDTH and m.width % m.heads == 0, "model.width",
             f"must be a multiple of model.heads ({m.heads}) in [{m.heads}, {MAX_WIDTH}], got {m.width}")
    _require(m.window is None or m.window == 0 or m.window >= 2, "model.window",
             f"must be null or 0 (full attention) or an integer >= 2, got {m.window}")
    _require(_finite(m.dropout) and 0 <= m.dropout < 1, "model.dropout", f"must be in [0, 1), got {m.dropout}")
    reduce = str(getattr(m.attention.reduce, "value", m.attention.reduce))
    if m.name == "transformer":
        _require(1 <= m.layers <= MAX_LAYERS, "model.layers",
                 f"must be an integer in [1, {MAX_LAYERS}], got {m.layers}")
        _require(m.ff_width >= 1, "model.ff_width", f"must be an integer >= 1, got {m.ff_width}")
    else:
        _require(reduce != "rollout", "model.attention.reduce",
                 "rollout follows the residual path of the transformer; allowed for multihead: received, last_layer")
