"""The config schemas: one dataclass per group, registered with Hydra as `base_*` so each YAML
option extends its schema (`defaults: [base_*, _self_]`) and holds only what differs.

OmegaConf checks types against these while Hydra composes; ranges and cross-field rules are
`lvsweep.config.validation`'s. Each field's comment is its description in the generated
configuration reference.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING
from lvsweep.metric_names import ALIGN_ANTICORRELATION
from lvsweep.systems.base import Sensitivity

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
# Relative and absolute tolerance of every solve unless a config or caller says otherwise: tight,
# because the sensitivity analysis differentiates along the orbit (a conserved V must stay constant
# to ~1e-8 relative, or "flat" and "steep" blur).
TOLERANCE = 1e-12
MAX_STEPS = 1_000_000
MAX_SECONDS = 120.0


# Values of trainer.accelerator: Lightning's names for the CPU, its own choice, and CUDA GPUs.
ACCELERATORS = ("cpu", "auto", "gpu")


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
    rtol: float = TOLERANCE
    atol: float = TOLERANCE
    # scipy's solve_ivp method: DOP853 (explicit, the default) or a stiff-capable Radau, LSODA, BDF.
    method: str = ODE_METHODS[0]
    # Bounds of every single solve, so a stiff or runaway system fails with an error instead of
    # hanging: right-hand-side evaluations, and wall time in seconds.
    max_steps: int = MAX_STEPS
    max_seconds: float = MAX_SECONDS


class DataSource(str, Enum):
    simulated = "simulated"
    lynx_hare = "lynx_hare"
    csv = "csv"


@dataclass
class DataConfig:
    # Where the training series comes from: the system's simulated orbit plus noise (simulated), the
    # Hudson's Bay lynx-hare records shipped with lvsweep (lynx_hare), or a CSV file of your own (csv).
    # With observed data the system is first fitted to the series (section `estimate`), and the
    # analysis runs on the fitted system's orbit at the observation times.
    source: DataSource = DataSource.simulated
    # The CSV file (data=csv only): a header row, then one row per observation time; '#' lines are comments.
    path: Optional[str] = None
    # The CSV's time column (data=csv); times must increase strictly and be evenly spaced.
    time: str = "t"
    # The CSV's state columns, one per state variable in the system's order (data=csv); null: the
    # system's state_names. Values must be > 0 (the log-normal measurement model).
    states: Optional[List[str]] = None


@dataclass
class PriorConfig:
    """One quantity's prior. Only the fields of its kind are read, so switching a preset's prior
    to another kind takes one override (`estimate.priors.alpha={kind: loguniform, low: 0.1, high: 10}`):
    the preset's fields of the old kind stay behind, unread."""

    # lognormal (median, sigma: log value ~ Normal(log median, sigma)), truncnormal (loc, scale:
    # Normal(loc, scale) cut at 0), halfnormal (scale), loguniform (low, high).
    kind: str = MISSING
    median: Optional[float] = None
    sigma: Optional[float] = None
    loc: Optional[float] = None
    scale: Optional[float] = None
    low: Optional[float] = None
    high: Optional[float] = None


@dataclass
class EstimateConfig:
    """The Bayesian fit of the system to observed data (data=lynx_hare or data=csv)."""

    # Free quantities: system parameters (alpha), initial states (x0_<state>) and noise levels
    # (sigma_<state>); null = all of them. The others stay at the system's values (initial states:
    # at the first observation).
    params: Optional[List[str]] = None
    # Priors by quantity, each replacing the library's default for that quantity, e.g.
    # {alpha: {kind: lognormal, median: 1, sigma: 1}}; kinds: lognormal (median, sigma), truncnormal
    # (loc, scale), halfnormal (scale), loguniform (low, high).
    priors: Dict[str, PriorConfig] = field(default_factory=dict)
    # emcee walkers (raised to at least 2 × free quantities + 2).
    walkers: int = 32
    # Most steps per walker after burn-in; sampling stops earlier once the chain is 50 autocorrelation
    # times long (after at least min(400, steps) steps).
    steps: int = 2300
    # Burn-in steps per walker, discarded.
    burn: int = 200


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
class LightPulseConfig:
    # The bright pulse's illuminance (lux, > 0; Khalsa et al. 2003: ~10,000).
    pulse_lux: float = 10000.0
    # The pulse's length in hours, centred in the 16 h waking day (at most 16 h).
    pulse_hours: float = 6.7
    # Room light of the 16 h waking days of entrainment (lux, >= 0).
    room_lux: float = 150.0
    # Dim light of the constant routines and of the pulse day outside the pulse (lux, >= 0).
    dim_lux: float = 5.0
    # Pulse phases scanned over 24 h (at least 8), evenly spaced.
    phases: int = 48
    # Days of 16 h room light and 8 h darkness from system.start before the first constant routine.
    entrain_days: int = 20
    # Runge-Kutta step of the protocol's integration in hours (every light switch is rounded to it).
    step: float = 0.05


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
    # Circadian pacemakers with a light input (forger99, jewett99, hannay19): the phase response to a
    # bright light pulse by the protocol of Khalsa et al. 2003, its features beside the measured ones,
    # and attention's alignment with |light PRC| along the orbit: lightprc.csv, figures/lightprc.png, lightprc/*.
    lightprc: bool = False
    # The light protocol of the light PRC.
    light_pulse: LightPulseConfig = field(default_factory=LightPulseConfig)
    # Simulated data only: after training, fit the system's parameters and initial states to each
    # replicate's noisy series with uniform, attention, inverse-attention, state-norm and permuted
    # weights, against the true values (estimate/rel_error_*, estimate/attention_gain).
    estimate: bool = False
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
    # Set by the Optuna sweeper, never by hand: the trial this job runs (storage, study, number,
    # pruner, monitor, timeout). Kept out of the run's params and config.yaml.
    trial: Dict[str, Any] = field(default_factory=dict)
    # Set by `python -m lvsweep.replay`: the id of a recorded run whose config.yaml this job runs
    # again instead of the composed one (its own tracking settings kept). Not logged as a param.
    replay_of: Optional[str] = None


@dataclass
class LvsweepConfig:
    # The dynamical system and its orbit (config group `system`).
    system: SystemConfig = MISSING
    # The training series: simulated, lynx_hare or csv (config group `data`).
    data: DataConfig = MISSING
    # The Bayesian fit of the system to observed data (data=lynx_hare or data=csv).
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    # The observation noise (config group `noise`; simulated data only).
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
    objectives: List[str] = field(default_factory=lambda: [ALIGN_ANTICORRELATION])


def register_configs() -> None:
    """Schemas live beside the YAML options that extend them (`defaults: [base_*, _self_]`)."""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=LvsweepConfig)
    cs.store(group="system", name="base_system", node=SystemConfig)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="noise", name="base_noise", node=NoiseConfig)
    cs.store(group="model", name="base_linear", node=LinearModelConfig)
    cs.store(group="model", name="base_multihead", node=MultiHeadModelConfig)
    cs.store(group="model", name="base_transformer", node=TransformerModelConfig)
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="analysis", name="base_analysis", node=AnalysisConfig)
    cs.store(group="tracking", name="base_tracking", node=TrackingConfig)


# Registered when the schemas are imported, as Hydra's own plugins register theirs: a launcher's
# worker process imports the task's module (and so this one) and composes its job's config there.
register_configs()
