"""Goodwin oscillator: the three-variable negative-feedback loop behind circadian clock models.

mRNA x, protein y and a repressor z that shuts off transcription through a Hill function of
threshold K (scaling a and K together scales every state alike). With
equal degradation rates b the fixed point loses stability (a Hopf bifurcation) once the loop gain
n·zⁿ/(1 + zⁿ) at the fixed point exceeds 8 (the secant condition), so the Hill exponent must be
above 8; beyond it the orbits settle on a stable limit cycle.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lvsweep.systems.base import DynamicalSystem, matrix


class Goodwin(DynamicalSystem):
    """x' = a/(1 + (z/K)ⁿ) − b·x, y' = x − b·y, z' = y − b·z."""

    name = "goodwin"
    param_names = ("a", "K", "b", "n")
    cycle = "limit_cycle"

    def rhs(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, v, w = x[..., 0], x[..., 1], x[..., 2]
        return np.stack([p["a"] / (1 + (w / p["K"]) ** p["n"]) - p["b"] * u, u - p["b"] * v, v - p["b"] * w],
                        axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        w, b, n = x[..., 2] / p["K"], p["b"], p["n"]
        hill = -p["a"] / p["K"] * n * w ** (n - 1) / (1 + w ** n) ** 2
        return matrix([[-b, 0, hill],
                       [1, -b, 0],
                       [0, 1, -b]], w.shape)

    def check_state(self, x: np.ndarray) -> Optional[str]:
        if np.any(np.asarray(x) < 0):
            return "concentrations must be >= 0"
        return None
