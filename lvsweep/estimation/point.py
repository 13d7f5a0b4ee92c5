"""Point estimate: the posterior mode, found from several starts because ODE fits have local optima.

Trajectories that cycle at the wrong period or phase fit some points well and others badly, so the
log posterior of an oscillator has many modes, and starts drawn from weakly-informative priors
mostly end in a wrong one (measured on lynx-hare: 6 of 6 prior draws ended at σ ≈ 0.6-0.7).
So starts come from gradient matching: the system parameters that make f(y)/y closest to the
observed log-slopes (log y_{i+1} - log y_i)/Δt at interval midpoints, a fit without ODE solves and
with a broad basin (for Lotka-Volterra a linear regression: every start reaches the same optimum),
from the prior centre and from `n_matched` prior draws, with x0 = the first observation. A few
plain prior draws (`n_drawn`) complete the candidates; all are scored in one batched solve.

From each of the `n_starts` best candidates: the mode is found by alternating (a) a trust-region
least-squares fit (scipy's TRF) of the parameters and initial states with σ held, on residuals
(log y - log x)/σ_s plus one residual per prior (signed sqrt of -2 log prior, = z for a log-normal),
and (b) each σ at its exact conditional mode (a 1-D minimisation), until the log posterior stops
rising. Trust regions matter here: a quasi-Newton line search on this surface stepped to extreme
rates whose stiff solves cost seconds each. Jacobians are central differences in θ = log(value)
with all 2n + 1 rows integrated as one batch, sharing one step sequence, so the differences are free
of step-size jitter (steps 1e-3 ... 1e-6 agree to 3 digits). A seeded generator fixes the result.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.optimize import least_squares, minimize, minimize_scalar

from lvsweep.estimation.model import Model
from lvsweep.estimation.trajectories import with_params

FD_STEP = 1e-5
BAD = 1e3  # residual of a row whose trajectory failed: large, finite, so a trust region shrinks


@dataclass(frozen=True)
class PointEstimate:
    """theta [n]: the best optimum in log space; log_post: its log posterior; optima [n_starts]:
    each start's final log posterior (their spread shows how multimodal the fit is)."""
    theta: np.ndarray
    log_post: float
    optima: np.ndarray


def central_jacobian(fn, theta: np.ndarray, cols: np.ndarray, step: float = FD_STEP) -> np.ndarray:
    """d fn / d θ[cols] as [M, len(cols)] from ONE batched call of fn on [2c + 1, n] rows (fn: [k, n] -> [k, M])."""
    c = len(cols)
    rows = np.repeat(theta[None], 2 * c + 1, axis=0)
    rows[1 + np.arange(c), cols] += step
    rows[1 + c + np.arange(c), cols] -= step
    f = fn(rows)
    return ((f[1:c + 1] - f[c + 1:]) / (2 * step)).T


def gradient_matching(model: Model, theta0: np.ndarray) -> np.ndarray:
    """θ [n] with the free system parameters moved to the gradient-matching optimum from θ0 [n]."""
    cols = [j for j, n in enumerate(model.free) if n in model.system.param_names]
    if not cols:
        return theta0
    log_y = np.log(model.series.y)
    slope = np.diff(log_y, axis=0) / np.diff(model.series.t)[:, None]  # [T-1, d]
    mid = np.exp(0.5 * (log_y[1:] + log_y[:-1]))                     # [T-1, d]
    fixed = {n: v for n, v in model.fixed.items() if n in model.system.param_names}

    def loss(th: np.ndarray) -> float:
        values = {**fixed, **{model.free[j]: float(np.exp(v)) for j, v in zip(cols, th)}}
        with np.errstate(all="ignore"):
            r = slope - with_params(model.system, values).rhs(mid) / mid
        value = float(np.sum(r * r))
        return value if np.isfinite(value) else 1e30

    res = minimize(loss, theta0[cols], method="Nelder-Mead",
                   options={"maxiter": 400 * len(cols), "xatol": 1e-6, "fatol": 1e-10})
    theta = theta0.copy()
    theta[cols] = res.x
    return theta


def _sigma_cols(model: Model) -> dict[int, int]:
    """{column of a free sigma in θ: index of its state}."""
    return {model.free.index(f"sigma_{s}"): i for i, s in enumerate(model.system.state_names)
            if f"sigma_{s}" in model.free}


