"""Lorenz system: the classic chaotic attractor (largest Lyapunov exponent ≈ 0.906 at σ=10, ρ=28, β=8/3)."""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import DynamicalSystem, matrix


class Lorenz(DynamicalSystem):
    """x' = σ·(y − x), y' = x·(ρ − z) − y, z' = x·y − β·z."""

    name = "lorenz"
    param_names = ("sigma", "rho", "beta")

    def rhs(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        return np.stack([p["sigma"] * (v - u), u * (p["rho"] - w) - v, u * v - p["beta"] * w], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        return matrix([[-p["sigma"], p["sigma"], 0],
                       [p["rho"] - w, -1, -u],
                       [v, u, -p["beta"]]], u.shape)
