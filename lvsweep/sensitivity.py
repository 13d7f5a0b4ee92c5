"""Where the landscape is steep: the sensitivity profile along an orbit.

For Lotka-Volterra the measure is the normal derivative ∇V·n̂ of the conserved function V, with
n̂ the outward unit normal of the orbit. In the plane n̂ is built from the orbit's geometry alone
(the tangent turned towards the outside), so that ∇V·n̂ = |∇V| is a checkable fact, not a
definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.simulate import Orbit
from lvsweep.systems import DynamicalSystem


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
    if system.dim == 2:
        turn = 1.0 if turns_counter_clockwise(x, f) else -1.0  # counter-clockwise: outside is on the right
        n = turn * np.stack([f[:, 1], -f[:, 0]], axis=-1)
    else:
        grad = system.lyapunov_grad(x)
        if grad is None:
            raise LvsweepError("analysis.sensitivity",
                               f"no orbit normal is defined for the {system.dim}-D system {system.name} without V")
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


def sensitivity_profile(kind: str, system: DynamicalSystem, orbit: Orbit) -> SensitivityProfile:
    measures = {"lyapunov_normal": lyapunov_normal}
    if kind not in measures:
        raise LvsweepError("analysis.sensitivity", f"unknown measure '{kind}'; allowed: {', '.join(measures)}")
    return measures[kind](system, orbit)
