"""Hannay, Booth & Forger 2019, "Macroscopic models for human circadian rhythms" (J Biol Rhythms
34:658), the single-population model: the collective rhythm of the pacemaker's cells as an amplitude
R and a phase ψ (a Kuramoto order parameter, reduced by Ott-Antonsen), driven by light through
Process L (n):

    dR/dt = −γR + (K/2) cos β1 R(1 − R⁴) + L_R
    dψ/dt = 2π/τ + (K/2) sin β1 (1 + R⁴) + L_ψ
    dn/dt = 60[α(1 − n) − δn],  α = α0 I^p/(I^p + I0),  B = G α (1 − n)
    L_R = (A1/2) B (1 − R⁴) cos(ψ + βL1) + (A2/2) B R (1 − R⁸) cos(2ψ + βL2)
    L_ψ = σB − (A1/2) B (R³ + 1/R) sin(ψ + βL1) − (A2/2) B (1 + R⁸) sin(2ψ + βL2)

in hours; the CBT minimum is at ψ = π.

The state is (x, y, n) with x = R cos ψ and y = R sin ψ, not (R, ψ, n): at constant light R settles to a
constant and ψ grows without bound, so in polar form the orbit is a ramp, not a cycle, and a series
of it to train on or a section to cross would lose the oscillation. In Cartesian form the limit cycle
is a circle of radius R and the CBT minimum is the minimum of x/R = cos ψ.
"""
from __future__ import annotations

import numpy as np

from lvsweep.systems.base import matrix
from lvsweep.systems.light import LightDriven


class Hannay19(LightDriven):
    name = "hannay19"
    param_names = ("tau", "K", "gamma", "beta1", "A1", "A2", "betaL1", "betaL2", "sigma", "G", "alpha0",
                   "delta", "p", "I0", "light")

    def alpha(self, lux):
        p = self.params
        lp = np.asarray(lux, dtype=float) ** p["p"]
        return p["alpha0"] * lp / (lp + p["I0"])

    def polar(self, x: np.ndarray, lux):
        """(R, ψ, n), the light terms' pieces, and dR/dt, dψ/dt."""
        p = self.params
        X, Y, n = x[..., 0], x[..., 1], x[..., 2]
        r, psi = np.hypot(X, Y), np.arctan2(Y, X)
        a = self.alpha(lux)
        b = p["G"] * a * (1 - n)
        c1, s1 = np.cos(psi + p["betaL1"]), np.sin(psi + p["betaL1"])
        c2, s2 = np.cos(2 * psi + p["betaL2"]), np.sin(2 * psi + p["betaL2"])
        half_k = p["K"] / 2
        f_r = (-p["gamma"] * r + half_k * np.cos(p["beta1"]) * r * (1 - r ** 4)
               + p["A1"] / 2 * b * (1 - r ** 4) * c1 + p["A2"] / 2 * b * r * (1 - r ** 8) * c2)
        f_psi = (2 * np.pi / p["tau"] + half_k * np.sin(p["beta1"]) * (1 + r ** 4) + p["sigma"] * b
                 - p["A1"] / 2 * b * (r ** 3 + 1 / r) * s1 - p["A2"] / 2 * b * (1 + r ** 8) * s2)
        return r, psi, n, a, b, (c1, s1, c2, s2), f_r, f_psi

    def rhs_light(self, x: np.ndarray, lux) -> np.ndarray:
        r, psi, n, a, _, _, f_r, f_psi = self.polar(x, lux)
        cos, sin = np.cos(psi), np.sin(psi)
        return np.stack([f_r * cos - r * f_psi * sin, f_r * sin + r * f_psi * cos,
                         60 * (a * (1 - n) - self.params["delta"] * n)], axis=-1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        p = self.params
        r, psi, n, a, b, (c1, s1, c2, s2), f_r, f_psi = self.polar(x, p["light"])
        A1, A2, K = p["A1"], p["A2"], p["K"]
        # Partial derivatives of the polar right-hand side.
        fr_r = (-p["gamma"] + K / 2 * np.cos(p["beta1"]) * (1 - 5 * r ** 4) - 2 * A1 * b * r ** 3 * c1
                + A2 / 2 * b * (1 - 9 * r ** 8) * c2)
        fr_psi = -A1 / 2 * b * (1 - r ** 4) * s1 - A2 * b * r * (1 - r ** 8) * s2
        fr_n = -p["G"] * a * (A1 / 2 * (1 - r ** 4) * c1 + A2 / 2 * r * (1 - r ** 8) * c2)
        fp_r = 2 * K * np.sin(p["beta1"]) * r ** 3 - A1 / 2 * b * (3 * r ** 2 - 1 / r ** 2) * s1 - 4 * A2 * b * r ** 7 * s2
        fp_psi = -A1 / 2 * b * (r ** 3 + 1 / r) * c1 - A2 * b * (1 + r ** 8) * c2
        fp_n = -p["G"] * a * (p["sigma"] - A1 / 2 * (r ** 3 + 1 / r) * s1 - A2 / 2 * (1 + r ** 8) * s2)
        cos, sin = np.cos(psi), np.sin(psi)
        # d(ẋ, ẏ)/d(R, ψ), then the chain rule through R(x, y) and ψ(x, y).
        dx_r = fr_r * cos - f_psi * sin - r * fp_r * sin
        dx_psi = fr_psi * cos - f_r * sin - r * fp_psi * sin - r * f_psi * cos
        dy_r = fr_r * sin + f_psi * cos + r * fp_r * cos
        dy_psi = fr_psi * sin + f_r * cos + r * fp_psi * cos - r * f_psi * sin
        return matrix([[dx_r * cos - dx_psi * sin / r, dx_r * sin + dx_psi * cos / r, fr_n * cos - r * fp_n * sin],
                       [dy_r * cos - dy_psi * sin / r, dy_r * sin + dy_psi * cos / r, fr_n * sin + r * fp_n * cos],
                       [0, 0, -60 * (a + p["delta"])]], r.shape)

    def check_state(self, x: np.ndarray):
        x = np.asarray(x)
        if np.any(np.hypot(x[..., 0], x[..., 1]) == 0):
            return "the amplitude R = |(x, y)| must be > 0 (the phase is undefined at R = 0)"
        return super().check_state(x)

    def cbt_marker(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        return x[..., 0] / np.hypot(x[..., 0], x[..., 1])  # cos ψ: its minimum is ψ = π
