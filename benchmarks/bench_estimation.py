"""Time the lynx-hare fit (point estimate + posterior) and print its diagnostics.

    PYTHONPATH=. python benchmarks/bench_estimation.py [--seed 0] [--repeat 1]

Prints wall and CPU seconds for each part (CPU time is the number to compare on a shared machine:
wall time there grows with other people's load), the estimates with their 80 % intervals, and the
sampler's diagnostics. Target: ≤ 30 s for point + posterior on two cores.
"""
from __future__ import annotations

import argparse
import os
import time

from lvsweep.estimation import fit, lynx_hare
from lvsweep.systems.lotka_volterra import LotkaVolterra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    system = LotkaVolterra({"alpha": 1.0, "beta": 0.1, "gamma": 1.5, "delta": 0.075}, ["prey", "predator"])
    series = lynx_hare()
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


if __name__ == "__main__":
    main()
