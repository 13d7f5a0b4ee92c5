"""Integrate systems accurately, once per distinct setting in a process, and never without bounds.

Tolerances are tight (`TOLERANCE`, 1e-12, unless the config says otherwise) because the sensitivity analysis differentiates along the
orbit: a conserved V must stay constant to ~1e-8 relative or "flat" and "steep" blur.

Every solve in the package goes through `solve`, which counts right-hand-side evaluations and
watches the clock: a stiff system (van der Pol at large μ) under an explicit method would otherwise
take millions of tiny steps and look like a hang, so past `system.max_steps` evaluations or
`system.max_seconds` seconds the solve stops with a one-line error that names the bound and the
way out (an implicit `system.method`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy.integrate import solve_ivp

from lvsweep.config.schema import MAX_SECONDS, MAX_STEPS, ODE_METHODS as METHODS, TOLERANCE
from lvsweep.errors import LvsweepError
from lvsweep.systems import DynamicalSystem, check_start, make_system

BLOW_UP = 1e12


@dataclass(frozen=True)
class Solver:
    """How every ODE of a run is integrated: the scipy method and the bounds of one solve."""

    method: str = "DOP853"
    max_steps: int = MAX_STEPS  # right-hand-side evaluations per solve
    max_seconds: float = MAX_SECONDS  # wall time per solve

    @classmethod
    def of(cls, cfg: Any) -> Solver:
        """The solver a system config asks for (older configs without the keys get the defaults)."""
        get = cfg.get if hasattr(cfg, "get") else lambda k, d: getattr(cfg, k, d)
        return cls(str(get("method", "DOP853")), int(get("max_steps", MAX_STEPS)),
                   float(get("max_seconds", MAX_SECONDS)))


DEFAULT_SOLVER = Solver()


@dataclass(frozen=True)
class Orbit:
    t: np.ndarray  # [T]
    x: np.ndarray  # [T, d]


def describe_params(system: DynamicalSystem) -> str:
    """"mu=1e+06": the parameter values an error about the integration names."""
    def shown(v: Any) -> str:  # a batch of parameter sets (estimation) shows its range
        return f"{v:g}" if np.ndim(v) == 0 else f"{np.min(v):g}..{np.max(v):g}"

    return ", ".join(f"{k}={shown(v)}" for k, v in system.params.items())


def _bound_error(system: DynamicalSystem, solver: Solver, field: str, bound: str, t: float,
                 span: tuple[float, float]) -> LvsweepError:
    allowed = ", ".join(METHODS)
    if solver.method == "DOP853":
        hint = f"the system is probably stiff here: try system.method=Radau (allowed: {allowed}), or raise {field}"
    else:
        hint = f"raise {field} or try another system.method (allowed: {allowed})"
    return LvsweepError(field, f"the {system.name} ODE with {describe_params(system)} could not be integrated "
                               f"within {field}={bound} "
                               f"with system.method={solver.method} (stopped at t={t:.4g} of "
                               f"[{span[0]:g}, {span[1]:g}]); {hint}")


def solve(system: DynamicalSystem, f: Callable[[float, np.ndarray], np.ndarray], span: tuple[float, float],
          y0: np.ndarray, block: int, solver: Solver, rtol: float, atol: float,
          t_eval: Optional[Sequence[float]] = None, events: Any = None) -> Any:
    """`solve_ivp` with the run's method and bounds. `y0` holds independent blocks of `block`
    components (a batch of states): implicit methods get that block-diagonal sparsity, so their
    finite-difference Jacobian costs `block` evaluations, not one per component."""
    calls = 0
    last_t = span[0]
    deadline = time.monotonic() + solver.max_seconds

    def bounded(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal calls, last_t
        calls += 1
        last_t = t
        if calls > solver.max_steps:
            raise _bound_error(system, solver, "system.max_steps", f"{solver.max_steps} right-hand-side evaluations",
                               last_t, span)
        if time.monotonic() > deadline:
            raise _bound_error(system, solver, "system.max_seconds", f"{solver.max_seconds:g} s", last_t, span)
        return f(t, y)

    kwargs: dict[str, Any] = {}
    n_blocks = len(y0) // block
    if solver.method in ("Radau", "BDF") and n_blocks > 1:
        from scipy.sparse import block_diag

        kwargs["jac_sparsity"] = block_diag([np.ones((block, block))] * n_blocks, format="csc")
    elif solver.method == "LSODA" and n_blocks > 1:
        kwargs["lband"] = kwargs["uband"] = block - 1
    with np.errstate(all="ignore"):  # overflow on the way to a blow-up is reported below, once
        return solve_ivp(bounded, span, y0, method=solver.method, t_eval=t_eval, rtol=rtol, atol=atol,
                         events=events, **kwargs)


def integrate(system: DynamicalSystem, x0: np.ndarray, t_eval: np.ndarray,
              rtol: float = TOLERANCE, atol: float = TOLERANCE, solver: Solver = DEFAULT_SOLVER) -> np.ndarray:
    """Integrate a batch of starts `x0[k, d]` together; returns states `[k, len(t_eval), d]`."""
    x0 = np.atleast_2d(np.asarray(x0, dtype=float))
    k, d = x0.shape

    def f(_t: float, y: np.ndarray) -> np.ndarray:
        return system.rhs(y.reshape(k, d)).ravel()

    def blow_up(_t: float, y: np.ndarray) -> float:
        return BLOW_UP - np.max(np.abs(y))

    blow_up.terminal = True  # type: ignore[attr-defined]
    sol = solve(system, f, (float(t_eval[0]), float(t_eval[-1])), x0.ravel(), d, solver, rtol, atol,
                t_eval=t_eval, events=blow_up)
    # On an early failure scipy leaves `t` and `y` as it built them (lists, possibly empty).
    t_done = np.asarray(sol.t, dtype=float).ravel()
    y = np.asarray(sol.y, dtype=float)
    if sol.status != 0 or y.ndim != 2 or y.shape[1] != len(t_eval) or not np.all(np.isfinite(y)):
        t_fail = t_done[-1] if t_done.size else float(t_eval[0])
        what = f"|x| exceeded {BLOW_UP:g}" if sol.status == 1 else f"the solver failed: {sol.message}"
        raise LvsweepError("system", f"the {system.name} ODE blew up near t={t_fail:.3g} with "
                                     f"{describe_params(system)} from start {x0[0].tolist()} ({what}); "
                                     "choose system.params and system.start that give bounded orbits")
    return y.reshape(k, d, -1).transpose(0, 2, 1)


_ORBITS: dict[tuple, Orbit] = {}


def simulate(cfg: Any) -> Orbit:
    """The clean orbit for a system config; identical settings share one integration per process."""
    system = make_system(cfg)
    check_start(system, cfg.start)
    solver = Solver.of(cfg)
    start = np.asarray(cfg.start, dtype=float)
    transient = float(cfg.get("transient", 0.0))
    key = (system.name, tuple(system.params.items()), system.state_names, tuple(start), transient,
           float(cfg.t_start), float(cfg.t_end), int(cfg.n_steps), float(cfg.rtol), float(cfg.atol), solver)
    if key not in _ORBITS:
        if transient > 0:
            start = integrate(system, start, np.array([0.0, transient]), cfg.rtol, cfg.atol, solver)[0, -1]
        t = np.linspace(cfg.t_start, cfg.t_end, cfg.n_steps)
        x = integrate(system, start, t, cfg.rtol, cfg.atol, solver)[0]
        t.setflags(write=False)
        x.setflags(write=False)
        _ORBITS[key] = Orbit(t=t, x=x)
    return _ORBITS[key]
