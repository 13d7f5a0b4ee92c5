"""Jewett, Forger & Kronauer 1999, "Revised limit cycle oscillator model of human circadian pacemaker"
(J Biol Rhythms 14:493): a higher-order oscillator (x, x_c) driven by light through Process L (n).

    dx/dt   = (π/12)[x_c + μ(x/3 + 4x³/3 − 256x⁷/105) + B]
    dx_c/dt = (π/12)[q B x_c − x((24/(0.99729 τx))² + kB)]
    dn/dt   = 60[α(1 − n) − βn],  α = α0 (I/I0)^p,  B = G α (1 − n)(1 − 0.4x)(1 − 0.4x_c)

in hours; the CBT minimum falls 0.8 h after the minimum of x (the model's φ_ref).
"""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import matrix
from lvsweep.systems.light import W, KronauerOscillator

class Jewett99(KronauerOscillator):
    period_factor = 0.99729
    name = "jewett99"
    param_names = ("taux", "mu", "q", "k", "G", "alpha0", "beta", "p", "I0", "light")
    cbt_offset = 0.8

    def rhs_light(self, x: np.ndarray, lux) -> np.ndarray:
        p = self.params
        u, c, n, a, drive, s, omega2 = self.terms(x, lux)
        b = drive * s
        return np.stack([W * (c + p["mu"] * (u / 3 + 4 * u ** 3 / 3 - 256 * u ** 7 / 105) + b),
                         W * (p["q"] * b * c - u * (omega2 + p["k"] * b)),
                         60 * (a * (1 - n) - p["beta"] * n)], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        u, c, n, a, drive, s, omega2 = self.terms(x, p["light"])
        b = drive * s
        b_u = -0.4 * drive * (1 - 0.4 * c)
        b_c = -0.4 * drive * (1 - 0.4 * u)
        b_n = -p["G"] * a * s
        k, q = p["k"], p["q"]
        return matrix([[W * (p["mu"] * (1 / 3 + 4 * u ** 2 - 256 * u ** 6 / 15) + b_u), W * (1 + b_c), W * b_n],
                       [W * (q * b_u * c - omega2 - k * b - u * k * b_u), W * (q * (b_c * c + b) - u * k * b_c),
                        W * (q * b_n * c - u * k * b_n)],
                       [0, 0, -60 * (a + p["beta"])]], u.shape)

    def cbt_marker(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x)[..., 0]
