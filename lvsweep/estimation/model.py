"""The statistical model: an ODE trajectory from a free initial state, seen through log-normal noise.

    x(t) = solution of x' = f(x; params) with x(t_0) = x0,   t_0 = the first observation time
    y_obs[t, s] ~ LogNormal(log x[t, s], sigma_s)            one sigma per state

Log-normal noise suits counts such as pelts: errors scale with the level and values stay positive.
Quantities are named `<param>` (a system parameter), `x0_<state>`, `sigma_<state>`; any subset may
be free, the rest are held at fixed values. The free ones are sampled as θ = log(value).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.estimation.observed import ObservedSeries
from lvsweep.estimation.priors import Prior, default_prior_specs, resolve_priors
from lvsweep.estimation.trajectories import solve_batch
from lvsweep.systems import DynamicalSystem

THETA_LIMIT = 25.0  # |log value| beyond this is outside any sensible model: probability 0


def quantity_names(system: DynamicalSystem) -> tuple[str, ...]:
    """Every quantity that can be free: params, then x0_<state>, then sigma_<state>."""
    return (*system.param_names, *(f"x0_{s}" for s in system.state_names),
            *(f"sigma_{s}" for s in system.state_names))


@dataclass
class Model:
    """A log posterior over the free quantities of `system` given `series`, evaluated in batches.

    `free`: names of the free quantities (order = column order of θ); `fixed`: values of all others.
    """
    system: DynamicalSystem
    series: ObservedSeries
    free: tuple[str, ...]
    fixed: dict[str, float]
    priors: dict[str, Prior]
    rtol: float = 1e-6
    atol: float = 1e-8
    solver: str = "dop853"  # "lsoda" for the sampler: see trajectories.py

    @classmethod
    def build(cls, system: DynamicalSystem, series: ObservedSeries, free: Optional[Sequence[str]] = None,
              priors: Optional[Mapping[str, Mapping[str, Any]]] = None, fixed: Optional[Mapping[str, float]] = None,
              rtol: float = 1e-6, atol: float = 1e-8) -> "Model":
        """Check names and data against the system and resolve priors and fixed values.

        Defaults: everything free; fixed params at the system's values, fixed x0 at the first
        observation; a fixed sigma needs a value in `fixed`.
        """
        names = quantity_names(system)
        free = tuple(names if free is None else free)
        for n in free:
            if n not in names:
                raise LvsweepError("estimation.free", f"{n!r} is not a quantity of {system.name}; "
                                                      f"allowed: {', '.join(names)}")
        if len(set(free)) != len(free) or not free:
            raise LvsweepError("estimation.free", f"needs distinct names, at least one; got {list(free)}")
        if series.dim != system.dim:
            raise LvsweepError("data.states", f"{series.source}: {series.dim} state columns "
                                              f"({', '.join(series.names)}) but {system.name} has {system.dim} "
                                              f"states ({', '.join(system.state_names)})")
        if np.any(series.y <= 0):
            raise LvsweepError("data.values", f"{series.source}: values must be > 0 for the log-normal model")
        if series.n_times < len(free):
            raise LvsweepError("data.rows", f"{series.source}: {series.n_times} rows, fewer than the "
                                            f"{len(free)} free parameters")
        values = {**system.params, **{f"x0_{s}": float(v) for s, v in zip(system.state_names, series.y[0])},
                  **dict(fixed or {})}
        for n in names:
            if n not in free and n not in values:
                raise LvsweepError("estimation.fixed", f"{n} is not free and has no fixed value")
            if n in values and not (np.isfinite(values[n]) and values[n] > 0):
                raise LvsweepError("estimation.fixed", f"{n} = {values[n]} must be > 0")
        specs = default_prior_specs(system.name, system.params, system.state_names, series.y[0])
        return cls(system, series, free, {n: float(values[n]) for n in names if n not in free},
                   resolve_priors(specs, priors, free), rtol, atol)

    @property
    def ndim(self) -> int:
        return len(self.free)

    def values(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Every quantity, as an array [k], for θ [k, n] (free ones exp(θ), fixed ones repeated)."""
        theta = np.atleast_2d(theta)
        k = theta.shape[0]
        out = {n: np.full(k, v) for n, v in self.fixed.items()}
        out.update({n: np.exp(theta[:, j]) for j, n in enumerate(self.free)})
        return out

    def trajectories(self, theta: np.ndarray, t: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """x [k, T, d] at times t (default: the observation times; t[0] must be the first one) and ok [k]."""
        v = self.values(theta)
        t = self.series.t if t is None else t
        x0 = np.stack([v[f"x0_{s}"] for s in self.system.state_names], axis=-1)
        params = np.stack([v[n] for n in self.system.param_names], axis=-1)
        return solve_batch(self.system, self.system.param_names, params, x0, t, self.rtol, self.atol,
                           solver=self.solver)

    def log_prior(self, theta: np.ndarray) -> np.ndarray:
        """log p(θ) [k] for θ [k, n]."""
        theta = np.atleast_2d(theta)
        return sum(self.priors[n].logpdf(theta[:, j]) for j, n in enumerate(self.free))

    def log_likelihood(self, theta: np.ndarray, x: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
        """log p(y | θ) [k] given trajectories x [k, T, d]; `weights` [T] scales each time's term."""
        v = self.values(theta)
        sigma = np.stack([v[f"sigma_{s}"] for s in self.system.state_names], axis=-1)[:, None, :]  # [k, 1, d]
        log_y = np.log(self.series.y)[None]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (log_y - np.log(x)) / sigma
            terms = -0.5 * r * r - np.log(sigma) - log_y - 0.5 * math.log(2 * math.pi)
        w = np.ones(self.series.n_times) if weights is None else weights
        ll = np.einsum("t,ktd->k", w, terms)
        return np.where(np.isfinite(ll), ll, -np.inf)

    def log_posterior(self, theta: np.ndarray) -> np.ndarray:
        """log p(θ | y) up to a constant, [k] for θ [k, n]; -inf where a trajectory fails or leaves x > 0."""
        theta = np.atleast_2d(np.asarray(theta, dtype=float))
        out = np.full(theta.shape[0], -np.inf)
        inside = np.all(np.isfinite(theta) & (np.abs(theta) < THETA_LIMIT), axis=1)
        if not inside.any():
            return out
        th = theta[inside]
        x, ok = self.trajectories(th)
        lp = self.log_prior(th) + self.log_likelihood(th, x)
        out[inside] = np.where(ok & np.isfinite(lp), lp, -np.inf)
        return out

    def theta_of(self, values: Mapping[str, float]) -> np.ndarray:
        """θ [n] for named values of the free quantities."""
        return np.log(np.array([float(values[n]) for n in self.free]))

    def residuals(self, theta: np.ndarray, cols: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
        """Least-squares residuals [k, T·d + len(cols)] whose half sum of squares is -log posterior up to
        terms constant in θ[:, cols] (σ held): data (log y - log x)/σ_s times sqrt(weight_t), then one
        per prior of θ[:, cols], signed sqrt(2 (log p(mode) - log p(θ))). Failed rows are BAD everywhere."""
        theta = np.atleast_2d(theta)
        v = self.values(theta)
        sigma = np.stack([v[f"sigma_{s}"] for s in self.system.state_names], axis=-1)[:, None, :]
        x, ok = self.trajectories(theta)
        w = np.ones(self.series.n_times) if weights is None else weights
        with np.errstate(all="ignore"):
            data = (np.log(self.series.y)[None] - np.log(x)) / sigma * np.sqrt(w)[None, :, None]
        prior = [self.priors[self.free[j]].residual(theta[:, j]) for j in cols]
        out = np.concatenate([data.reshape(theta.shape[0], -1), np.array(prior).T.reshape(theta.shape[0], -1)], axis=1)
        out[~ok] = 1e3
        return np.where(np.isfinite(out), out, 1e3)
