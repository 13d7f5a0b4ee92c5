"""Two-species competitive Lotka-Volterra: a separable strict Lyapunov function, no cycle.

x_i' = r_i·x_i·(1 − (x_i + a_ij·x_j)/K_i). Written as x' = x∘(r + A·x) with
A = [[−r1/K1, −r1·a12/K1], [−r2·a21/K2, −r2/K2]], Goh's function
V = Σ_i c_i·(x_i − x_i* − x_i*·ln(x_i/x_i*)), c_i = K_i/r_i, has
dV/dt = (x − x*)ᵀ·C·A·(x − x*) = −(u1² + (a12 + a21)·u1·u2 + u2²), u = x − x*, which is negative
away from x* whenever a12 + a21 < 2 (the symmetric part of C·A is then negative definite), so the
coexistence point x* is globally stable on the open positive quadrant and V is separable (a sum of
one-variable terms), like the predator-prey V.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.systems.base import DynamicalSystem, matrix


class CompetitiveLV(DynamicalSystem):
    name = "competitive_lv"
    param_names = ("r1", "r2", "K1", "K2", "a12", "a21")

    def __init__(self, params: Mapping[str, float], state_names: Sequence[str]) -> None:
        super().__init__(params, state_names)
        p = self.params
        if not (p["r1"] > 0 and p["r2"] > 0 and p["K1"] > 0 and p["K2"] > 0):
            raise LvsweepError("system.params", "competitive_lv needs r1, r2, K1, K2 > 0")
        if not (0 <= p["a12"] and 0 <= p["a21"] and p["a12"] + p["a21"] < 2):
            raise LvsweepError("system.params.a12",
                               "competitive_lv needs a12, a21 >= 0 with a12 + a21 < 2 (where V is a Lyapunov "
                               f"function); got a12={p['a12']}, a21={p['a21']}")

    def rhs(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        x1, x2 = x[..., 0], x[..., 1]
        return np.stack([p["r1"] * x1 * (1 - (x1 + p["a12"] * x2) / p["K1"]),
                         p["r2"] * x2 * (1 - (x2 + p["a21"] * x1) / p["K2"])], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        x1, x2 = x[..., 0], x[..., 1]
        return matrix([[p["r1"] * (1 - (2 * x1 + p["a12"] * x2) / p["K1"]), -p["r1"] * p["a12"] * x1 / p["K1"]],
                       [-p["r2"] * p["a21"] * x2 / p["K2"], p["r2"] * (1 - (2 * x2 + p["a21"] * x1) / p["K2"])]],
                      x1.shape)

    def check_state(self, x: np.ndarray) -> Optional[str]:
        if np.any(np.asarray(x) <= 0):
            return "populations must be > 0 (the state space is the open positive quadrant)"
        return None

    def equilibrium(self) -> np.ndarray:
        p = self.params
        det = 1 - p["a12"] * p["a21"]
        return np.array([(p["K1"] - p["a12"] * p["K2"]) / det, (p["K2"] - p["a21"] * p["K1"]) / det])

    def _weights(self) -> np.ndarray:
        p = self.params
        return np.array([p["K1"] / p["r1"], p["K2"] / p["r2"]])

    def lyapunov(self, x: np.ndarray) -> np.ndarray:
        eq = self.equilibrium()
        return np.sum(self._weights() * (x - eq - eq * np.log(x / eq)), axis=-1)

    def lyapunov_grad(self, x: np.ndarray) -> np.ndarray:
        eq = self.equilibrium()
        return self._weights() * (1 - eq / x)
