"""Van der Pol oscillator: an attracting limit cycle with no known Lyapunov function in closed form."""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import DynamicalSystem, matrix


class VanDerPol(DynamicalSystem):
    """x' = y, y' = μ·(1 − x²)·y − x."""

    name = "van_der_pol"
    param_names = ("mu",)
    cycle = "limit_cycle"

    def rhs(self, x: np.ndarray) -> np.ndarray:
        mu = self.params["mu"]
        u, v = x[..., 0], x[..., 1]
        return np.stack([v, mu * (1 - u * u) * v - u], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        mu = self.params["mu"]
        u, v = x[..., 0], x[..., 1]
        return matrix([[0, 1],
                       [-2 * mu * u * v - 1, mu * (1 - u * u)]], u.shape)

    def equilibrium(self) -> np.ndarray:
        return np.zeros(2)
