"""Where the landscape is steep: the sensitivity profile along an orbit.

Two measures. `lyapunov_normal`, for systems with a Lyapunov function or first integral V: the
normal derivative ∇V·n̂, n̂ the outward unit normal of the orbit. For a conserved V in the plane
(Lotka-Volterra) n̂ is built from the orbit's geometry alone (the tangent turned towards the
outside), so that ∇V·n̂ = |∇V| is a checkable fact, not a definition; otherwise n̂ is the part of
∇V across the flow. `ftle`, for any system: the finite-time Lyapunov exponent over a horizon
(`lvsweep.analysis.ftle`), with kicks along the direction that grows fastest. `auto` picks the analytic
measure where V exists.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvsweep.analysis.alignment import spearman
from lvsweep.errors import LvsweepError
from lvsweep.analysis.ftle import OrbitStability, orbit_stability
from lvsweep.config.schema import TOLERANCE
from lvsweep.systems.simulate import DEFAULT_SOLVER, Orbit, Solver
from lvsweep.systems import DynamicalSystem, resolve_measure
from lvsweep.metric_names import DYNAMICS_MAX_LYAPUNOV, SENSITIVITY_FTLE_VS_LYAPUNOV_SPEARMAN


@dataclass(frozen=True)
class SensitivityProfile:
    kind: str
    values: np.ndarray  # [T]
    normals: np.ndarray  # [T, d], unit vectors used for the perturbation kicks


def turns_counter_clockwise(x: np.ndarray, f: np.ndarray) -> bool:
    """Whether the flow circles the orbit's centroid counter-clockwise (mean angular momentum > 0)."""
    r = x - x.mean(axis=0)
    return float(np.mean(r[:, 0] * f[:, 1] - r[:, 1] * f[:, 0])) > 0


def outward_normals(system: DynamicalSystem, x: np.ndarray) -> np.ndarray:
    """Unit normals pointing away from the region the orbit encloses."""
    f = system.rhs(x)
    if system.dim == 2 and system.conserved:
        turn = 1.0 if turns_counter_clockwise(x, f) else -1.0  # counter-clockwise: outside is on the right
        n = turn * np.stack([f[:, 1], -f[:, 0]], axis=-1)
    else:
        grad = system.lyapunov_grad(x)
        if grad is None:
            raise LvsweepError("analysis.sensitivity",
                               f"no orbit normal is defined for {system.name}, which has no V")
        tangent = f / np.linalg.norm(f, axis=-1, keepdims=True)
        n = grad - np.sum(grad * tangent, axis=-1, keepdims=True) * tangent
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def lyapunov_normal(system: DynamicalSystem, orbit: Orbit) -> SensitivityProfile:
    grad = system.lyapunov_grad(orbit.x)
    if grad is None:
        raise LvsweepError("analysis.sensitivity",
                           f"lyapunov_normal needs a system with a Lyapunov function; {system.name} has none")
    normals = outward_normals(system, orbit.x)
    return SensitivityProfile("lyapunov_normal", np.sum(grad * normals, axis=-1), normals)


@dataclass(frozen=True)
class SensitivityReport:
    profile: SensitivityProfile
    stability: OrbitStability
    metrics: dict[str, float]  # dynamics/max_lyapunov, and the FTLE-vs-V rank correlation where V exists


def measure_sensitivity(kind: str, system: DynamicalSystem, orbit: Orbit, ftle_horizon: float,
                        rtol: float = TOLERANCE, atol: float = TOLERANCE, solver: Solver = DEFAULT_SOLVER) -> SensitivityReport:
    """The chosen profile, plus the orbit's stability (FTLE and exponents), computed for every run."""
    measure = resolve_measure(kind, system)
    stability = orbit_stability(system, orbit, ftle_horizon, rtol, atol, solver)
    metrics = {DYNAMICS_MAX_LYAPUNOV: stability.max_lyapunov}
    ftle = SensitivityProfile("ftle", stability.ftle.values, stability.ftle.directions)
    if system.has_lyapunov:  # both notions exist: show how they relate, whichever the run uses
        analytic = lyapunov_normal(system, orbit)
        metrics[SENSITIVITY_FTLE_VS_LYAPUNOV_SPEARMAN] = float(spearman(ftle.values, analytic.values))
    profile = analytic if measure == "lyapunov_normal" else ftle
    return SensitivityReport(profile, stability, metrics)


def sensitivity_profile(kind: str, system: DynamicalSystem, orbit: Orbit, ftle_horizon: float = 1.0,
                        rtol: float = TOLERANCE, atol: float = TOLERANCE, solver: Solver = DEFAULT_SOLVER) -> SensitivityProfile:
    """The profile alone, for scripts that need no stability metrics."""
    return measure_sensitivity(kind, system, orbit, ftle_horizon, rtol, atol, solver).profile
