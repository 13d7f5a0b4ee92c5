"""Does attention help estimation? Weighted point fits of a system, and a study over weightings.

`fit_weighted` is weighted least squares on residuals scaled by each state's spread:
    minimise  Σ_t w_t Σ_s ((y_ts - x_s(t; θ)) / s_s)²,   s_s = std of the observed state s,
with w normalised to sum T (so every weighting spends the same total weight and only its shape
differs). Linear residuals, not log: the pipeline's noise is additive Gaussian (observations can be
≤ 0, where log residuals do not exist), and under Gaussian noise of per-state scale this is the
weighted likelihood. θ = log(value) keeps rates and initial states positive; the optimiser is
scipy's trust-region least squares with batched central-difference Jacobians, started at `start`
(in the study, the truth: the study measures the statistical error of each weighting, not how often
an optimiser finds the basin, and every weighting gets the same start).

`weighting_study` compares weightings on the same noisy data: uniform, attention, inverse
attention, the state-norm baseline (weight ∝ ‖x̃_t‖, what attention collapses onto in the paper's
model) and permuted attention. The permutation is the right control: it has exactly the attention's
values, hence the same unevenness and the same effective number of points (Σw)²/Σw², and differs
only in *which* times get them; attention beating its permutations means its timing carries
information, not merely that concentrating weight helps or hurts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

from lvsweep.errors import LvsweepError
from lvsweep.estimation.point import central_jacobian
from lvsweep.estimation.trajectories import solve_batch
from lvsweep.systems import DynamicalSystem

WEIGHTINGS = ("uniform", "attention", "inverse_attention", "state_norm", "permuted")


@dataclass(frozen=True)
class WeightedFit:
    """estimate: value of every free quantity; weights [T]: the normalised weights used (sum T);
    cost: the final weighted sum of squares / 2; success: the optimiser's own verdict."""
    estimate: dict[str, float]
    weights: np.ndarray
    cost: float
    success: bool


