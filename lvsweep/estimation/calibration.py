"""Simulation-based calibration (Talts et al. 2018): does the fit's posterior have the width it claims?

Draw a truth from the priors, simulate a data set from it with the observation design of a real
series (its times and states), fit, and record where the truth falls among the posterior draws.
Over many data sets, if sampler and model are right, the truth's rank among L draws is uniform on
0..L and every central q interval covers the truth in a share q of the data sets, each quantity
separately; a sampler that is too narrow piles ranks at both ends and under-covers.

The priors must be stated for every free quantity (the library's defaults centre the initial
states on the first observation, which SBC cannot do) and be those the fits use; truths whose
trajectory the solver cannot follow are drawn again, so the truths come from the priors given a
solvable orbit.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from lvsweep.estimation.fit import FitSettings, fit
from lvsweep.estimation.model import Model
from lvsweep.estimation.observed import ObservedSeries
from lvsweep.systems import DynamicalSystem

LEVELS = (0.5, 0.8, 0.95)
# Lighter than the defaults (chains of 20 τ, not 50) to make many fits affordable; at these
# settings the posterior sd on lynx-hare agrees with the defaults'.
SBC_SETTINGS = FitSettings(burn=100, min_steps=400, max_steps=700, min_tau_multiple=20.0)
RANK_DRAWS = 100  # L: draws the truth is ranked among, taken far apart in the chain


@dataclass(frozen=True)
class Calibration:
    """names [n]; ranks [N, n] in 0..RANK_DRAWS; covered {level: [N, n] bool}."""
    names: tuple[str, ...]
    ranks: np.ndarray
    covered: dict[float, np.ndarray]

    @property
    def n_sets(self) -> int:
        return int(self.ranks.shape[0])

    def coverage(self) -> dict[float, np.ndarray]:
        return {level: c.mean(axis=0) for level, c in self.covered.items()}

    def bounds(self, level: float, confidence: float = 0.95) -> tuple[int, int]:
        """The counts of covering intervals a calibrated fit gives with probability `confidence`."""
        low, high = stats.binom.interval(confidence, self.n_sets, level)
        return int(low), int(high)

    def rank_pvalues(self, bins: int = 5) -> np.ndarray:
        """Chi-square test of uniform ranks in `bins` equal bins, per quantity: [n]."""
        edges = np.linspace(0, RANK_DRAWS + 1, bins + 1)
        counts = np.stack([np.histogram(self.ranks[:, j], edges)[0] for j in range(len(self.names))])
        return stats.chisquare(counts, axis=1).pvalue

    def table(self) -> str:
        """One line per quantity: intervals covering the truth at each level (of N), and the
        p-value of uniform ranks; the header gives each level's 95 % binomial range."""
        head = "   ".join(f"{int(100 * q)} % {self.bounds(q)[0]}-{self.bounds(q)[1]}" for q in LEVELS)
        lines = [f"{'':>15}  covered of {self.n_sets} ({head})   ranks uniform: p"]
        pvals = self.rank_pvalues()
        for j, name in enumerate(self.names):
            counts = "   ".join(f"{int(100 * q)} % {int(self.covered[q][:, j].sum()):>5d}" for q in LEVELS)
            lines.append(f"{name:>15}  {counts}   {pvals[j]:.3f}")
        return "\n".join(lines)


# The lynx-hare scale (the case study's estimates) with a log-sd of 0.25 for every quantity:
# priors whose draws give cycles like the data's, for calibrating the sampler on that design.
LYNX_HARE_SCALE = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024, "x0_prey": 33.0, "x0_predator": 6.0,
                   "sigma_prey": 0.25, "sigma_predator": 0.25}


def lynx_hare_scale_priors(log_sd: float = 0.25) -> dict[str, dict[str, Any]]:
    return {n: {"kind": "lognormal", "median": v, "sigma": log_sd} for n, v in LYNX_HARE_SCALE.items()}


PLAUSIBLE_FACTOR = 10.0  # a prior orbit is plausible within this factor of the observed range of each state


