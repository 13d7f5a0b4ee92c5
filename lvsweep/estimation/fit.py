"""The entry point: fit a system to an observed series, point estimate then posterior."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lvsweep.estimation.model import Model
from lvsweep.estimation.observed import ObservedSeries
from lvsweep.estimation.point import find_mode, laplace_covariance
from lvsweep.estimation.result import EstimationResult
from lvsweep.estimation.sampler import sample
from lvsweep.systems import DynamicalSystem


@dataclass(frozen=True)
class FitSettings:
    """Numerical settings (to be exposed in YAML later). Defaults measured on lynx-hare: they converge
    (≥ 50 τ kept steps) in about 1300 kept steps with τ ≈ 22-25."""
    walkers: int = 32
    burn: int = 200
    min_steps: int = 400
    max_steps: int = 2500
    chunk: int = 100
    min_tau_multiple: float = 50.0
    ball: float = 0.1
    n_starts: int = 2
    rtol: float = 1e-6          # point estimate and predictions (DOP853, lvsweep.simulate.integrate)
    atol: float = 1e-8
    sample_rtol: float = 1e-5   # sampler (LSODA); 6e-5 in log x at most, against σ ≈ 0.2
    sample_atol: float = 1e-6
    sample_solver: str = "lsoda"


def fit(system: DynamicalSystem, series: ObservedSeries, free: Optional[Sequence[str]] = None,
        priors: Optional[Mapping[str, Mapping[str, Any]]] = None, fixed: Optional[Mapping[str, float]] = None,
        seed: int = 0, settings: FitSettings = FitSettings()) -> EstimationResult:
    """Fit `system` to `series` (y [T, d] in the system's state order): the posterior mode from several
    starts, then emcee draws around it. Everything random derives from `seed`, so two calls with the
    same arguments return identical numbers. See Model.build for `free`, `priors`, `fixed`."""
    rng = np.random.default_rng(seed)
    model = Model.build(system, series, free, priors, fixed, settings.rtol, settings.atol)
    t0 = time.perf_counter()
    point = find_mode(model, rng, n_starts=settings.n_starts)
    cov = laplace_covariance(model, point.theta)
    t1 = time.perf_counter()
    sampling = dataclasses.replace(model, rtol=settings.sample_rtol, atol=settings.sample_atol,
                                   solver=settings.sample_solver)
    chain = sample(sampling, point.theta, rng, walkers=settings.walkers, burn=settings.burn, chunk=settings.chunk,
                   min_steps=settings.min_steps, max_steps=settings.max_steps,
                   min_tau_multiple=settings.min_tau_multiple, ball=settings.ball, cov=cov)
    t2 = time.perf_counter()
    return EstimationResult(model=model, point=point, chain=chain, draws=np.exp(chain.draws),
                            seconds={"point": t1 - t0, "sample": t2 - t1})