def normalise(weights: np.ndarray) -> np.ndarray:
    """weights [T] scaled to sum T; they must be finite, ≥ 0, and not all 0."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise LvsweepError("estimation.weights", "weights must be a 1-D array of finite values ≥ 0, not all 0")
    return w * (w.size / w.sum())


def fit_weighted(system: DynamicalSystem, t: np.ndarray, y: np.ndarray, weights: Optional[np.ndarray],
                 free_params: Sequence[str], start: Optional[Mapping[str, float]] = None,
                 rtol: float = 1e-8, atol: float = 1e-10) -> WeightedFit:
    """Weighted least-squares fit (module docstring) of `free_params` (system params and/or x0_<state>)
    to y [T, d] at times t [T]; weights [T] or None (uniform). `start`: values to start from and to hold
    the non-free quantities at (default: the system's params and x0 = y[0])."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    w = normalise(np.ones(len(t)) if weights is None else weights)
    if w.size != len(t) or y.shape != (len(t), system.dim):
        raise LvsweepError("estimation.weights", f"need t [T], y [T, {system.dim}], weights [T]; got "
                                                 f"{t.shape}, {y.shape}, {w.shape}")
    x0_names = [f"x0_{s}" for s in system.state_names]
    values = {**system.params, **dict(zip(x0_names, y[0])), **dict(start or {})}
    free = list(free_params)
    unknown = [n for n in free if n not in (*system.param_names, *x0_names)]
    if unknown or not free:
        raise LvsweepError("estimation.free", f"{unknown or free} is not a non-empty subset of "
                                              f"{', '.join((*system.param_names, *x0_names))}")
    scale = np.std(y, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    root_w = np.sqrt(w)[None, :, None]

    def residuals(theta: np.ndarray) -> np.ndarray:  # [k, n] -> [k, T·d]
        k = theta.shape[0]
        v = {n: np.full(k, float(values[n])) for n in (*system.param_names, *x0_names)}
        v.update({n: np.exp(theta[:, j]) for j, n in enumerate(free)})
        params = np.stack([v[n] for n in system.param_names], axis=-1)
        x, ok = solve_batch(system, system.param_names, params, np.stack([v[n] for n in x0_names], -1), t, rtol, atol)
        r = ((y[None] - x) / scale * root_w).reshape(k, -1)
        r[~ok] = 1e6
        return r

    theta0 = np.log([float(values[n]) for n in free])
    cols = np.arange(len(free))
    res = least_squares(lambda th: residuals(th[None])[0], theta0, method="trf",
                        jac=lambda th: central_jacobian(residuals, th, cols), xtol=1e-10, ftol=1e-10, max_nfev=100)
    return WeightedFit(estimate={n: float(np.exp(v)) for n, v in zip(free, res.x)}, weights=w,
                       cost=float(res.cost), success=bool(res.success))


@dataclass(frozen=True)
class WeightingStudy:
    """errors[w] [R]: mean relative error over the free params per replicate; param_errors[w] [R, p];
    weights[w] [R, T]: the normalised weights used (for 'permuted', the first permutation);
    free: the p free quantities."""
    free: tuple[str, ...]
    errors: dict[str, np.ndarray]
    param_errors: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]

    def metrics(self) -> dict[str, float]:
        """estimate/rel_error_<w>, estimate/rel_error_<w>_<param> (means over replicates) and
        estimate/attention_gain = error(uniform)/error(attention). With R > 1 replicates the gain is the
        geometric mean of the per-replicate ratios, with a 95 % Student-t interval on the log ratios
        (attention_gain_ci_low/_high) and a two-sided paired t-test on log errors (attention_gain_pvalue),
        so the interval excludes 1 exactly when p < 0.05. Logs, because errors are positive and skewed."""
        out: dict[str, float] = {}
        for w, e in self.errors.items():
            out[f"estimate/rel_error_{w}"] = float(np.mean(e))
            for j, n in enumerate(self.free):
                out[f"estimate/rel_error_{w}_{n}"] = float(np.mean(self.param_errors[w][:, j]))
        log_ratio = np.log(self.errors["uniform"]) - np.log(self.errors["attention"])
        out["estimate/attention_gain"] = float(np.exp(np.mean(log_ratio)))
        r = log_ratio.size
        if r > 1:
            half = stats.t.ppf(0.975, r - 1) * np.std(log_ratio, ddof=1) / math.sqrt(r)
            out["estimate/attention_gain_ci_low"] = float(np.exp(np.mean(log_ratio) - half))
            out["estimate/attention_gain_ci_high"] = float(np.exp(np.mean(log_ratio) + half))
            p = stats.ttest_rel(np.log(self.errors["uniform"]), np.log(self.errors["attention"])).pvalue
            out["estimate/attention_gain_pvalue"] = float(p) if np.isfinite(p) else 1.0
        return out


def weighting_study(system: DynamicalSystem, truth: Mapping[str, float], t: np.ndarray, y_noisy: np.ndarray,
                    attention: np.ndarray, state_norm: np.ndarray, rng: np.random.Generator,
                    free_params: Optional[Sequence[str]] = None, n_permutations: int = 3) -> WeightingStudy:
    """Fit every weighting (module docstring) to each replicate and compare relative errors to `truth`.

    truth: every system param and x0_<state>; t [T]; y_noisy [T, d] or [R, T, d]; attention and
    state_norm [T] or [R, T] (per replicate); free_params default: all params and initial states.
    'permuted' averages the errors of `n_permutations` permutations of that replicate's attention."""
    y_noisy = np.asarray(y_noisy, dtype=float)
    y_noisy = y_noisy[None] if y_noisy.ndim == 2 else y_noisy
    n_rep, n_t = y_noisy.shape[:2]
    attention = np.broadcast_to(np.asarray(attention, dtype=float), (n_rep, n_t))
    state_norm = np.broadcast_to(np.asarray(state_norm, dtype=float), (n_rep, n_t))
    free = tuple(free_params or (*system.param_names, *(f"x0_{s}" for s in system.state_names)))
    true = np.array([float(truth[n]) for n in free])
    errors = {w: np.empty(n_rep) for w in WEIGHTINGS}
    param_errors = {w: np.empty((n_rep, len(free))) for w in WEIGHTINGS}
    weights = {w: np.empty((n_rep, n_t)) for w in WEIGHTINGS}
    for r in range(n_rep):
        a = attention[r]
        tiny = np.finfo(float).tiny
        plans = {"uniform": [np.ones(n_t)], "attention": [a], "inverse_attention": [1.0 / np.maximum(a, tiny)],
                 "state_norm": [state_norm[r]], "permuted": [rng.permutation(a) for _ in range(n_permutations)]}
        for w, plan in plans.items():
            per = []
            for i, wt in enumerate(plan):
                res = fit_weighted(system, t, y_noisy[r], wt, free, truth)
                per.append(np.abs(np.array([res.estimate[n] for n in free]) - true) / np.abs(true))
                if i == 0:
                    weights[w][r] = res.weights
            param_errors[w][r] = np.mean(per, axis=0)
            errors[w][r] = float(np.mean(param_errors[w][r]))
    return WeightingStudy(free=free, errors=errors, param_errors=param_errors, weights=weights)