def prior_plausible_share(model: Model, rng: np.random.Generator, n: int = 200,
                          factor: float = PLAUSIBLE_FACTOR) -> float:
    """A prior predictive check: the share of `n` draws from the priors (fixed quantities at their
    values) whose orbit solves and stays, at every observation time, within `factor` of each
    state's observed range [min / factor, max × factor]. Low shares mean priors much wider than
    the data's dynamics (a tenth of a percent of the hares, or cycles of two years)."""
    theta = np.stack([model.priors[name].sample(rng, n) for name in model.free], axis=1)
    model = dataclasses.replace(model, rtol=1e-4, atol=1e-6, solver="lsoda")  # ranges need no tight solves
    inside = np.all(np.abs(theta) < 25.0, axis=1)
    x, ok = model.trajectories(theta[inside])
    y = model.series.y
    with np.errstate(invalid="ignore"):
        within = np.all((x >= y.min(axis=0) / factor) & (x <= y.max(axis=0) * factor), axis=(1, 2))
    return float((ok & within).sum() / n)


def simulate(model: Model, theta: np.ndarray, rng: np.random.Generator) -> ObservedSeries:
    """A data set from truth θ [n] with the model's design: y = x(t) exp(σ z), z standard normal."""
    x, ok = model.trajectories(theta[None])
    if not ok[0]:
        raise ValueError("the truth's trajectory failed")
    sigma = np.array([model.values(theta)[f"sigma_{s}"][0] for s in model.system.state_names])
    y = x[0] * np.exp(sigma * rng.standard_normal(x[0].shape))
    return ObservedSeries(t=model.series.t, y=y, names=model.series.names, source="simulated from the prior")


def draw_truth(model: Model, rng: np.random.Generator, tries: int = 1000) -> np.ndarray:
    """θ [n] from the priors, redrawn until its orbit solves and stays positive."""
    for _ in range(tries):
        theta = np.array([model.priors[n].sample(rng, 1)[0] for n in model.free])
        _, ok = model.trajectories(theta[None])
        if ok[0]:
            return theta
    raise RuntimeError(f"no solvable orbit in {tries} draws from the priors")


def far_apart(chain_draws: np.ndarray, walkers: int, k: int = RANK_DRAWS) -> np.ndarray:
    """k draws [k, n] from a flat chain [steps × walkers, n]: four steps spread over the chain, a
    share of the walkers at each (walkers are nearly independent of each other at one step)."""
    chain = chain_draws.reshape(-1, walkers, chain_draws.shape[1])
    steps = chain.shape[0]
    per_step = -(-k // 4)
    picks = [chain[(2 * i + 1) * steps // 8, :per_step] for i in range(4)]
    return np.concatenate(picks)[:k]


def calibrate(system: DynamicalSystem, design: ObservedSeries, priors: Mapping[str, Mapping[str, Any]],
              n_sets: int, seed: int = 0, free: Sequence[str] | None = None,
              settings: FitSettings = FitSettings()) -> Calibration:
    """SBC over `n_sets` data sets with `design`'s times and states, truths from `priors` (a spec
    for every free quantity), each fitted as `fit` does."""
    model = Model.build(system, design, free, priors)
    missing = [n for n in model.free if n not in priors]
    if missing:
        raise ValueError(f"SBC needs a stated prior for every free quantity; missing: {', '.join(missing)}")
    rng = np.random.default_rng([seed, 7])
    ranks = np.zeros((n_sets, model.ndim), dtype=int)
    covered = {q: np.zeros((n_sets, model.ndim), dtype=bool) for q in LEVELS}
    for k in range(n_sets):
        truth = draw_truth(model, rng)
        data = simulate(model, truth, rng)
        result = fit(system, data, model.free, priors, seed=seed * 100_003 + k, settings=settings)
        ranks[k] = (far_apart(result.chain.draws, result.chain.walkers) < truth[None]).sum(axis=0)
        for q in LEVELS:
            low, high = np.quantile(result.chain.draws, [(1 - q) / 2, (1 + q) / 2], axis=0)
            covered[q][k] = (low <= truth) & (truth <= high)
    return Calibration(names=model.free, ranks=ranks, covered=covered)
