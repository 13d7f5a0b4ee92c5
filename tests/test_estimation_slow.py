"""Slow estimation checks: interval calibration over many data sets, posterior recovery, the wheel's data.

Run with `pytest -m slow tests/test_estimation_slow.py`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from lvsweep.estimation import FitSettings, fit
from tests.test_estimation import START, TRUTH, lv, simulated

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
NAMES = (*TRUTH, *START, "sigma_prey", "sigma_predator")
SIGMA = 0.25


def test_posterior_recovers_truth_at_three_noise_levels():
    """At every noise level each quantity's truth lies within 4 posterior sd of the posterior median
    (a miss would have probability ~6e-5 per quantity if calibrated; 24 checks), and the intervals
    widen with the noise (the 80 % width of every rate grows from each level to the next)."""
    widths = []
    for sigma in (0.05, 0.1, 0.25):
        result = fit(lv(), simulated(sigma, seed=int(sigma * 1000)), seed=1)
        assert result.chain.converged
        truth = {**TRUTH, **START, "sigma_prey": sigma, "sigma_predator": sigma}
        for j, name in enumerate(result.names):
            draws = result.draws[:, j]
            assert abs(np.median(draws) - truth[name]) < 4 * np.std(draws), (sigma, name)
        est = result.estimates()
        widths.append([est[n].high - est[n].low for n in TRUTH])
    assert np.all(np.diff(np.array(widths), axis=0) > 0)


def test_80_percent_intervals_cover_at_80_percent():
    """60 data sets (σ = 0.25, 21 points) × 8 quantities = 480 interval checks. If the intervals are
    calibrated, the number covering the truth is Binomial(480, 0.8) when checks are independent; the
    test accepts its 99 % interval, [357, 410] (coverage 0.744-0.854). The checks within one data set
    are correlated, which widens the true spread a little, so this tolerance errs towards passing
    only slightly. Sampling settings are lighter than the defaults (≥ 20 τ instead of 50 τ; ≥ 400
    steps × 32 walkers, ESS ≈ 600 per quantity) since quantiles, not τ, are what is checked here."""
    settings = FitSettings(burn=100, min_steps=400, max_steps=700, min_tau_multiple=20.0)
    n_sets = 60
    covered = np.zeros((n_sets, len(NAMES)), dtype=bool)
    for k in range(n_sets):
        result = fit(lv(), simulated(SIGMA, seed=10_000 + k), seed=k, settings=settings)
        truth = {**TRUTH, **START, "sigma_prey": SIGMA, "sigma_predator": SIGMA}
        est = result.estimates()
        covered[k] = [est[n].low <= truth[n] <= est[n].high for n in NAMES]
    n = covered.size
    low, high = stats.binom.interval(0.99, n, 0.8)
    print(f"coverage {covered.mean():.3f} over {n} checks; per quantity "
          + ", ".join(f"{name} {c:.2f}" for name, c in zip(NAMES, covered.mean(axis=0))))
    assert low <= covered.sum() <= high


def test_wheel_ships_the_lynx_hare_data(tmp_path):
    """Built as a user would get it, and imported from the unpacked wheel with the source tree out of
    reach: lynx_hare() must read the packaged CSV through importlib.resources."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("lvsweep-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "lvsweep/datasets/lynx_hare.csv" in names and "lvsweep/datasets/README.md" in names
        zf.extractall(tmp_path / "site")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    code = ("import lvsweep.estimation as e, lvsweep; s = e.lynx_hare(); "
            "print(lvsweep.__file__, s.y.shape, s.y[0].tolist())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert str(tmp_path / "site") in out and "(21, 2) [30.0, 4.0]" in out
