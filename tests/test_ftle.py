"""FTLE and Lyapunov exponents against published values, direct integration, and the no-chaos limit."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from lvsweep.analysis.ftle import lyapunov_spectrum, orbit_stability, step_propagators, windowed_ftle
from lvsweep.analysis.sensitivity import measure_sensitivity
from lvsweep.systems.simulate import Orbit, integrate, simulate
from lvsweep.systems import make_system
from tests.conftest import compose_config


def long_orbit(name: str, t_end: float, n_steps: int, tol: float) -> tuple:
    cfg = compose_config(f"system={name}", f"system.t_end={t_end}", f"system.n_steps={n_steps}",
                         f"system.rtol={tol}", f"system.atol={tol}")
    return make_system(cfg.system), simulate(cfg.system)


def test_lorenz_largest_exponent_matches_published_value_and_spectrum_sums_to_the_trace():
    system, orbit = long_orbit("lorenz", 100, 10001, 1e-10)  # 100 time units after a transient of 20
    props = step_propagators(system, orbit.x, 0.01)
    spectrum = lyapunov_spectrum(props[:-1], 0.01)
    assert spectrum[0] == pytest.approx(0.9056, rel=0.03)
    assert abs(spectrum[1]) < 0.03  # the flow direction
    p = system.params
    # Volume contraction: the exponents sum to the (constant) trace of the Jacobian.
    assert spectrum.sum() == pytest.approx(-(p["sigma"] + 1 + p["beta"]), rel=1e-6)


def test_rossler_largest_exponent_matches_published_value():
    # The Rössler exponent converges slowly (the orbit spends long stretches near the plane): 4000 time units.
    system, orbit = long_orbit("rossler", 4000, 20001, 1e-8)
    spectrum = lyapunov_spectrum(step_propagators(system, orbit.x, 0.2, 1e-8, 1e-8)[:-1], 0.2)
    assert spectrum[0] == pytest.approx(0.0714, rel=0.05)
    assert abs(spectrum[1]) < 0.005


def test_windowed_product_equals_a_fresh_variational_solve_over_the_horizon():
    system, orbit = long_orbit("lorenz", 10, 1001, 1e-10)
    m, dt = 50, 0.01
    field = windowed_ftle(step_propagators(system, orbit.x, dt), m, dt)
    d = system.dim
    for i in (0, 333, 900):
        def f(_t, y):
            return np.concatenate([system.rhs(y[:d]), (system.jacobian(y[:d]) @ y[d:].reshape(d, d)).ravel()])
        y = solve_ivp(f, (0, m * dt), np.concatenate([orbit.x[i], np.eye(d).ravel()]), method="DOP853",
                      rtol=1e-11, atol=1e-11).y[:, -1]
        u, s, vt = np.linalg.svd(y[d:].reshape(d, d))
        assert field.values[i] == pytest.approx(np.log(s[0]) / (m * dt), rel=1e-6)
        assert abs(field.directions[i] @ vt[0]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name, limit", [("lotka_volterra", 0.06), ("van_der_pol", 0.03)])
def test_ftle_of_a_cycle_tends_to_zero_as_the_horizon_grows(name, limit):
    system, orbit = long_orbit(name, 60, 2001, 1e-10)
    means = [orbit_stability(system, orbit, h).ftle.values.mean() for h in (1.0, 5.0, 20.0, 60.0)]
    assert all(a > b > 0 for a, b in zip(means, means[1:]))  # only sub-exponential growth remains
    assert means[-1] < limit


def test_ftle_covers_every_sample_and_is_deterministic():
    cfg = compose_config("system=van_der_pol", "system.n_steps=300")
    system, orbit = make_system(cfg.system), simulate(cfg.system)
    a = measure_sensitivity("auto", system, orbit, 2.0)
    b = measure_sensitivity("ftle", system, orbit, 2.0)
    assert a.profile.kind == "ftle" and a.profile.values.shape == (300,)
    np.testing.assert_array_equal(a.profile.values, b.profile.values)
    np.testing.assert_array_equal(a.profile.normals, b.profile.normals)
    np.testing.assert_allclose(np.linalg.norm(a.profile.normals, axis=1), 1.0)
    assert a.stability.ftle.horizon == pytest.approx(2.0, rel=0.05)


def test_lotka_volterra_logs_both_measures_and_their_rank_correlation(lv_config):
    system, orbit = make_system(lv_config.system), simulate(lv_config.system)
    report = measure_sensitivity("auto", system, orbit, 1.0)
    assert report.profile.kind == "lyapunov_normal"
    rho = report.metrics["sensitivity/ftle_vs_lyapunov_spearman"]
    assert -1 <= rho <= 1 and rho != 0
    assert report.metrics["system/max_lyapunov"] == pytest.approx(report.stability.spectrum[0])
    chosen = measure_sensitivity("ftle", system, orbit, 1.0)  # FTLE asked for: still related to V
    assert chosen.profile.kind == "ftle" and chosen.metrics == report.metrics
    np.testing.assert_array_equal(chosen.profile.values, report.stability.ftle.values)
