"""Figures of a fit: the data with the fitted trajectory and posterior predictive band, and the posterior."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lvsweep.analysis.captions import caption  # noqa: E402

if TYPE_CHECKING:
    from lvsweep.estimation.result import EstimationResult


def predictive(result: "EstimationResult", t: np.ndarray, rng: np.random.Generator,
               n_draws: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(trajectories [m, len(t), d], predictive observations [m, len(t), d]) for m ≤ n_draws posterior draws:
    each draw's ODE solution, then log-normal noise with that draw's σ (one batched solve)."""
    model = result.model
    pick = rng.choice(len(result.draws), size=min(n_draws, len(result.draws)), replace=False)
    theta = np.log(result.draws[pick])
    x, ok = model.trajectories(theta, t)
    x, theta = x[ok], theta[ok]
    v = model.values(theta)
    sigma = np.stack([v[f"sigma_{s}"] for s in model.system.state_names], axis=-1)[:, None, :]
    y = x * np.exp(sigma * rng.standard_normal(x.shape))
    return x, y


def plot_fit(result: "EstimationResult", path: Path, rng: np.random.Generator, caption_text: str = "") -> Path:
    """One panel per state: observations, the posterior median trajectory, the central 80 % band of the
    trajectories and of the posterior predictive (trajectory plus measurement noise). `caption_text`:
    the run it belongs to (`lvsweep.analysis.captions`), as suptitle and PNG Title."""
    model, series = result.model, result.model.series
    t = np.linspace(series.t[0], series.t[-1], 200)
    x, y = predictive(result, t, rng)
    d = model.system.dim
    fig, axes = plt.subplots(d, 1, figsize=(8, 2.6 * d), sharex=True, squeeze=False)
    for i, (ax, state) in enumerate(zip(axes[:, 0], model.system.state_names)):
        ax.fill_between(t, *np.percentile(y[:, :, i], [10, 90], axis=0), color="C0", alpha=0.2,
                        label="80 % posterior predictive")
        ax.fill_between(t, *np.percentile(x[:, :, i], [10, 90], axis=0), color="C0", alpha=0.4,
                        label="80 % trajectory")
        ax.plot(t, np.median(x[:, :, i], axis=0), color="C0", label="posterior median")
        ax.plot(series.t, series.y[:, i], "o", color="k", ms=4, label=f"observed ({series.names[i]})")
        ax.set_ylabel(state)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("t")
    axes[0, 0].set_title(f"{model.system.name} fitted to {series.source}")
    return _save(fig, path, caption_text, dpi=110)


def plot_posterior(result: "EstimationResult", path: Path, max_points: int = 2000, caption_text: str = "") -> Path:
    """Corner plot: marginal histograms (with median and 80 % interval) on the diagonal, pair scatter
    below; captioned as `plot_fit`."""
    names = result.names
    n = len(names)
    draws = result.draws[np.linspace(0, len(result.draws) - 1, min(max_points, len(result.draws))).astype(int)]
    fig, axes = plt.subplots(n, n, figsize=(1.6 * n + 1, 1.6 * n + 1), squeeze=False)
    est = result.estimates()
    for i in range(n):
        for j in range(n):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                ax.hist(result.draws[:, i], bins=40, color="C0", alpha=0.7)
                e = est[names[i]]
                for v, style in ((e.low, ":"), (e.median, "-"), (e.high, ":")):
                    ax.axvline(v, color="k", ls=style, lw=0.8)
                ax.set_yticks([])
            else:
                ax.plot(draws[:, j], draws[:, i], ".", ms=1, alpha=0.3, color="C0")
            if i == n - 1:
                ax.set_xlabel(names[j], fontsize=7)
            else:
                ax.set_xticklabels([])
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=7)
            elif j > 0:
                ax.set_yticklabels([])
            ax.tick_params(labelsize=6)
    return _save(fig, path, caption_text, dpi=90)


def _save(fig: plt.Figure, path: Path, caption_text: str, dpi: int) -> Path:
    """Captioned (when the fit belongs to a run), laid out and written; the caption is also the
    PNG's Title, as on the run's other figures."""
    caption(fig, caption_text)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, metadata={"Title": caption_text} if caption_text else None)
    plt.close(fig)
    return path
