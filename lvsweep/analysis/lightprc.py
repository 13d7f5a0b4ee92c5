"""The phase response of a circadian pacemaker to a bright light pulse, measured as Khalsa et al.
(2003) measured it in people, and what a trained attention marks along the pacemaker's orbit.

The protocol (times in hours; the clock starts at midnight of the first day):

1. Entrainment, `entrain_days` days of 16 h of room light (`room_lux`, 07:00–23:00) and 8 h of
   darkness (sleep), from the system's start.
2. A first constant routine in dim light (`dim_lux`) from 07:00 of the next day, `CR1_HOURS` + s long.
3. 8 h of sleep (0 lux), then a 16 h waking day in dim light with a pulse of `pulse_lux` for
   `pulse_hours` centred in it (8 h after waking), then 8 h of sleep.
4. A second constant routine in dim light (`CR2_HOURS`).

The shift is the clock time of the CBT minimum in the first routine minus that of the first CBT
minimum in the second, wrapped into (−12, 12] h: an advance is positive, and the drift of the
protocol itself is included, as it is in the measured curve. The pulse's phase is its centre minus
the first routine's CBT minimum, wrapped into [−12, 12) h. Lengthening the first routine by
s = 0, 24/K, … (K = `phases`) moves the rest of the protocol, and so the pulse, through a whole day
of phases. The same protocol with the pulse left at dim light gives the drift (`lightprc/drift`).

All K protocols, with and without the pulse, run as one batch of classical fourth-order
Runge-Kutta steps of `step` hours. Light is piecewise constant and every switch falls on the step
grid (times are rounded to it; with the defaults all are exact), so each step sees one light level
and the method keeps its order. At 0.05 h the shifts agree with those at 0.0125 h to well below a
minute (tests/test_lightprc.py checks it), and a scan of 48 phases takes about a second.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from lvsweep.analysis.alignment import replicate_summary, spearman
from lvsweep.analysis.controls import control_metrics
from lvsweep.errors import LvsweepError
from lvsweep.metric_names import (ALIGN_BASELINE_LINEAR, ALIGN_BASELINE_NORM, ALIGN_EXCESS, ALIGN_PVALUE,
                                  ALIGN_SPEARMAN_INIT, ALIGN_TRAINING_GAIN, LIGHTPRC_ATTENTION_PEAK,
                                  LIGHTPRC_BASELINE_LINEAR, LIGHTPRC_BASELINE_NORM, LIGHTPRC_CROSSOVER,
                                  LIGHTPRC_DEAD_ZONE, LIGHTPRC_DELAYS_THEN_ADVANCES, LIGHTPRC_DIFF, LIGHTPRC_DRIFT,
                                  LIGHTPRC_EXCESS, LIGHTPRC_MAX_ADVANCE, LIGHTPRC_MAX_ADVANCE_PHASE,
                                  LIGHTPRC_MAX_DELAY, LIGHTPRC_MAX_DELAY_PHASE, LIGHTPRC_PEAK_ERROR_ADVANCE,
                                  LIGHTPRC_PEAK_ERROR_DELAY, LIGHTPRC_PEAK_TO_TROUGH, LIGHTPRC_PERIOD,
                                  LIGHTPRC_PVALUE, LIGHTPRC_SPEARMAN, LIGHTPRC_SPEARMAN_ADVANCE,
                                  LIGHTPRC_SPEARMAN_DELAY, LIGHTPRC_SPEARMAN_INIT, LIGHTPRC_TRAINING_GAIN,
                                  LIGHTPRC_TYPE)
from lvsweep.systems.light import SLEEP_HOURS, WAKE_HOURS, LightDriven, find_minima

WAKE_CLOCK = 7.0  # clock time of waking (lights on) during entrainment, h
CR1_HOURS = 26.0  # the shortest first constant routine: it holds a CBT minimum whatever the phase
CR2_HOURS = 36.0  # long enough to hold the first CBT minimum after any shift
DEAD_ZONE_SHIFT = 0.5  # |shift| below this counts as no shift, h
TYPE0_JUMP = 12.0  # a jump between neighbouring phases of half a cycle or more: type 0 resetting


@dataclass(frozen=True)
class Protocol:
    """The light protocol (see the module's docstring); the fields, their meaning and defaults are
    `analysis.light_pulse`'s (`lvsweep.config.schema.LightPulseConfig`)."""

    pulse_lux: float
    pulse_hours: float
    room_lux: float
    dim_lux: float
    phases: int
    entrain_days: int
    step: float

    @classmethod
    def of(cls, cfg: Any) -> Protocol:
        return cls(float(cfg.pulse_lux), float(cfg.pulse_hours), float(cfg.room_lux), float(cfg.dim_lux),
                   int(cfg.phases), int(cfg.entrain_days), float(cfg.step))

    @classmethod
    def default(cls, **changes: Any) -> Protocol:
        """The protocol at the config's defaults, with `changes`."""
        from lvsweep.config.schema import LightPulseConfig

        return replace(cls.of(LightPulseConfig()), **changes)


@dataclass(frozen=True)
class LightPRC:
    phase: np.ndarray  # [K] pulse centre minus the first routine's CBT minimum, h, in [−12, 12), sorted
    shift: np.ndarray  # [K] phase shift, h, advance > 0 (drift included)
    control: np.ndarray  # [K] the same protocol without the pulse: the drift at each phase
    pulse_clock: np.ndarray  # [K] clock time of the pulse centre, h in [0, 24)
    cbt1_clock: float  # clock time of the first routine's CBT minimum
    cbt2_clock: np.ndarray  # [K] clock time of the second routine's CBT minimum (with the pulse)
    protocol: Protocol

    def at(self, phase: np.ndarray) -> np.ndarray:
        """The shift at each phase (h from the CBT minimum), periodic linear interpolation."""
        return np.interp(np.asarray(phase, dtype=float), self.phase, self.shift, period=24.0)


def wrap(h: np.ndarray | float, low: float = -12.0) -> np.ndarray:
    """Hours wrapped into [low, low + 24)."""
    return np.mod(np.asarray(h, dtype=float) - low, 24.0) + low


def wrap_shift(h: np.ndarray) -> np.ndarray:
    """Hours wrapped into (−12, 12]."""
    return -wrap(-np.asarray(h, dtype=float))


def rk4(system: LightDriven, x0: np.ndarray, lux: np.ndarray, dt: float) -> np.ndarray:
    """States [K, N + 1, d] from x0 [K, d] under light lux [K, N], one classical Runge-Kutta step of
    `dt` per light value."""
    x = np.array(x0, dtype=float)
    out = np.empty((x.shape[0], lux.shape[1] + 1, x.shape[1]))
    out[:, 0] = x
    f = system.rhs_light
    with np.errstate(all="ignore"):
        for i in range(lux.shape[1]):
            light = lux[:, i]
            k1 = f(x, light)
            k2 = f(x + 0.5 * dt * k1, light)
            k3 = f(x + 0.5 * dt * k2, light)
            k4 = f(x + dt * k3, light)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            out[:, i + 1] = x
    if not np.all(np.isfinite(out)):
        raise LvsweepError("analysis.light_pulse.step", f"the {system.name} light protocol diverged with steps "
                                                        f"of {dt:g} h; use a smaller step")
    return out


def entrained_state(system: LightDriven, start: np.ndarray, protocol: Protocol) -> np.ndarray:
    """The state at 07:00 after `entrain_days` of 16 h room light and 8 h darkness from `start` (midnight)."""
    dt = protocol.step
    per_day = round(24 / dt)
    t = (np.arange(per_day) + 0.5) * dt  # step midpoints
    day = np.where((t >= WAKE_CLOCK) & (t < WAKE_CLOCK + WAKE_HOURS), protocol.room_lux, 0.0)
    lux = np.concatenate([np.tile(day, protocol.entrain_days), day[: round(WAKE_CLOCK / dt)]])
    return rk4(system, np.asarray(start, dtype=float)[None], lux[None], dt)[0, -1]


def light_prc(system: LightDriven, start: np.ndarray, protocol: Optional[Protocol] = None) -> LightPRC:
    """The light PRC of `system` by the protocol of Khalsa et al. 2003 (see the module's docstring)."""
    p = protocol or Protocol.default()
    dt = p.step
    steps = lambda h: int(round(h / dt))  # noqa: E731 - a time on the step grid
    x0 = entrained_state(system, start, p)
    t0 = 24.0 * p.entrain_days + WAKE_CLOCK  # the first routine starts here (clock 07:00)
    k = p.phases
    offset = np.array([steps(24.0 * i / k) for i in range(k)])  # extra steps of the first routine
    cr1 = steps(CR1_HOURS) + offset
    wake = cr1 + steps(SLEEP_HOURS)
    pulse_on, pulse_off = wake + steps(WAKE_HOURS / 2 - p.pulse_hours / 2), wake + steps(WAKE_HOURS / 2 + p.pulse_hours / 2)
    sleep2 = wake + steps(WAKE_HOURS)
    cr2 = sleep2 + steps(SLEEP_HOURS)
    n = int(cr2.max() + steps(CR2_HOURS))
    i = np.arange(n)[None]
    dark = ((i >= cr1[:, None]) & (i < wake[:, None])) | ((i >= sleep2[:, None]) & (i < cr2[:, None]))
    pulse = (i >= pulse_on[:, None]) & (i < pulse_off[:, None])
    base = np.where(dark, 0.0, p.dim_lux)
    lux = np.concatenate([np.where(pulse, p.pulse_lux, base), base])  # with the pulse, then without
    x = rk4(system, np.repeat(x0[None], 2 * k, axis=0), lux, dt)
    t = t0 + dt * np.arange(n + 1)
    cbt = [m + system.cbt_offset for m in find_minima(t, system.cbt_marker(x))]
    first = cbt[0][(cbt[0] > t0) & (cbt[0] < t0 + CR1_HOURS)]
    if not len(first):
        raise LvsweepError("system", f"{system.name} shows no CBT minimum in the first constant routine; "
                                     "choose system.params that give a circadian rhythm")
    cbt1 = first[0]
    cr2_start = t0 + dt * np.concatenate([cr2, cr2])
    cbt2 = np.array([next((m for m in c if m > s), math.nan) for c, s in zip(cbt, cr2_start)])
    if not np.all(np.isfinite(cbt2)):
        raise LvsweepError("system", f"{system.name} shows no CBT minimum in the second constant routine")
    shift = wrap_shift(np.mod(cbt1, 24) - np.mod(cbt2, 24))
    centre = t0 + dt * (pulse_on + pulse_off) / 2
    phase = wrap(centre - cbt1)
    order = np.argsort(phase)
    return LightPRC(phase[order], shift[:k][order], shift[k:][order], np.mod(centre, 24)[order],
                    float(np.mod(cbt1, 24)), np.mod(cbt2[:k], 24)[order], p)


def circular_runs(mask: np.ndarray) -> int:
    """The longest run of True in a circular boolean array."""
    if mask.all():
        return len(mask)
    m = np.roll(mask, -int(np.flatnonzero(~mask)[0]))  # start at a False
    best = run = 0
    for v in m:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def crossover(prc: LightPRC) -> float:
    """The phase where delays turn to advances: the last upward zero crossing on the way from the
    largest delay forward to the largest advance (h from the CBT minimum; NaN if there is none)."""
    k = len(prc.phase)
    lo, hi = int(np.argmin(prc.shift)), int(np.argmax(prc.shift))
    found = math.nan
    i = lo
    while i != hi:
        j = (i + 1) % k
        a, b = prc.shift[i], prc.shift[j]
        if a < 0 <= b:
            span = wrap(prc.phase[j] - prc.phase[i], 0.0)
            found = float(wrap(prc.phase[i] + span * a / (a - b)))
        i = j
    return found


def features(prc: LightPRC) -> dict[str, float]:
    """The curve's features, as `lightprc/*` metrics (hours)."""
    s = prc.shift
    jumps = np.abs(np.diff(np.append(s, s[0])))
    before = (prc.phase >= -6) & (prc.phase < 0)
    after = (prc.phase > 0) & (prc.phase <= 6)
    spacing = 24.0 / len(s)
    return {
        LIGHTPRC_MAX_ADVANCE: float(s.max()),
        LIGHTPRC_MAX_ADVANCE_PHASE: float(prc.phase[np.argmax(s)]),
        LIGHTPRC_MAX_DELAY: float(-s.min()),
        LIGHTPRC_MAX_DELAY_PHASE: float(prc.phase[np.argmin(s)]),
        LIGHTPRC_PEAK_TO_TROUGH: float(s.max() - s.min()),
        LIGHTPRC_TYPE: 1.0 if jumps.max() < TYPE0_JUMP else 0.0,
        LIGHTPRC_CROSSOVER: crossover(prc),
        LIGHTPRC_DEAD_ZONE: circular_runs(np.abs(s) < DEAD_ZONE_SHIFT) * spacing,
        LIGHTPRC_DELAYS_THEN_ADVANCES: float(s[before].mean() < 0 < s[after].mean()),
        LIGHTPRC_DRIFT: float(prc.control.mean()),
    }


def measured() -> dict[str, Any]:
    """The features of the measured curve (Khalsa et al. 2003), with their sources:
    lvsweep/datasets/khalsa2003_prc.json (provenance in lvsweep/datasets/README.md)."""
    return json.loads(resources.files("lvsweep").joinpath("datasets/khalsa2003_prc.json").read_text())


# The model's features compared with the measured ones: metric -> the measured feature's key.
COMPARED = {LIGHTPRC_TYPE: "type", LIGHTPRC_PEAK_TO_TROUGH: "peak_to_trough_h", LIGHTPRC_CROSSOVER: "crossover_h",
            LIGHTPRC_DRIFT: "drift_h", LIGHTPRC_DELAYS_THEN_ADVANCES: "delays_then_advances"}


def differences(feats: Mapping[str, float]) -> dict[str, float]:
    """`lightprc/diff/<feature>`: the model's value minus the measured one (the crossover as a
    circular difference in (−12, 12] h)."""
    ref = measured()["features"]
    out = {}
    for name, key in COMPARED.items():
        d = feats[name] - ref[key]
        if name == LIGHTPRC_CROSSOVER:
            d = float(wrap_shift(d))
        out[LIGHTPRC_DIFF + name.partition("/")[2]] = float(d)
    return out


def orbit_phase(system: LightDriven, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, float]:
    """Each orbit time's phase relative to the CBT minimum, h in [−12, 12), and the orbit's period.

    The orbit free-runs at constant light with its own period T, so time since the last CBT minimum
    is scaled by 24/T: phase is read in circadian hours, as the PRC's phase axis is."""
    cbt = system.cbt_minima(t, x)
    if len(cbt) < 2:
        raise LvsweepError("system.t_end", f"the light PRC's alignment needs an orbit of at least two CBT minima; "
                                           f"found {len(cbt)} in [t_start, t_end]")
    period = float(np.diff(cbt).mean())
    return wrap(24.0 * (np.asarray(t) - cbt[0]) / period), period


def attention_peak(phase: np.ndarray, attention: np.ndarray, bins: int) -> float:
    """The phase (h) of the bin of largest mean attention, over `bins` bins of [−12, 12)."""
    edges = np.linspace(-12, 12, bins + 1)
    which = np.clip(np.digitize(phase, edges) - 1, 0, bins - 1)
    means = np.array([attention[which == b].mean() if np.any(which == b) else -np.inf for b in range(bins)])
    return float(0.5 * (edges[:-1] + edges[1:])[np.argmax(means)])


CONTROLS = {ALIGN_BASELINE_NORM: LIGHTPRC_BASELINE_NORM, ALIGN_BASELINE_LINEAR: LIGHTPRC_BASELINE_LINEAR,
            ALIGN_SPEARMAN_INIT: LIGHTPRC_SPEARMAN_INIT, ALIGN_PVALUE: LIGHTPRC_PVALUE, ALIGN_EXCESS: LIGHTPRC_EXCESS,
            ALIGN_TRAINING_GAIN: LIGHTPRC_TRAINING_GAIN}


def light_alignment(system: LightDriven, t: np.ndarray, x: np.ndarray, prc: LightPRC, attention: np.ndarray,
                    init_attention: np.ndarray, noisy: np.ndarray, feats: Mapping[str, float]) -> dict[str, float]:
    """What attention [R, T] marks: Spearman ρ with |light PRC| along the orbit (mean over replicates,
    and with several replicates its spread and 95 % interval as `lightprc/spearman_std`, `_ci_low`,
    `_ci_high`), within each lobe, the circular error of its peak phase, and the controls of `align/*` on the
    |light PRC| (state norm, best linear score, untrained model; circular shifts) as `lightprc/*`."""
    phase, period = orbit_phase(system, t, x)
    shift = prc.at(phase)
    sensitivity = np.abs(shift)
    rhos = spearman(attention, sensitivity)
    rho = float(np.mean(rhos))
    lobes = {}
    for name, mask in ((LIGHTPRC_SPEARMAN_ADVANCE, shift > 0), (LIGHTPRC_SPEARMAN_DELAY, shift < 0)):
        lobes[name] = float(np.mean(spearman(attention[:, mask], sensitivity[mask]))) if mask.sum() > 2 else math.nan
    peak = attention_peak(phase, attention.mean(axis=0), len(prc.phase))
    controls = control_metrics(attention, init_attention, noisy, sensitivity, -rho)
    return {
        LIGHTPRC_SPEARMAN: rho, **replicate_summary(LIGHTPRC_SPEARMAN, rhos), **lobes, LIGHTPRC_PERIOD: period, LIGHTPRC_ATTENTION_PEAK: peak,
        LIGHTPRC_PEAK_ERROR_ADVANCE: float(abs(wrap_shift(peak - feats[LIGHTPRC_MAX_ADVANCE_PHASE]))),
        LIGHTPRC_PEAK_ERROR_DELAY: float(abs(wrap_shift(peak - feats[LIGHTPRC_MAX_DELAY_PHASE]))),
        **{CONTROLS[k]: v for k, v in controls.items() if k in CONTROLS},
    }


def write_lightprc_csv(path: Path, prc: LightPRC) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phase", "shift", "shift_without_pulse", "pulse_clock", "cbtmin1_clock", "cbtmin2_clock"])
        writer.writerows(zip(prc.phase.tolist(), prc.shift.tolist(), prc.control.tolist(), prc.pulse_clock.tolist(),
                             [prc.cbt1_clock] * len(prc.phase), prc.cbt2_clock.tolist()))
    return path


def light_prc_analysis(system: LightDriven, start: np.ndarray, protocol: Protocol, t: np.ndarray, x: np.ndarray,
                       attention: Optional[np.ndarray] = None, init_attention: Optional[np.ndarray] = None,
                       noisy: Optional[np.ndarray] = None) -> tuple[LightPRC, dict[str, float]]:
    """The light PRC, its features, their differences from the measured ones and (given attention
    [R, T]) the alignment metrics."""
    prc = light_prc(system, start, protocol)
    feats = features(prc)
    metrics = {**feats, **differences(feats)}
    if attention is not None:
        metrics.update(light_alignment(system, t, x, prc, attention, init_attention, noisy, feats))
    return prc, metrics
