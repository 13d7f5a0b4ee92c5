"""Does attention mark where the system is fragile? Kick the clean orbit and watch it diverge.

The clean state at the k highest- and k lowest-attention times is pushed by ε along the outward
normal and integrated beside its unkicked twin for a fixed horizon; the paper's claim is that
kicks where attention is low (the landscape steep) move the system more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.systems.simulate import DEFAULT_SOLVER, Orbit, Solver, integrate
from lvsweep.systems import DynamicalSystem


@dataclass(frozen=True)
class PerturbationResult:
    high_idx: np.ndarray  # [k] indices of the highest-attention times
    low_idx: np.ndarray  # [k]
    t: np.ndarray  # [H] time since the kick
    deviation_high: np.ndarray  # [k, H] distance between kicked and unkicked orbits
    deviation_low: np.ndarray  # [k, H]

    @property
    def low_over_high(self) -> float:
        return float(self.deviation_low[:, -1].mean() / self.deviation_high[:, -1].mean())


def extreme_indices(attention: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k highest and k lowest attention weights (stable order for ties)."""
    order = np.argsort(attention, kind="stable")
    return order[::-1][:k].copy(), order[:k].copy()


def perturbation_test(system: DynamicalSystem, orbit: Orbit, normals: np.ndarray, attention: np.ndarray,
                      k: int, epsilon: float, horizon: float, rtol: float, atol: float,
                      n_points: int = 101, solver: Solver = DEFAULT_SOLVER) -> PerturbationResult:
    high, low = extreme_indices(attention, k)
    idx = np.concatenate([high, low])
    base = orbit.x[idx]
    kicked = base + epsilon * normals[idx]
    problem = system.check_state(kicked)
    if problem:
        raise LvsweepError("analysis.perturb.epsilon", f"a kick of {epsilon:g} leaves the state space ({problem})")
    t = np.linspace(0.0, horizon, n_points)
    paths = integrate(system, np.concatenate([base, kicked]), t, rtol, atol, solver)
    deviation = np.linalg.norm(paths[len(idx):] - paths[: len(idx)], axis=-1)
    return PerturbationResult(high, low, t, deviation[:k], deviation[k:])
