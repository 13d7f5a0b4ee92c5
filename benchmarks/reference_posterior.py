"""lvsweep's posterior intervals against an independent sampler of the same model.

    PYTHONPATH=. python -m benchmarks.reference_posterior [--experiment lynx_hare] [--chains 64] [--steps 20000]

The reference is random-walk Metropolis on the same log posterior (same ODE solver and tolerances), written here in a dozen lines so that it shares nothing
with emcee's moves: `--chains` independent chains (evaluated as one batch of ODE solves), a
Gaussian proposal of 2.38²/n times the Laplace covariance, half the run discarded as burn-in.
It prints the split R-hat and ESS of every quantity, then each 80 % interval from lvsweep's fit
and from the reference, and the ratio of their widths.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import emcee
import numpy as np

from lvsweep.app import compose_config
from lvsweep.estimation import fit
from lvsweep.estimation.configured import fit_settings, free_quantities, observed_series, priors
from lvsweep.estimation.model import Model
from lvsweep.estimation.point import laplace_covariance
from lvsweep.systems import make_system


def random_walk_metropolis(model: Model, start: np.ndarray, cov: np.ndarray, steps: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Chains [steps, C, n] from starts [C, n], and the mean acceptance rate."""
    chol = np.linalg.cholesky(cov * 2.38 ** 2 / start.shape[1])
    x, lp = start.copy(), model.log_posterior(start)
    out = np.empty((steps, *start.shape))
    accepted = 0.0
    for i in range(steps):
        proposal = x + rng.standard_normal(x.shape) @ chol.T
        lp_new = model.log_posterior(proposal)
        take = np.log(rng.uniform(size=len(x))) < lp_new - lp
        x[take], lp[take] = proposal[take], lp_new[take]
        accepted += take.mean()
        out[i] = x
    return out, accepted / steps


def split_rhat(chains: np.ndarray) -> np.ndarray:
    """Gelman-Rubin R-hat over the halves of every chain: [n] from chains [S, C, n]."""
    half = chains.shape[0] // 2
    parts = np.concatenate([chains[:half], chains[half:2 * half]], axis=1)
    within = parts.var(axis=0, ddof=1).mean(axis=0)
    between = half * parts.mean(axis=0).var(axis=0, ddof=1)
    return np.sqrt(((half - 1) / half * within + between / half) / within)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="lynx_hare")
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20000, help="kept steps per chain (as many again are burn-in)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cfg = compose_config(f"experiment={args.experiment}")
    system = make_system(cfg.system)
    series = observed_series(cfg, system)
    free, spec = free_quantities(cfg, system), priors(cfg)
    t0 = time.perf_counter()
    ours = fit(system, series, free, spec, seed=args.seed, settings=fit_settings(cfg))
    print(f"lvsweep: {len(ours.draws)} draws in {time.perf_counter() - t0:.0f} s; ESS min {ours.chain.ess.min():.0f}, "
          f"tau max {ours.chain.tau.max():.1f}, acceptance {ours.chain.acceptance:.3f}")

    settings = fit_settings(cfg)  # the model as lvsweep's sampler evaluates it (its solver and tolerances)
    model = dataclasses.replace(ours.model, rtol=settings.sample_rtol, atol=settings.sample_atol,
                                solver=settings.sample_solver)
    rng = np.random.default_rng([args.seed, 1])
    cov = laplace_covariance(model, ours.point.theta)
    start = ours.point.theta[None] + rng.standard_normal((args.chains, len(free))) @ np.linalg.cholesky(cov).T
    t0 = time.perf_counter()
    chains, acceptance = random_walk_metropolis(model, start, cov, 2 * args.steps, rng)
    kept = chains[args.steps:]
    tau = emcee.autocorr.integrated_time(kept, quiet=True)
    print(f"reference: random-walk Metropolis, {args.chains} chains x {args.steps} kept steps (+ {args.steps} burn-in) "
          f"in {time.perf_counter() - t0:.0f} s; acceptance {acceptance:.3f}; "
          f"split R-hat max {split_rhat(kept).max():.4f}; ESS min {(args.chains * args.steps / tau).min():.0f}")
    draws = np.exp(kept.reshape(-1, len(free)))
    print(f"\n{'quantity':>15}  {'lvsweep 80 %':>22}  {'reference 80 %':>22}  width ratio")
    for j, name in enumerate(free):
        lo, hi = np.quantile(ours.draws[:, j], [0.1, 0.9])
        rlo, rhi = np.quantile(draws[:, j], [0.1, 0.9])
        print(f"{name:>15}  [{lo:9.4g}, {hi:9.4g}]  [{rlo:9.4g}, {rhi:9.4g}]  {(hi - lo) / (rhi - rlo):.3f}")


if __name__ == "__main__":
    main()
