"""Forger, Jewett & Kronauer 1999, "A simpler model of the human circadian pacemaker" (J Biol Rhythms
14:532): a van der Pol-type oscillator (x, x_c) driven by light through Process L (n).

    dx/dt   = (π/12)(x_c + B)
    dx_c/dt = (π/12)[μ(x_c − 4x_c³/3) − x((24/(0.99669 τx))² + kB)]
    dn/dt   = 60[α(1 − n) − βn],  α = α0 (I/I0)^p,  B = G α (1 − n)(1 − 0.4x)(1 − 0.4x_c)

in hours; the CBT minimum is the minimum of x. The parameters are the published ones (`conf/system/
forger99.yaml`); the right-hand side is checked against the `circadian` package in tests.
"""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import matrix
from lvsweep.systems.light import W, KronauerOscillator

class Forger99(KronauerOscillator):
    period_factor = 0.99669
    name = "forger99"
    param_names = ("taux", "mu", "k", "G", "alpha0", "beta", "p", "I0", "light")

    def rhs_light(self, x: np.ndarray, lux) -> np.ndarray:
        p = self.params
        u, c, n, a, drive, s, omega2 = self.terms(x, lux)
        b = drive * s
        return np.stack([W * (c + b),
                         W * (p["mu"] * (c - 4 * c ** 3 / 3) - u * (omega2 + p["k"] * b)),
                         60 * (a * (1 - n) - p["beta"] * n)], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, c, n, a, drive, s, omega2 = self.terms(x, p["light"])
        b = drive * s
        b_u = -0.4 * drive * (1 - 0.4 * c)
        b_c = -0.4 * drive * (1 - 0.4 * u)
        b_n = -p["G"] * a * s
        k = p["k"]
        return matrix([[W * b_u, W * (1 + b_c), W * b_n],
                       [-W * (omega2 + k * b + u * k * b_u), W * (p["mu"] * (1 - 4 * c ** 2) - u * k * b_c),
                        -W * u * k * b_n],
                       [0, 0, -60 * (a + p["beta"])]], u.shape)

    def cbt_marker(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[..., 0]
