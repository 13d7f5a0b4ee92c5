"""What a circadian pacemaker with a light input adds to a dynamical system.

The models of the human pacemaker here (`forger99`, `jewett99`, `hannay19`) are driven by light I(t)
in lux through Kronauer's Process L: a photoreceptor variable n (the share of used-up
"ready" elements) relaxes as dn/dt = 60[α(I)(1 − n) − βn] per hour, and the drive
B̂ = G·α(I)·(1 − n) (times a factor of the oscillator's state) pushes the oscillator. Time is in
hours throughout.

As a `DynamicalSystem` each is autonomous: the light is a constant background level
`system.params.light` (lux, ≥ 0). The light protocols of `lvsweep.analysis.lightprc` need light that
changes in time, so each model writes its equations once, in `rhs_light(x, lux)`, where `lux` is a
number or an array broadcast against the batch axes of `x`; `rhs` is `rhs_light` at the background
level. At constant light n settles to α/(α + β) and stays there: it is in `held`.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Mapping, Sequence

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.systems.base import DynamicalSystem

# The human day of the light protocols: 16 h awake (in light), 8 h asleep (in darkness).
WAKE_HOURS, SLEEP_HOURS = 16.0, 8.0
W = np.pi / 12  # the van der Pol-type oscillators' time scale, rad per hour


def find_minima(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Times of the strict local minima of `s[..., T]` sampled at `t[T]`, refined by the parabola
    through each minimum and its neighbours; a list per leading index (a single series: one array)."""
    s = np.asarray(s, dtype=float)
    rows = s.reshape(-1, s.shape[-1])
    dt = t[1] - t[0]
    out = []
    for row in rows:
        i = 1 + np.flatnonzero((row[1:-1] < row[:-2]) & (row[1:-1] <= row[2:]))
        a, b, c = row[i - 1], row[i], row[i + 1]
        curvature = a - 2 * b + c
        with np.errstate(invalid="ignore", divide="ignore"):
            offset = np.where(curvature > 0, 0.5 * (a - c) / curvature, 0.0)
        out.append(t[i] + offset * dt)
    return out[0] if s.ndim == 1 else out


class LightDriven(DynamicalSystem):
    """A pacemaker driven by light: `rhs_light`, the CBT-minimum marker, and `light` in lux."""

    cycle = "limit_cycle"
    held = ("n",)
    # Hours from the minimum of `cbt_marker` to the core body temperature minimum.
    cbt_offset: ClassVar[float] = 0.0

    def __init__(self, params: Mapping[str, float], state_names: Sequence[str]) -> None:
        super().__init__(params, state_names)
        light = self.params["light"]
        if not (np.isfinite(light) and light >= 0):
            raise LvsweepError("system.params.light", f"must be a finite number >= 0 (lux), got {light:g}")
        if not self.params["I0"] > 0:
            raise LvsweepError("system.params.I0", f"must be a number > 0 (lux), got {self.params['I0']:g}")

    def alpha(self, lux: np.ndarray | float) -> np.ndarray:
        """The rate α(I) at which light uses up the photoreceptor's ready elements, per minute."""
        p = self.params
        return p["alpha0"] * (np.asarray(lux, dtype=float) / p["I0"]) ** p["p"]

    @abstractmethod
    def rhs_light(self, x: np.ndarray, lux: np.ndarray | float) -> np.ndarray:
        """f(x, I): the right-hand side under light `lux` (a number or an array of the batch shape)."""

    def rhs(self, x: np.ndarray) -> np.ndarray:
        return self.rhs_light(x, self.params["light"])

    @abstractmethod
    def cbt_marker(self, x: np.ndarray) -> np.ndarray:
        """A series [...] whose minima, `cbt_offset` hours earlier, are the CBT minima."""

    def check_state(self, x: np.ndarray):
        n = np.asarray(x)[..., 2]
        if np.any((n < 0) | (n > 1)):
            return "the photoreceptor state n must lie in [0, 1]"
        return None

    def cbt_minima(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The CBT-minimum times along an orbit x[T, d] sampled at t[T]."""
        return find_minima(t, self.cbt_marker(x)) + self.cbt_offset


class KronauerOscillator(LightDriven):
    """The van der Pol-type pacemakers (`forger99`, `jewett99`): x, x_c and Process L's n, driven by
    B = G α (1 − n)(1 − 0.4x)(1 − 0.4x_c), the intrinsic period set by τx through `period_factor`."""

    # τx times this is the oscillator's period without light, in the term (24 / (factor τx))².
    period_factor: ClassVar[float]

    def terms(self, x: np.ndarray, lux: np.ndarray | float) -> tuple[np.ndarray, ...]:
        """x, x_c, n, α, G α (1 − n), (1 − 0.4x)(1 − 0.4x_c), (24 / (factor τx))²: what both the
        right-hand side and the Jacobian are written in."""
        p = self.params
        u, c, n = x[..., 0], x[..., 1], x[..., 2]
        a = self.alpha(lux)
        drive = p["G"] * a * (1 - n)
        s = (1 - 0.4 * u) * (1 - 0.4 * c)
        omega2 = (24 / (self.period_factor * p["taux"])) ** 2
        return u, c, n, a, drive, s, omega2
