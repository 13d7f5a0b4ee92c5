"""Spread of every chaotic or finite-time quantity the tests assert, over starts and CPU code paths.

A finite-time exponent of a chaotic orbit depends on the orbit, and rounding picks the orbit: a
different CPU (vector width, FMA or not, BLAS kernel, thread count) lands on a different orbit, which
is statistically the same as a different start. A test's tolerance must therefore hold for the whole
distribution over starts, on any code path. This script measures that distribution for the statistics
tests/test_ftle.py asserts (imported from there, so it measures what is tested), once per seed of the
starts and once per code path, each path in its own process (the switches are read at import):

    python benchmarks/numerics_spread.py                        # all paths, seeds 0-3
    python benchmarks/numerics_spread.py --seeds 0 1 --paths default no-avx2-fma

Columns: the reference and the test's tolerance, then mean, std, min, max of the quantity over the
seeds, and the worst |value − reference| as a fraction of the tolerance (must stay well below 1).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Environment switches that change the floating-point code a run executes on this x86 CPU.
PATHS: dict[str, dict[str, str]] = {
    "default": {},
    "1-thread": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
    "no-avx512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL"},
    "no-avx2-fma": {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL", "OPENBLAS_CORETYPE": "Nehalem"},
    "openblas-haswell": {"OPENBLAS_CORETYPE": "Haswell"},
}


def per_seed_quantities() -> dict[str, tuple[float, float, Callable[[int], float]]]:
    """name -> (reference, tolerance (absolute), value for a seed of the starts)."""
    from tests.test_ftle import LORENZ, ROSSLER, ensemble_exponents
    from lvsweep.analysis.ftle import attractor_starts, orbit_stability
    from lvsweep.systems.simulate import Orbit, integrate
    from lvsweep.systems import make_system
    from lvsweep.app import compose_config

    cache: dict[tuple[str, int], np.ndarray] = {}

    def spectra(e, seed: int) -> np.ndarray:
        if (e.system, seed) not in cache:
            cache[e.system, seed] = ensemble_exponents(e, seed)[1]
        return cache[e.system, seed]

    lorenz = make_system(compose_config("system=lorenz").system)
    trace = -(lorenz.params["sigma"] + 1 + lorenz.params["beta"])

    def short_lorenz(seed: int) -> float:
        """dynamics/max_lyapunov of a QUICK CLI run's 15-unit Lorenz orbit (tests/test_systems: > 0.5),
        here from a random start on the attractor instead of the config's."""
        start = attractor_starts(lorenz, np.ones(3), 1.0, 1, seed, 20.0, 1e-12, 1e-12)[0]
        t = np.linspace(0.0, 15.0, 300)
        orbit = Orbit(t, integrate(lorenz, start, t)[0])
        return orbit_stability(lorenz, orbit, 1.0).max_lyapunov

    return {
        "lorenz mean λ1 (test)": (0.9056, 0.9056 * LORENZ_REL, lambda s: spectra(LORENZ, s)[:, 0].mean()),
        "lorenz mean λ2 (test)": (0.0, 0.01, lambda s: spectra(LORENZ, s)[:, 1].mean()),
        "lorenz max|Σλ/trace−1|": (0.0, 1e-6, lambda s: np.abs(spectra(LORENZ, s).sum(1) / trace - 1).max()),
        "lorenz one-orbit λ1 std": (np.nan, np.nan, lambda s: spectra(LORENZ, s)[:, 0].std(ddof=1)),
        "rossler mean λ1 (test)": (0.0714, 0.0714 * ROSSLER_REL, lambda s: spectra(ROSSLER, s)[:, 0].mean()),
        "rossler mean λ2 (test)": (0.0, 0.005, lambda s: spectra(ROSSLER, s)[:, 1].mean()),
        "rossler one-orbit λ1 std": (np.nan, np.nan, lambda s: spectra(ROSSLER, s)[:, 0].std(ddof=1)),
        "lorenz 15-unit λ1 (>0.5)": (0.9056, 0.9056 - 0.5, short_lorenz),
    }


