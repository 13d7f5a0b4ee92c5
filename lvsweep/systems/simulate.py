"""Integrate systems accurately, once per distinct setting in a process.

Tolerances are tight (default 1e-12) because the sensitivity analysis differentiates along the
orbit: a conserved V must stay constant to ~1e-8 relative or "flat" and "steep" blur.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from lvsweep.errors import LvsweepError
from lvsweep.systems import DynamicalSystem, check_start, make_system

BLOW_UP = 1e12


@dataclass(frozen=True)
class Orbit:
    t: np.ndarray  # [T]
    x: np.ndarray  # [T, d]


def integrate(system: DynamicalSystem, x0: np.ndarray, t_eval: np.ndarray,
              rtol: float = 1e-12, atol: float = 1e-12) -> np.ndarray:
    """Integrate a batch of starts `x0[k, d]` together; returns states `[k, len(t_eval), d]`."""
    x0 = np.atleast_2d(np.asarray(x0, dtype=float))
    k, d = x0.shape

    def f(_t: float, y: np.ndarray) -> np.ndarray:
        return system.rhs(y.reshape(k, d)).ravel()

    def blow_up(_t: float, y: np.ndarray) -> float:
        return BLOW_UP - np.max(np.abs(y))

    blow_up.terminal = True  # type: ignore[attr-defined]
    with np.errstate(over="ignore", invalid="ignore"):
        sol = solve_ivp(f, (float(t_eval[0]), float(t_eval[-1])), x0.ravel(), method="DOP853",
                        t_eval=t_eval, rtol=rtol, atol=atol, events=blow_up)
    if sol.status != 0 or sol.y.shape[1] != len(t_eval) or not np.all(np.isfinite(sol.y)):
        t_fail = sol.t[-1] if sol.t.size else t_eval[0]
        what = f"|x| exceeded {BLOW_UP:g}" if sol.status == 1 else f"the solver failed: {sol.message}"
        raise LvsweepError("system", f"the {system.name} ODE blew up near t={t_fail:.3g} ({what}); "
                                     "choose system.params and system.start that give bounded orbits")
    return sol.y.reshape(k, d, -1).transpose(0, 2, 1)


_ORBITS: dict[tuple, Orbit] = {}


def simulate(cfg: Any) -> Orbit:
    """The clean orbit for a system config; identical settings share one integration per process."""
    system = make_system(cfg)
    check_start(system, cfg.start)
    start = np.asarray(cfg.start, dtype=float)
    transient = float(cfg.get("transient", 0.0))
    key = (system.name, tuple(system.params.items()), system.state_names, tuple(start), transient,
           float(cfg.t_start), float(cfg.t_end), int(cfg.n_steps), float(cfg.rtol), float(cfg.atol))
    if key not in _ORBITS:
        if transient > 0:
            start = integrate(system, start, np.array([0.0, transient]), cfg.rtol, cfg.atol)[0, -1]
        t = np.linspace(cfg.t_start, cfg.t_end, cfg.n_steps)
        x = integrate(system, start, t, cfg.rtol, cfg.atol)[0]
        t.setflags(write=False)
        x.setflags(write=False)
        _ORBITS[key] = Orbit(t=t, x=x)
    return _ORBITS[key]
