"""Does attention mark where the system is fragile? Kick the clean orbit and watch it diverge.

The clean state at k high- and k low-attention times is pushed by ε along the outward normal and
integrated beside its unkicked twin for a fixed horizon; the paper's claim is that kicks where
attention is low (the landscape steep) move the system more.

Two choices keep the statistic from measuring an accident of the orbit rather than the attention:

- **Distinct places.** On a periodic orbit the highest-attention times repeat once per cycle, so
  the k highest are the same point k/cycles times over: one kick counted k times as if independent,
  its separation curve oscillating in unison with its copies. Kicks are therefore chosen greedily
  in attention order, skipping any state closer than `min_separation` (in the orbit's range-scaled
  coordinates) to one already chosen: on a cycle, distinct phases; on a chaotic attractor, distinct
  places on it.
- **A window, not an instant.** The separation after a kick oscillates with the orbit (a kick on
  the Lotka-Volterra centre moves the state to a neighbouring orbit of another period: the distance
  grows with the phase drift and swings with the position along the cycle), so a ratio read at one
  horizon depends on where that horizon falls in the swing. `low_over_high` is instead the ratio of
  the geometric-mean separations over the whole horizon (t ∈ (0, horizon], all k kicks): the
  longest window available, and logarithmic because separations grow multiplicatively (exponentially
  on chaotic systems), so that one kick near a swing's peak does not dominate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np

from lvsweep.errors import LvsweepError

if TYPE_CHECKING:  # the figure worker unpickles results of this module without SciPy's solvers
    from lvsweep.systems import DynamicalSystem
    from lvsweep.systems.simulate import Orbit, Solver

# Kicks closer than this in the range-scaled state space (each state divided by its range along the
# orbit, so a box of side 1) count as the same place. 0.05 leaves room for about 20 distinct places
# per unit of orbit length (a Lotka-Volterra cycle is about 3 units long), independent of how
# finely the orbit is sampled, while any revisit of a place in a later cycle is far closer.
MIN_SEPARATION = 0.05


@dataclass(frozen=True)
class PerturbationResult:
    high_idx: np.ndarray  # [k] indices of the high-attention kicks, highest first
    low_idx: np.ndarray  # [k] indices of the low-attention kicks, lowest first
    t: np.ndarray  # [H] time since the kick
    deviation_high: np.ndarray  # [k, H] distance between kicked and unkicked orbits
    deviation_low: np.ndarray  # [k, H]
    min_separation: float = MIN_SEPARATION  # the separation the kicks keep (smaller if k needed it)

    @property
    def low_over_high(self) -> float:
        """Geometric-mean separation after low-attention kicks over that after high-attention kicks,
        both averaged over the horizon (t > 0; at t = 0 both are ε)."""
        return separation_ratio(self.deviation_low, self.deviation_high)


def separation_ratio(deviation_low: np.ndarray, deviation_high: np.ndarray) -> float:
    """exp(mean log d_low − mean log d_high) over kicks and the times after the kick."""
    tiny = np.finfo(float).tiny  # a kicked orbit that lands exactly on its twin: no log(0)
    log_low = np.log(np.maximum(deviation_low[:, 1:], tiny))
    log_high = np.log(np.maximum(deviation_high[:, 1:], tiny))
    return float(np.exp(log_low.mean() - log_high.mean()))


def extreme_indices(attention: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k highest and k lowest attention weights (stable order for ties)."""
    order = np.argsort(attention, kind="stable")
    return order[::-1][:k].copy(), order[:k].copy()


def distinct_extremes(states: np.ndarray, attention: np.ndarray, k: int,
                      min_separation: float = MIN_SEPARATION) -> tuple[np.ndarray, np.ndarray, float]:
    """The k highest- and k lowest-attention times whose states are pairwise at least
    `min_separation` apart in range-scaled coordinates.

    High kicks are drawn from the upper half of the attention ranking and low kicks from the lower
    half, so the two sets never share a time. If a half holds fewer than k distinct places (a large k
    on a short orbit), the separation is halved until it does; the separation used is returned.
    """
    span = np.ptp(states, axis=0)
    scaled = states / np.where(span > 0, span, 1.0)
    order = np.argsort(attention, kind="stable")
    half = len(order) // 2
    pools = order[::-1][:half], order[:half]
    sep = float(min_separation)
    while True:
        picks = [_greedy(scaled, pool, k, sep) for pool in pools]
        if all(len(p) == k for p in picks) or sep == 0.0:
            return picks[0], picks[1], sep
        sep = sep / 2 if sep > 1e-6 else 0.0


def _greedy(scaled: np.ndarray, pool: np.ndarray, k: int, sep: float) -> np.ndarray:
    """Walk `pool` in order, keeping each state at least `sep` from every state kept so far."""
    kept: list[int] = []
    for i in pool:
        if not kept or np.min(np.linalg.norm(scaled[kept] - scaled[i], axis=1)) >= sep:
            kept.append(int(i))
            if len(kept) == k:
                break
    return np.array(kept, dtype=int)


def perturbation_test(system: DynamicalSystem, orbit: Orbit, normals: np.ndarray, attention: np.ndarray,
                      k: int, epsilon: float, horizon: float, rtol: float, atol: float,
                      n_points: int = 101, min_separation: float = MIN_SEPARATION,
                      solver: Optional[Solver] = None) -> PerturbationResult:
    """Kick the clean orbit at k high- and k low-attention places and integrate beside the twins
    (with `solver`, the orbit's method and bounds; SciPy's defaults without one)."""
    from lvsweep.systems.simulate import DEFAULT_SOLVER, integrate

    high, low, sep = distinct_extremes(orbit.x, attention, k, min_separation)
    idx = np.concatenate([high, low])
    base = orbit.x[idx]
    kicked = base + epsilon * normals[idx]
    problem = system.check_state(kicked)
    if problem:
        raise LvsweepError("analysis.perturb.epsilon", f"a kick of {epsilon:g} leaves the state space ({problem})")
    t = np.linspace(0.0, horizon, n_points)
    paths = integrate(system, np.concatenate([base, kicked]), t, rtol, atol, DEFAULT_SOLVER if solver is None else solver)
    deviation = np.linalg.norm(paths[len(idx):] - paths[: len(idx)], axis=-1)
    return PerturbationResult(high, low, t, deviation[:k], deviation[k:], sep)
