"""Time the lynx-hare fit (point estimate + posterior) and print its diagnostics; or calibrate it.

    PYTHONPATH=. python benchmarks/bench_estimation.py [--seed 0] [--repeat 1]
    PYTHONPATH=. python -m benchmarks.bench_estimation --sbc 60 [--figure docs/img/sbc.png]

`--sbc N`: simulation-based calibration on the lynx-hare design (21 yearly points, both states),
N data sets with truths from log-normal priors of log-sd 0.25 around the lynx-hare scale, the same
priors in every fit (`lvsweep.estimation.calibration`); prints each quantity's coverage of its
50/80/95 % intervals and the uniformity of its ranks, and draws both.

Prints wall and CPU seconds for each part (CPU time is the number to compare on a shared machine:
wall time there grows with other people's load), the estimates with their 80 % intervals, and the
sampler's diagnostics. Target: ≤ 30 s for point + posterior on two cores.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from lvsweep.analysis.plotting import save, styled, subplots
from lvsweep.estimation import ObservedSeries, fit, lynx_hare
from lvsweep.estimation.calibration import LEVELS, RANK_DRAWS, SBC_SETTINGS, Calibration
from lvsweep.systems.lotka_volterra import LotkaVolterra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sbc", type=int, default=0, metavar="N", help="calibrate on N simulated data sets instead")
    parser.add_argument("--figure", type=Path, default=Path("sbc.png"), help="where --sbc draws its figure")
    args = parser.parse_args()
    system = LotkaVolterra({"alpha": 1.0, "beta": 0.1, "gamma": 1.5, "delta": 0.075}, ["prey", "predator"])
    series = lynx_hare()
    if args.sbc:
        calibration_run(system, series, args.sbc, args.seed, args.figure)
        return
    for i in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fit(system, series, seed=args.seed)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"run {i}: {wall:.1f} s wall ({result.seconds['point']:.1f} point estimate, "
              f"{result.seconds['sample']:.1f} posterior), {cpu:.1f} s CPU; load average {load:.1f}")
    c = result.chain
    print(f"  walkers {c.walkers}, burn-in {c.burn}, kept steps {c.steps}, draws {len(result.draws)}")
    print(f"  acceptance {c.acceptance:.3f}, tau max {c.tau.max():.1f} (kept/tau = {c.steps / c.tau.max():.0f}), "
          f"ESS min {c.ess.min():.0f}, converged {c.converged}")
    for name, e in result.estimates().items():
        print(f"  {name:>15s} {e.median:10.4g}  80% [{e.low:.4g}, {e.high:.4g}]  mode {e.mode:.4g}")


def calibration_run(system: LotkaVolterra, series: ObservedSeries, n_sets: int, seed: int, figure: Path) -> None:
    from lvsweep.estimation.calibration import calibrate, lynx_hare_scale_priors

    wall = time.perf_counter()
    cal = calibrate(system, series, lynx_hare_scale_priors(), n_sets, seed=seed, settings=SBC_SETTINGS)
    print(f"SBC: {n_sets} data sets in {time.perf_counter() - wall:.0f} s; pooled coverage "
          + ", ".join(f"{int(100 * q)} %: {c.mean():.3f}" for q, c in cal.coverage().items()))
    print(cal.table())
    print(f"figure: {draw_calibration(cal, figure)}")


@styled
def draw_calibration(cal: Calibration, path: Path) -> Path:
    """Top: each quantity's rank histogram (5 bins) with the band a uniform histogram stays in 95 %
    of the time; bottom: coverage against the nominal level, with the binomial 95 % range."""
    from scipy import stats

    n = len(cal.names)
    fig, axes = subplots(2, n, figsize=(1.7 * n, 4.4), squeeze=False)
    bins = 5
    expected = cal.n_sets / bins
    low, high = stats.binom.interval(0.95, cal.n_sets, 1 / bins)
    for j, name in enumerate(cal.names):
        ax = axes[0, j]
        ax.axhspan(low, high, color="0.88")
        ax.axhline(expected, color="0.5", lw=0.8)
        ax.hist(cal.ranks[:, j], bins=np.linspace(0, RANK_DRAWS + 1, bins + 1), color="C0", edgecolor="white")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax = axes[1, j]
        levels = np.array(LEVELS)
        band = np.array([cal.bounds(q) for q in LEVELS]) / cal.n_sets
        ax.fill_between(levels, band[:, 0], band[:, 1], color="0.88")
        ax.plot([0.4, 1.0], [0.4, 1.0], color="0.5", lw=0.8)
        ax.plot(levels, [cal.coverage()[q][j] for q in LEVELS], "o-", color="C3", ms=3)
        ax.set_xlim(0.4, 1.0)
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("nominal")
        if j:
            ax.set_yticklabels([])
    axes[0, 0].set_ylabel("data sets per rank bin")
    axes[1, 0].set_ylabel("coverage")
    fig.suptitle(f"Simulation-based calibration, lynx-hare design: {cal.n_sets} data sets, truths from the priors "
                 "(grey: 95 % range of a calibrated fit)")
    return save(fig, path)


if __name__ == "__main__":
    main()
