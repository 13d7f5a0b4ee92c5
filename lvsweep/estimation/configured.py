"""The estimation library driven by the run config: which series (`data`), which quantities are
free and under which priors and sampler settings (`estimate`). Used by validation (before the run
opens, so bad data costs nothing and is recorded nowhere) and by the pipeline."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.estimation.fit import FitSettings
from lvsweep.estimation.model import quantity_names
from lvsweep.estimation.observed import ObservedSeries, load_series, lynx_hare
from lvsweep.systems import DynamicalSystem

# Times count as evenly spaced when every step is within this fraction of the first one: the
# stability analysis (FTLE, Lyapunov exponents) integrates one fixed step between observations.
SPACING_RTOL = 1e-6


def source(cfg: Any) -> str:
    value = cfg.data.source
    return str(getattr(value, "value", value))


def is_observed(cfg: Any) -> bool:
    return source(cfg) != "simulated"


def free_quantities(cfg: Any, system: DynamicalSystem) -> tuple[str, ...]:
    """The free quantities of the fit: `estimate.params`, or every quantity when it is null."""
    names = quantity_names(system)
    free = tuple(names if cfg.estimate.params is None else cfg.estimate.params)
    for n in free:
        if n not in names:
            raise LvsweepError("estimate.params", f"{n!r} is not a quantity of {system.name}; allowed: {', '.join(names)}")
    if not free or len(set(free)) != len(free):
        raise LvsweepError("estimate.params", f"needs distinct names, at least one; got {list(free)}")
    # A fixed quantity takes the system's value (x0: the first observation); the noise levels have
    # none in the config, so they are always fitted.
    noise = [f"sigma_{s}" for s in system.state_names if f"sigma_{s}" not in free]
    if noise:
        raise LvsweepError("estimate.params", f"must include {', '.join(noise)}: the measurement noise has no "
                                              f"configured value to hold it at; got {list(free)}")
    return free


def observed_series(cfg: Any, system: DynamicalSystem) -> ObservedSeries:
    """The observed series the config names, checked: one line naming file, row and column when bad."""
    if source(cfg) == "lynx_hare":
        series = lynx_hare()
        if system.dim != series.dim:
            raise LvsweepError("data", f"lynx_hare has 2 series (Hare, Lynx) but {system.name} has {system.dim} states")
    else:
        if not cfg.data.path:
            raise LvsweepError("data.path", "data=csv needs a file: data.path=<file.csv>")
        states = list(cfg.data.states) if cfg.data.states is not None else list(system.state_names)
        series = load_series(cfg.data.path, str(cfg.data.time), states, len(free_quantities(cfg, system)),
                             n_states=system.dim)
    steps = np.diff(series.t)
    bad = np.flatnonzero(np.abs(steps - steps[0]) > SPACING_RTOL * steps[0])
    if bad.size:
        r = int(bad[0]) + 2  # 1-based data row of the later time
        raise LvsweepError("data.times", f"{series.source}: row {r}, column {cfg.data.time!r}: times must be evenly "
                                         f"spaced (step {steps[bad[0]]:g} here, {steps[0]:g} at the start)")
    return series


def fit_settings(cfg: Any) -> FitSettings:
    e = cfg.estimate
    return FitSettings(walkers=int(e.walkers), burn=int(e.burn), max_steps=int(e.burn) + int(e.steps),
                       min_steps=min(FitSettings.min_steps, int(e.steps)))


def priors(cfg: Any) -> Optional[dict[str, dict[str, Any]]]:
    p = cfg.estimate.priors
    if not p:
        return None
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(p) if OmegaConf.is_config(p) else dict(p)
    for name, spec in raw.items():
        if not isinstance(spec, dict):
            raise LvsweepError(f"estimate.priors.{name}", f"must be a mapping like {{kind: lognormal, median: 1, "
                                                          f"sigma: 1}}, got {spec!r}")
    return raw
