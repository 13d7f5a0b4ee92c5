"""Phase response curve: how much a small kick at each phase of the cycle moves the clock.

Phase comes from the simulated orbit itself: phase 0 is an upward crossing of the first state
variable through the middle of its range (the section), and the period is the mean time between
crossings. The states of one cycle of the orbit are kicked by ε·(range of the kicked variable)
along that variable and integrated, together with unkicked twins, in one batched solve. The phase
shift is read at a section crossing of the twin: the kicked orbit's nearest crossing, earlier
(an advance, positive) or later, in cycles.

- Limit cycle (van der Pol, Goodwin): read `cycles` periods after the kick, when the kicked orbit
  is back on the attracting cycle; the shift then tends to the asymptotic phase shift (its error
  shrinks like the cycle's Floquet multiplier to the power `cycles`).
- Centre (Lotka-Volterra): a kick moves the orbit to a neighbouring closed orbit with another
  period T', so a shift read at a crossing drifts by (T' − T)/T every cycle and has no asymptote.
  Each orbit is read on its own clock instead: the phase of a state is 1 − (time to its next
  crossing)/(its orbit's period), and the shift is the kicked state's phase on the new orbit
  minus the unkicked phase (a shift of the angle variable, free of the drift).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvsweep.analysis.alignment import spearman
from lvsweep.errors import LvsweepError
from lvsweep.systems.simulate import DEFAULT_SOLVER, Orbit, Solver, integrate
from lvsweep.systems import DynamicalSystem
from lvsweep.metric_names import PRC_PERIOD, PRC_SPEARMAN

SAMPLES_PER_PERIOD = 400


@dataclass(frozen=True)
class PhaseResponse:
    period: float
    t0: float  # an orbit time of phase 0
    phase: np.ndarray  # [K] phase of each kick, in cycles, in [0, 1)
    t_kick: np.ndarray  # [K] orbit time of each kick
    x_kick: np.ndarray  # [K, d] unkicked state at each kick
    shift: np.ndarray  # [K] phase shift in cycles, positive = advance
    state: int  # index of the kicked state variable
    epsilon: float  # kick size in state units

    def phase_of(self, t: np.ndarray) -> np.ndarray:
        return np.mod((np.asarray(t) - self.t0) / self.period, 1.0)

    def at(self, t: np.ndarray) -> np.ndarray:
        """The PRC at the phase of each time `t` (periodic linear interpolation)."""
        return np.interp(self.phase_of(t), self.phase, self.shift, period=1.0)


def upward_crossings(t: np.ndarray, s: np.ndarray, level: float) -> np.ndarray:
    """Times where the series `s[T]` rises through `level`, linearly interpolated between samples."""
    i = np.flatnonzero((s[:-1] < level) & (s[1:] >= level))
    return t[i] + (level - s[i]) * (t[i + 1] - t[i]) / (s[i + 1] - s[i])


def section_level(orbit: Orbit) -> float:
    s = orbit.x[:, 0]
    return 0.5 * (s.min() + s.max())


def orbit_period(orbit: Orbit) -> tuple[float, np.ndarray]:
    """The cycle's period (mean time between section crossings) and the crossing times."""
    crossings = upward_crossings(orbit.t, orbit.x[:, 0], section_level(orbit))
    if len(crossings) < 2:
        raise LvsweepError("system.t_end", "the phase response needs an orbit of at least two cycles; "
                                           f"found {len(crossings)} section crossing(s) in [t_start, t_end]")
    return float(np.diff(crossings).mean()), crossings


def nearest_crossing(t: np.ndarray, s: np.ndarray, level: float, target: np.ndarray) -> np.ndarray:
    """For each row of s [K, T], its upward crossing time nearest target[K]."""
    out = np.full(len(s), np.nan)
    for k, row in enumerate(s):
        c = upward_crossings(t, row, level)
        if len(c):
            out[k] = c[np.argmin(np.abs(c - target[k]))]
    return out


def state_index(state: str, names: tuple[str, ...]) -> int:
    """`analysis.prc_kick.state` given as a name or an index (validated beforehand)."""
    return names.index(state) if state in names else int(state)


def prc_alignment(response: PhaseResponse, t: np.ndarray, attention: np.ndarray) -> dict[str, float]:
    """Does attention find the times when a kick moves the clock most? Spearman(attention, |PRC(phase(t))|)."""
    return {PRC_SPEARMAN: float(spearman(attention, np.abs(response.at(t)))), PRC_PERIOD: response.period}


def write_prc_csv(path: Path, response: PhaseResponse, names: tuple[str, ...]) -> Path:
    table = np.column_stack([response.phase, response.t_kick, response.x_kick, response.shift])
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phase", "t", *names, "phase_shift"])
        writer.writerows(table.tolist())
    return path


def phase_response(system: DynamicalSystem, orbit: Orbit, state: int, epsilon: float, cycles: int,
                   rtol: float, atol: float, cycle_index: int = 0, solver: Solver = DEFAULT_SOLVER) -> PhaseResponse:
    """Kick the orbit's samples of cycle number `cycle_index` (0: the first whole cycle) by
    `epsilon`·(range of the state) and measure their phase shifts."""
    period, crossings = orbit_period(orbit)
    if len(crossings) < cycle_index + 2:
        raise LvsweepError("system.t_end", f"the orbit has fewer than {cycle_index + 2} section crossings")
    t0 = crossings[cycle_index]
    idx = np.flatnonzero((orbit.t >= t0) & (orbit.t < t0 + period))
    kick = epsilon * np.ptp(orbit.x[:, state])
    base = orbit.x[idx]
    kicked = base.copy()
    kicked[:, state] += kick
    problem = system.check_state(kicked)
    if problem:
        raise LvsweepError("analysis.prc_kick.epsilon", f"a kick of {kick:g} leaves the state space ({problem})")
    centre = system.cycle == "centre"
    read_at = 1 if centre else cycles
    t = np.linspace(0.0, (read_at + 2.5) * period, int((read_at + 2.5) * SAMPLES_PER_PERIOD) + 1)
    paths = integrate(system, np.concatenate([base, kicked]), t, rtol, atol, solver)[..., 0]
    level = section_level(orbit)
    k = len(idx)
    # The twin's crossing number `read_at` after the kick; each twin starts at its own phase.
    start_phase = (orbit.t[idx] - t0) / period
    t_ref = nearest_crossing(t, paths[:k], level, (read_at - start_phase) * period)
    t_kicked = nearest_crossing(t, paths[k:], level, t_ref)
    if centre:
        own_period = nearest_crossing(t, paths[k:], level, t_kicked + period) - t_kicked
        shift = np.mod(t_ref / period - t_kicked / own_period + 0.5, 1.0) - 0.5
    else:
        shift = np.mod((t_ref - t_kicked) / period + 0.5, 1.0) - 0.5
    if not np.all(np.isfinite(shift)):
        raise LvsweepError("analysis.prc_kick.epsilon", "a kicked orbit left the cycle (no section crossing); "
                                                        "use a smaller kick")
    return PhaseResponse(period, float(t0), start_phase, orbit.t[idx], base, shift, state, float(kick))
