"""Rössler system: a chaotic attractor with one positive Lyapunov exponent (≈ 0.071 at a=b=0.2, c=5.7)."""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import DynamicalSystem, matrix


class Rossler(DynamicalSystem):
    """x' = −y − z, y' = x + a·y, z' = b + z·(x − c)."""

    name = "rossler"
    param_names = ("a", "b", "c")

    def rhs(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        return np.stack([-v - w, u + p["a"] * v, p["b"] + w * (u - p["c"])], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, w = x[..., 0], x[..., 2]
        return matrix([[0, -1, -1],
                       [1, p["a"], 0],
                       [w, 0, u - p["c"]]], u.shape)
