"""Lotka-Volterra predator-prey: a centre whose orbits are level sets of a conserved V."""
from __future__ import annotations

from typing import Optional

import numpy as np

from lvsweep.systems.base import DynamicalSystem, matrix


class LotkaVolterra(DynamicalSystem):
    """prey' = α·prey − β·prey·predator, predator' = δ·prey·predator − γ·predator."""

    name = "lotka_volterra"
    param_names = ("alpha", "beta", "gamma", "delta")
    cycle = "centre"
    conserved = True

    def rhs(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        prey, pred = x[..., 0], x[..., 1]
        return np.stack(
            [p["alpha"] * prey - p["beta"] * prey * pred,
             p["delta"] * prey * pred - p["gamma"] * pred],
            axis=-1,
        )

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        prey, pred = x[..., 0], x[..., 1]
        return matrix([[p["alpha"] - p["beta"] * pred, -p["beta"] * prey],
                       [p["delta"] * pred, p["delta"] * prey - p["gamma"]]], prey.shape)

    def check_state(self, x: np.ndarray) -> Optional[str]:
        if np.any(np.asarray(x) <= 0):
            return "populations must be > 0 (the state space is the open positive quadrant)"
        return None

    def lyapunov(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        prey, pred = x[..., 0], x[..., 1]
        return (p["delta"] * prey - p["gamma"] * np.log(prey)
                + p["beta"] * pred - p["alpha"] * np.log(pred))

    def lyapunov_grad(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        prey, pred = x[..., 0], x[..., 1]
        return np.stack([p["delta"] - p["gamma"] / prey, p["beta"] - p["alpha"] / pred], axis=-1)

    def equilibrium(self) -> np.ndarray:
        p = self.params
        return np.array([p["gamma"] / p["delta"], p["alpha"] / p["beta"]])