def _update_sigmas(model: Model, theta: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """θ [k, n] with every free σ at its conditional mode given each row's trajectory."""
    x, ok = model.trajectories(theta)
    theta = theta.copy()
    w = np.ones(model.series.n_times) if weights is None else weights
    with np.errstate(all="ignore"):
        ss = np.einsum("t,ktd->kd", w, (np.log(model.series.y)[None] - np.log(x)) ** 2)  # [k, d]
    n_eff = w.sum()
    for j, i in _sigma_cols(model).items():
        prior = model.priors[model.free[j]]
        lo, hi = prior.bounds()
        for r in np.flatnonzero(ok):
            res = minimize_scalar(lambda u: n_eff * u + 0.5 * ss[r, i] * np.exp(-2 * u) - prior.logpdf(u),
                                  bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
            theta[r, j] = res.x
    return theta


def refine(model: Model, theta: np.ndarray, max_rounds: int = 8, tol: float = 1e-7) -> tuple[np.ndarray, float]:
    """The posterior mode reached from θ [n] by alternating TRF least squares and σ updates (see module doc)."""
    sig = _sigma_cols(model)
    cols = np.array([j for j in range(model.ndim) if j not in sig], dtype=int)
    bounds = np.array([model.priors[model.free[j]].bounds() for j in cols]).T
    theta = _update_sigmas(model, theta[None])[0]
    last = model.log_posterior(theta)[0]
    for _ in range(max_rounds):
        def full(inner: np.ndarray) -> np.ndarray:
            rows = np.repeat(theta[None], inner.shape[0], axis=0)
            rows[:, cols] = inner
            return model.residuals(rows, cols)

        def fun(u: np.ndarray) -> np.ndarray:
            return full(u[None])[0]

        def jac(u: np.ndarray) -> np.ndarray:
            row = theta.copy()
            row[cols] = u
            return central_jacobian(lambda rows: model.residuals(rows, cols), row, cols)

        if cols.size:
            res = least_squares(fun, np.clip(theta[cols], *bounds), jac=jac, bounds=bounds, method="trf",
                                x_scale=1.0, xtol=1e-10, ftol=1e-10, max_nfev=200)
            theta = theta.copy()
            theta[cols] = res.x
        theta = _update_sigmas(model, theta[None])[0]
        now = model.log_posterior(theta)[0]
        if not np.isfinite(now) or now - last < tol * (1 + abs(now)):
            last = max(now, last) if np.isfinite(now) else last
            break
        last = now
    return theta, float(last)


def find_mode(model: Model, rng: np.random.Generator, n_starts: int = 2, n_matched: int = 8,
              n_drawn: int = 8) -> PointEstimate:
    """The maximum a posteriori θ [n], best of `n_starts` refined candidates (see module docstring)."""
    priors = [model.priors[n] for n in model.free]
    centre = np.array([p.center() for p in priors])
    for j, n in enumerate(model.free):  # initial states start at the first observation
        if n.startswith("x0_"):
            centre[j] = np.log(model.series.y[0, model.system.state_names.index(n[3:])])
    drawn = np.column_stack([p.sample(rng, n_drawn + n_matched) for p in priors])
    is_param = np.array([n in model.system.param_names for n in model.free])
    matched = [gradient_matching(model, np.where(is_param, row, centre))
               for row in np.vstack([centre, drawn[:n_matched]])]
    candidates = _update_sigmas(model, np.vstack([matched, drawn[n_matched:]]))
    scores = model.log_posterior(candidates)
    order = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")[:n_starts]
    best, optima = None, []
    for i in order:
        theta, lp = refine(model, candidates[i])
        optima.append(lp)
        if best is None or lp > best[1]:
            best = (theta, lp)
    return PointEstimate(theta=best[0], log_post=best[1], optima=np.array(optima))


def laplace_covariance(model: Model, theta: np.ndarray, step: float = 1e-3) -> Optional[np.ndarray]:
    """The inverse Hessian of -log posterior at θ [n] ([n, n]), or None where it is not positive definite.

    All 2n² + 1 finite-difference points (θ, θ ± h e_i ± h e_j, θ ± 2h e_i) go through one batched
    solve. Used to shape the sampler's starting ball, not as the posterior itself."""
    n = theta.size
    e = np.eye(n) * step
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    rows = [theta] + [theta + 2 * s * e[i] for i in range(n) for s in (1, -1)]
    rows += [theta + si * e[i] + sj * e[j] for i, j in pairs for si in (1, -1) for sj in (1, -1)]
    f = -model.log_posterior(np.array(rows))
    if not np.all(np.isfinite(f)):
        return None
    h = np.empty((n, n))
    for i in range(n):
        h[i, i] = (f[1 + 2 * i] + f[2 + 2 * i] - 2 * f[0]) / (4 * step * step)
    for k, (i, j) in enumerate(pairs):
        pp, pm, mp, mm = f[1 + 2 * n + 4 * k: 5 + 2 * n + 4 * k]
        h[i, j] = h[j, i] = (pp - pm - mp + mm) / (4 * step * step)
    try:
        np.linalg.cholesky(h)
        return np.linalg.inv(h)
    except np.linalg.LinAlgError:
        return None