def fixed_start_quantities() -> dict[str, tuple[float, float, Callable[[], float]]]:
    """Tests whose start is the config's: they vary only with the code path."""
    from lvsweep.analysis.ftle import lyapunov_spectrum, orbit_stability, step_propagators
    from lvsweep.systems.simulate import simulate
    from lvsweep.systems import make_system
    from lvsweep.app import compose_config
    from tests.test_ftle import long_orbit

    def old_lorenz() -> float:  # the former test: one 100-unit orbit
        system, orbit = long_orbit("lorenz", 100, 10001, 1e-10)
        return lyapunov_spectrum(step_propagators(system, orbit.x, 0.01)[:-1], 0.01)[0]

    def old_rossler() -> float:  # the former test: one 4000-unit orbit
        system, orbit = long_orbit("rossler", 4000, 20001, 1e-8)
        return lyapunov_spectrum(step_propagators(system, orbit.x, 0.2, 1e-8, 1e-8)[:-1], 0.2)[0]

    def cli_lorenz() -> float:  # tests/test_systems: the cross-system run's Lorenz exponent > 0.5
        cfg = compose_config("system=lorenz", "system.n_steps=300").system
        return orbit_stability(make_system(cfg), simulate(cfg), 1.0).max_lyapunov

    def cycle(name: str) -> Callable[[], float]:  # FTLE over horizon 60 on a cycle: < limit
        return lambda: orbit_stability(*long_orbit(name, 60, 2001, 1e-10), 60.0).ftle.values.mean()

    return {
        "OLD lorenz one 100-unit orbit λ1": (0.9056, 0.9056 * 0.03, old_lorenz),
        "OLD rossler one 4000-unit orbit λ1": (0.0714, 0.0714 * 0.05, old_rossler),
        "lorenz config-start 15-unit λ1 (>0.5)": (0.9056, 0.9056 - 0.5, cli_lorenz),
        "lotka_volterra FTLE mean τ=60 (<0.06)": (0.0, 0.06, cycle("lotka_volterra")),
        "van_der_pol FTLE mean τ=60 (<0.03)": (0.0, 0.03, cycle("van_der_pol")),
    }


def child(seeds: list[int]) -> None:
    """Measure every quantity in this process (one code path) and print JSON."""
    import threadpoolctl

    out: dict[str, dict] = {}
    for name, (ref, tol, fn) in per_seed_quantities().items():
        out[name] = {"ref": ref, "tol": tol, "values": [float(fn(s)) for s in seeds]}
    for name, (ref, tol, fn) in fixed_start_quantities().items():
        out[name] = {"ref": ref, "tol": tol, "values": [float(fn())]}
    blas = [i.get("architecture") for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    print(json.dumps({"blas": blas, "quantities": out}))


# Filled in from tests/test_ftle.py's asserts, so the table shows the tolerance the tests use.
LORENZ_REL = float("nan")
ROSSLER_REL = float("nan")


def read_tolerances() -> None:
    """The rel= of the two published-value asserts, read from the test source (one place to change)."""
    import re

    global LORENZ_REL, ROSSLER_REL
    src = (ROOT / "tests" / "test_ftle.py").read_text()
    LORENZ_REL = float(re.search(r"approx\(0\.9056, rel=([0-9.]+)\)", src).group(1))
    ROSSLER_REL = float(re.search(r"approx\(0\.0714, rel=([0-9.]+)\)", src).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    read_tolerances()
    if args.child:
        child(args.seeds)
        return
    rows = []
    for path in args.paths:
        env = {**os.environ, **PATHS[path], "PYTHONPATH": str(ROOT)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", "--seeds", *map(str, args.seeds)], env=env,
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"path {path} failed:\n{proc.stderr}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"# {path}: {PATHS[path] or 'no switches'}; BLAS kernels {result['blas']}; "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        for name, q in result["quantities"].items():
            rows.append((name, path, q))
    print(f"\nseeds {args.seeds} (starts: Gaussian scatter about the config start, then a transient)")
    header = f"{'quantity':40s} {'path':17s} {'reference':>16s} {'n':>2s} {'mean':>9s} {'std':>9s} " \
             f"{'min':>9s} {'max':>9s} {'worst/tol':>9s}"
    print(header + "\n" + "-" * len(header))
    for name, path, q in sorted(rows, key=lambda r: r[0]):
        v = np.array(q["values"])
        ref = "" if np.isnan(q["ref"]) else f"{q['ref']:.4g} ± {q['tol']:.2g}"
        worst = np.abs(v - q["ref"]).max() / q["tol"] if ref else np.nan
        std = v.std(ddof=1) if len(v) > 1 else np.nan
        print(f"{name:40s} {path:17s} {ref:>16s} {len(v):2d} {v.mean():9.5f} {std:9.5f} {v.min():9.5f} "
              f"{v.max():9.5f} {worst:9.2f}")
    # Pooled over every path: the distribution a test meets on an unknown machine.
    print("\npooled over paths")
    for name in dict.fromkeys(r[0] for r in rows):
        vals = [q for n, _, q in rows if n == name]
        v = np.concatenate([q["values"] for q in vals])
        ref, tol = vals[0]["ref"], vals[0]["tol"]
        worst = np.abs(v - ref).max() / tol if not np.isnan(ref) else np.nan
        print(f"{name:40s} n={len(v):2d} mean {v.mean():.5f} std {v.std(ddof=1) if len(v) > 1 else np.nan:.5f} "
              f"min {v.min():.5f} max {v.max():.5f} worst/tol {worst:.2f}")


if __name__ == "__main__":
    main()
