"""Posterior draws with emcee's affine-invariant ensemble sampler, and their diagnostics.

Why emcee: it is mature and widely used; it needs no gradients, which matters because ours would
come from finite differences through an ODE solve; it has essentially one knob (the number of
walkers); and its stretch move is invariant under affine maps, so the strong linear correlations of
an ODE posterior (here: β with δ, x0 with the rates; in θ = log(value) the posterior is close to
Gaussian) cost it nothing. For the ~8-10 parameters of these fits that is the regime it handles
well. We use its differential-evolution move (`DEMove`) rather than the default stretch move,
which mixed about half as fast on lynx-hare; τmax is 28 steps there with `DEMove` alone.
No snooker move: emcee 3.1.6's `DESnookerMove` scales its direction by `delta / sqrt(norm)`
where ter Braak & Vrugt (2008) use a unit vector, and its Metropolis factor is half theirs, so
it samples a narrower distribution than the target (80 % intervals 9-14 % too narrow on an 8-D
Gaussian at the scale of these fits' log-parameters; tests/test_sampler.py checks the quantiles
of known posteriors at several scales). emcee evaluates half the ensemble at once (`vectorize=True`), which we turn into one batched
ODE solve per half-step (see trajectories.py): 32 walkers cost about what one does.

Walkers start in a small ball around the point estimate: Gaussian with `ball` times the Laplace
covariance (inverse Hessian, one batched solve) where that is positive definite, else isotropic
with sd `ball`/10 in θ; shaping the ball shortens the burn-in. A burn-in is
discarded, and the chain is extended in chunks until its length after burn-in is at least
`min_tau_multiple` × the largest integrated autocorrelation time (emcee's advice: 50 τ before τ
itself is trustworthy) or `max_steps` is reached. Randomness comes from a numpy RandomState seeded
from the caller's generator and handed to the sampler (never the global numpy state), so a seed
fixes every draw.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import logging

import emcee
import numpy as np

from lvsweep.estimation.model import Model

ACCEPTANCE_RANGE = (0.15, 0.7)


def _tau(sampler: emcee.EnsembleSampler) -> np.ndarray:
    """τ [n] per parameter; emcee logs a warning for every short chain, which is what the stopping
    rule is for, so its logger is quietened for the call."""
    log = logging.getLogger("emcee.autocorr")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return sampler.get_autocorr_time(quiet=True)
    finally:
        log.setLevel(level)


@dataclass(frozen=True)
class Chain:
    """draws [S, n] (θ after burn-in, walkers × steps flattened), log_post [S], and diagnostics:
    acceptance (mean over walkers), tau [n] (integrated autocorrelation time, steps), ess [n]
    (walkers × kept steps / τ), steps (kept per walker), burn (discarded per walker), converged."""
    draws: np.ndarray
    log_post: np.ndarray
    acceptance: float
    tau: np.ndarray
    ess: np.ndarray
    steps: int
    burn: int
    walkers: int
    converged: bool


class Stoppable:
    """The log-posterior as emcee calls it, with Ctrl-C and SIGTERM held back. emcee meets any
    exception out of it, a stop included, by printing a traceback and every walker's parameters;
    here the stop is kept, the step's remaining proposals are refused, and `run` raises it once
    the step is over. The chain it leaves is never used: the stop ends the run."""

    def __init__(self, log_posterior: Callable[[np.ndarray], np.ndarray]) -> None:
        self.log_posterior = log_posterior
        self.stop: Optional[KeyboardInterrupt] = None

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        if self.stop is None:
            try:
                return self.log_posterior(theta)
            except KeyboardInterrupt as exc:
                self.stop = exc
        return np.full(len(theta), -np.inf)

    def run(self, sampler: emcee.EnsembleSampler, state: emcee.State, steps: int) -> emcee.State:
        """`sampler.run_mcmc(state, steps)`, step by step, raising a stop held back meanwhile."""
        for state in sampler.sample(state, iterations=steps):
            if self.stop is not None:
                raise self.stop
        return state


def sample(model: Model, theta0: np.ndarray, rng: np.random.Generator, walkers: int = 32, burn: int = 200,
           chunk: int = 100, min_steps: int = 400, max_steps: int = 2500, min_tau_multiple: float = 50.0,
           ball: float = 0.1, cov: Optional[np.ndarray] = None) -> Chain:
    """Run the ensemble from a ball around θ0 [n] (shaped by `cov` [n, n] if given); see the module
    docstring for the stopping rule. `max_steps` counts burn-in."""
    n = theta0.size
    walkers = max(walkers, 2 * n + 2)
    walkers += walkers % 2
    shape = np.linalg.cholesky(cov) if cov is not None else np.eye(n) / 10

    def draw(k: int) -> np.ndarray:
        return theta0[None] + ball * rng.standard_normal((k, n)) @ shape.T

    start = draw(walkers)
    lp = model.log_posterior(start)
    for _ in range(100):  # redraw walkers that start where the model fails
        bad = ~np.isfinite(lp)
        if not bad.any():
            break
        start[bad] = draw(int(bad.sum()))
        lp[bad] = model.log_posterior(start[bad])
    moves = [(emcee.moves.DEMove(), 1.0)]
    log_posterior = Stoppable(model.log_posterior)
    sampler = emcee.EnsembleSampler(walkers, n, log_posterior, vectorize=True, moves=moves)
    sampler.random_state = np.random.RandomState(rng.integers(2**32)).get_state()
    state = log_posterior.run(sampler, emcee.State(start, log_prob=lp), burn)
    sampler.reset()  # keeps the sampler's random state; the chain restarts after burn-in
    tau = np.full(n, np.inf)
    while sampler.iteration < max_steps - burn:
        state = log_posterior.run(sampler, state, min(chunk if sampler.iteration >= min_steps else min_steps,
                                                      max_steps - burn - sampler.iteration))
        tau = _tau(sampler)
        if sampler.iteration >= min_tau_multiple * np.max(tau):
            break
    steps = sampler.iteration
    acceptance = float(np.mean(sampler.acceptance_fraction))
    ess = walkers * steps / tau
    converged = bool(steps >= min_tau_multiple * np.max(tau)
                     and ACCEPTANCE_RANGE[0] <= acceptance <= ACCEPTANCE_RANGE[1])
    return Chain(draws=sampler.get_chain(flat=True), log_post=sampler.get_log_prob(flat=True),
                 acceptance=acceptance, tau=tau, ess=ess, steps=steps, burn=burn, walkers=walkers, converged=converged)
