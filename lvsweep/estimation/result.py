"""What a fit returns: posterior summaries, diagnostics, draws, and their MLflow metric names."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvsweep.estimation.model import Model
from lvsweep.estimation.point import PointEstimate
from lvsweep.estimation.sampler import Chain

INTERVAL = (10.0, 90.0)  # the central 80 % interval


@dataclass(frozen=True)
class Estimate:
    """One quantity's posterior: median and the central 80 % interval [low, high]; mode = the point estimate."""
    median: float
    low: float
    high: float
    mode: float


@dataclass(frozen=True)
class EstimationResult:
    """A finished fit. draws [S, n] are values (not logs) of `model.free`, S = walkers × kept steps;
    seconds: wall time of the point estimate and of the sampling."""
    model: Model
    point: PointEstimate
    chain: Chain
    draws: np.ndarray
    seconds: dict[str, float]

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.free

    def estimates(self) -> dict[str, Estimate]:
        """Every free quantity's posterior summary, in `names` order."""
        lo, med, hi = np.percentile(self.draws, [INTERVAL[0], 50.0, INTERVAL[1]], axis=0)
        mode = np.exp(self.point.theta)
        return {n: Estimate(float(med[j]), float(lo[j]), float(hi[j]), float(mode[j])) for j, n in enumerate(self.names)}

    def sigma(self) -> dict[str, float]:
        """Noise level per state: the posterior median if free, else the fixed value."""
        est = self.estimates()
        return {s: est[f"sigma_{s}"].median if f"sigma_{s}" in est else self.model.fixed[f"sigma_{s}"]
                for s in self.model.system.state_names}

    def metrics(self) -> dict[str, float]:
        """The MLflow metrics: estimate/<name>, _low, _high for every free parameter and initial state;
        estimate/sigma_<state>; estimate/acceptance, autocorr_max, ess_min, converged (0/1)."""
        out: dict[str, float] = {}
        for n, e in self.estimates().items():
            if not n.startswith("sigma_"):
                out.update({f"estimate/{n}": e.median, f"estimate/{n}_low": e.low, f"estimate/{n}_high": e.high})
        out.update({f"estimate/sigma_{s}": v for s, v in self.sigma().items()})
        out.update({"estimate/acceptance": self.chain.acceptance,
                    "estimate/autocorr_max": float(np.max(self.chain.tau)),
                    "estimate/ess_min": float(np.min(self.chain.ess)),
                    "estimate/converged": float(self.chain.converged)})
        return out

    def write_posterior_csv(self, path: str | Path) -> Path:
        """The draws, one row per draw and one column per free quantity (values, not logs)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.names)
            writer.writerows([[repr(float(v)) for v in row] for row in self.draws])
        return path

    def write_figures(self, directory: str | Path, seed: int = 0, caption_text: str = "") -> dict[str, Path]:
        """fit.png and posterior.png in `directory` (see figures.py), each captioned with
        `caption_text`, the run they belong to, when given."""
        from lvsweep.estimation.figures import plot_fit, plot_posterior

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        return {"fit": plot_fit(self, directory / "fit.png", np.random.default_rng(seed), caption_text=caption_text),
                "posterior": plot_posterior(self, directory / "posterior.png", caption_text=caption_text)}
