"""The range checks OmegaConf cannot express: `validate` runs before any work starts, so a bad
value costs nothing and names the field it is about."""
from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig

from lvsweep.config.keys import check_keys
from lvsweep.config.schema import ACCELERATORS, ODE_METHODS
from lvsweep.errors import LvsweepError, require
from lvsweep.metric_names import OPTIONAL_METRICS, RUN_METRICS

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
    from lvsweep.systems import make_system  # numpy only: cheap

    system = make_system(s)
    if is_observed(cfg):
        # The analysis runs on the observation times: their number and span bound k and the FTLE horizon.
        series = validate_observed(cfg, system)
        n_times, span, what = series.n_times, float(series.t[-1] - series.t[0]), "the observation times"
    else:
        n_times, span, what = s.n_steps, s.t_end - s.t_start, "system.n_steps"
    _number(p.k, "analysis.perturb.k", 1, n_times // 2, integer=True, unit=f" (at most half of {what})")
    _number(p.epsilon, "analysis.perturb.epsilon", 0, low_open=True)
    _number(p.horizon, "analysis.perturb.horizon", 0, low_open=True, unit=" (time units)")
    validate_system_analysis(cfg.analysis, system, s, span)
    require(bool(cfg.tracking.experiment), "tracking.experiment", "must be a non-empty name")
    allowed = ", ".join([*RUN_METRICS, *(f"{k} (with {v})" for k, v in OPTIONAL_METRICS.items())])
    require(len(cfg.objectives) >= 1, "objectives", f"must name at least one of: {allowed}")
    for name in cfg.objectives:
        require(name in RUN_METRICS or name in OPTIONAL_METRICS, "objectives",
                 f"unknown metric '{name}'; allowed: {allowed}")
        require(name not in OPTIONAL_METRICS or _enabled(cfg, OPTIONAL_METRICS[name]), "objectives",
                 f"'{name}' is logged only with {OPTIONAL_METRICS.get(name)}; set it or pick another metric")


def is_observed(cfg: DictConfig | Any) -> bool:
    """data=lynx_hare or data=csv (here, not in lvsweep.estimation: that package imports emcee and scipy)."""
    return str(getattr(cfg.data.source, "value", cfg.data.source)) != "simulated"


def _enabled(cfg: DictConfig | Any, setting: str) -> bool:
    """Whether a `key=true` setting (an OPTIONAL_METRICS condition) holds in this config."""
    node = cfg
    for part in setting.split("=")[0].split("."):
        node = node[part]
    return bool(node)


def validate_observed(cfg: DictConfig | Any, system: Any) -> Any:
    """Observed data (data=lynx_hare or data=csv): the series loaded and checked (one line naming
    file, row and column), the free quantities, priors and sampler settings; returns the series."""
    from lvsweep.estimation import Model
    from lvsweep.estimation.configured import fit_settings, free_quantities, observed_series, priors

    require(not cfg.analysis.estimate, "analysis.estimate",
            "the weighting study compares estimates with the true parameters, which only simulated data "
            "has (data=simulated); observed data is fitted by the `estimate` section anyway")
    e = cfg.estimate
    _number(e.walkers, "estimate.walkers", 2, 4096, integer=True)
    _number(e.steps, "estimate.steps", 1, 1_000_000, integer=True, unit=" (steps per walker after burn-in)")
    # At least one burn-in step: the sampler starts its chain from where the burn-in ends.
    _number(e.burn, "estimate.burn", 1, 1_000_000, integer=True, unit=" (steps per walker)")
    free = free_quantities(cfg, system)
    series = observed_series(cfg, system)
    try:  # unknown prior names, bad specs, too few rows; named as the config spells them
        Model.build(system, series, free, priors(cfg))
    except LvsweepError as err:
        if not err.field.startswith("estimation."):
            raise
        raise LvsweepError("estimate." + err.field.partition(".")[2], err.problem) from None
    fit_settings(cfg)
    return series


def validate_accelerator(t: DictConfig | Any) -> None:
    """`trainer.accelerator` among ACCELERATORS and usable here (gpu needs CUDA), `trainer.devices`
    1: checked before a run opens, so a missing GPU is one line, not a failed run."""
    require(t.accelerator in ACCELERATORS, "trainer.accelerator",
            f"unknown accelerator '{t.accelerator}'; allowed: {', '.join(ACCELERATORS)}")
    _number(t.devices, "trainer.devices", 1, 1, integer=True,
            unit=" (training is one full batch, which several devices cannot split)")
    if t.accelerator == "gpu":
        import torch

        require(torch.cuda.is_available(), "trainer.accelerator",
                "'gpu' needs CUDA, which this machine's torch does not see "
                f"(torch {torch.__version__}); use cpu or auto")


def validate_system(s: DictConfig | Any) -> None:
    """The system group: names, start, parameters, time grid, tolerances, solver and its bounds."""
    d = len(s.state_names)
    require(d >= 1, "system.state_names", "must name at least one state variable")
    require(
        len(s.start) == d,
        "system.start",
        f"must have {d} values, one per state ({', '.join(s.state_names)}); got {len(s.start)}",
    )
    require(all(_finite(v) for v in s.start), "system.start", "values must be finite numbers")
    from lvsweep.systems import check_start, make_system  # numpy only: cheap

    system = make_system(s)
    check_start(system, list(s.start))
    for name, value in s.params.items():
        require(_finite(value), f"system.params.{name}", f"must be a finite number, got {value}")
    _number(s.t_start, "system.t_start", unit=" (time units)")
    require(_finite(s.t_end) and s.t_end > s.t_start, "system.t_end",
             f"must be a finite number > system.t_start ({s.t_start}), got {s.t_end}")
    _number(s.transient, "system.transient", 0, unit=" (time discarded before t_start)")
    _number(s.n_steps, "system.n_steps", 10, MAX_N_STEPS, integer=True)
    _number(s.rtol, "system.rtol", 0, 1, low_open=True, high_open=True)
    _number(s.atol, "system.atol", 0, 1, low_open=True, high_open=True)
    require(s.method in ODE_METHODS, "system.method",
             f"unknown method '{s.method}'; allowed: {', '.join(ODE_METHODS)} (Radau, LSODA, BDF for stiff systems)")
    _number(s.max_steps, "system.max_steps", 100, integer=True, unit=" (right-hand-side evaluations per solve)")
    _number(s.max_seconds, "system.max_seconds", 0, low_open=True, unit=" (seconds per solve)")


def validate_system_analysis(a: DictConfig | Any, system: Any, s: DictConfig | Any, span: float | None = None) -> None:
    """The sensitivity measure and the phase response must suit the system; `span`: the time span
    the analysis runs over (default: the simulated orbit's)."""
    from lvsweep.systems import check_prc, resolve_measure

    resolve_measure(str(getattr(a.sensitivity, "value", a.sensitivity)), system)
    span = s.t_end - s.t_start if span is None else span
    require(_finite(a.ftle_horizon) and 0 < a.ftle_horizon <= span, "analysis.ftle_horizon",
             f"must be a number in (0, {span:g}] (time units, at most the time span), "
             f"got {a.ftle_horizon}")
    k = a.prc_kick
    require(_finite(k.epsilon) and k.epsilon != 0 and abs(k.epsilon) <= 0.5, "analysis.prc_kick.epsilon",
             f"must be a non-zero number in [-0.5, 0.5] (fraction of the state's range), got {k.epsilon}")
    _number(a.prc_cycles, "analysis.prc_cycles", 1, 100, integer=True)
    validate_light_pulse(a, system)
    if not a.prc:
        return
    check_prc(system)
    indices = [str(i) for i in range(len(s.state_names))]
    require(str(k.state) in (*s.state_names, *indices), "analysis.prc_kick.state",
             f"unknown state '{k.state}'; allowed: {', '.join([*s.state_names, *indices])}")


def validate_light_pulse(a: DictConfig | Any, system: Any) -> None:
    """The light protocol's ranges, and a light PRC only for a system with a light input."""
    from lvsweep.systems import SYSTEMS
    from lvsweep.systems.light import WAKE_HOURS, LightDriven

    lp = a.light_pulse
    _number(lp.pulse_lux, "analysis.light_pulse.pulse_lux", 0, low_open=True, unit=" (lux)")
    _number(lp.pulse_hours, "analysis.light_pulse.pulse_hours", 0, WAKE_HOURS, low_open=True,
            unit=f" (hours; the pulse must fit in the {WAKE_HOURS:g} h waking day)")
    _number(lp.room_lux, "analysis.light_pulse.room_lux", 0, unit=" (lux)")
    _number(lp.dim_lux, "analysis.light_pulse.dim_lux", 0, unit=" (lux)")
    _number(lp.phases, "analysis.light_pulse.phases", 8, 1000, integer=True, unit=" (pulse phases over 24 h)")
    _number(lp.entrain_days, "analysis.light_pulse.entrain_days", 1, 1000, integer=True, unit=" (days)")
    _number(lp.step, "analysis.light_pulse.step", 0, 0.25, low_open=True, unit=" (hours)")
    require(lp.pulse_hours >= 2 * lp.step, "analysis.light_pulse.pulse_hours",
            f"must be at least two steps of analysis.light_pulse.step ({lp.step:g} h), got {lp.pulse_hours}")
    if a.lightprc and not isinstance(system, LightDriven):
        driven = ", ".join(sorted(n for n, c in SYSTEMS.items() if issubclass(c, LightDriven)))
        raise LvsweepError("analysis.lightprc", f"a light phase response needs a system with a light input, which "
                                                f"{system.name} has not; allowed for {system.name}: false "
                                                f"(systems with a light input: {driven})")


def validate_attention_model(m: DictConfig | Any) -> None:
    """Ranges of the multi-head and transformer knobs (the config schema has already checked types)."""
    _number(m.heads, "model.heads", 1, MAX_HEADS, integer=True)
    require(isinstance(m.width, int) and m.heads <= m.width <= MAX_WIDTH and m.width % m.heads == 0, "model.width",
             f"must be a multiple of model.heads ({m.heads}) in [{m.heads}, {MAX_WIDTH}], got {m.width}")
    require(m.window is None or (isinstance(m.window, int) and (m.window == 0 or 2 <= m.window <= MAX_N_STEPS)),
             "model.window", f"must be null or 0 (full attention) or an integer in [2, {MAX_N_STEPS}], got {m.window}")
    _number(m.dropout, "model.dropout", 0, 1, high_open=True)
    reduce = str(getattr(m.attention.reduce, "value", m.attention.reduce))
    if m.name == "transformer":
        _number(m.layers, "model.layers", 1, MAX_LAYERS, integer=True)
        _number(m.ff_width, "model.ff_width", 1, MAX_FF_WIDTH, integer=True)
    else:
        require(reduce != "rollout", "model.attention.reduce",
                 "rollout follows the residual path of the transformer; allowed for multihead: received, last_layer")
