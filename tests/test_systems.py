"""Every system: its equations, its Jacobian, a finite orbit; config checks; the cross-system multirun."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lvsweep.app import compose_config
from lvsweep.systems.simulate import integrate, simulate
from lvsweep.systems import SYSTEMS, make_system
from helpers.cli import error_line, run_cli
from helpers.inprocess import call_cli
from helpers.overrides import QUICK
from helpers.store import child_runs

POINT = {2: np.array([1.7, 2.3]), 3: np.array([1.7, 2.3, 3.1])}


# Each system's right-hand side written out by hand, as in its docstring: an oracle independent of
# the implementation. A new system is covered by every other check here through `SYSTEMS`; its line
# in this table is the one addition that is not automatic, and its absence fails the test below.
HAND_WRITTEN = {
    "lotka_volterra": lambda p, u, v: [p["alpha"] * u - p["beta"] * u * v, p["delta"] * u * v - p["gamma"] * v],
    "competitive_lv": lambda p, u, v: [p["r1"] * u * (1 - (u + p["a12"] * v) / p["K1"]),
                                       p["r2"] * v * (1 - (v + p["a21"] * u) / p["K2"])],
    "van_der_pol": lambda p, u, v: [v, p["mu"] * (1 - u ** 2) * v - u],
    "rossler": lambda p, u, v, w: [-v - w, u + p["a"] * v, p["b"] + w * (u - p["c"])],
    "lorenz": lambda p, u, v, w: [p["sigma"] * (v - u), u * (p["rho"] - w) - v, u * v - p["beta"] * w],
    "goodwin": lambda p, u, v, w: [p["a"] / (1 + (w / p["K"]) ** p["n"]) - p["b"] * u, u - p["b"] * v, v - p["b"] * w],
    "forger99": lambda p, u, v, w: forger99(p, u, v, w),
    "jewett99": lambda p, u, v, w: jewett99(p, u, v, w),
    "hannay19": lambda p, u, v, w: hannay19(p, u, v, w),
}


def forger99(p, x, xc, n):
    a = p["alpha0"] * (p["light"] / p["I0"]) ** p["p"]
    b = p["G"] * a * (1 - n) * (1 - 0.4 * x) * (1 - 0.4 * xc)
    return [np.pi / 12 * (xc + b),
            np.pi / 12 * (p["mu"] * (xc - 4 / 3 * xc ** 3) - x * ((24 / (0.99669 * p["taux"])) ** 2 + p["k"] * b)),
            60 * (a * (1 - n) - p["beta"] * n)]


def jewett99(p, x, xc, n):
    a = p["alpha0"] * (p["light"] / p["I0"]) ** p["p"]
    b = p["G"] * a * (1 - n) * (1 - 0.4 * x) * (1 - 0.4 * xc)
    return [np.pi / 12 * (xc + p["mu"] * (x / 3 + 4 / 3 * x ** 3 - 256 / 105 * x ** 7) + b),
            np.pi / 12 * (p["q"] * b * xc - x * ((24 / (0.99729 * p["taux"])) ** 2 + p["k"] * b)),
            60 * (a * (1 - n) - p["beta"] * n)]


def hannay19(p, x, y, n):
    """In polar form (R, ψ), then x = R cos ψ, y = R sin ψ differentiated."""
    r, psi = np.hypot(x, y), np.arctan2(y, x)
    a = p["alpha0"] * p["light"] ** p["p"] / (p["light"] ** p["p"] + p["I0"])
    b = p["G"] * a * (1 - n)
    dr = (-p["gamma"] * r + p["K"] / 2 * np.cos(p["beta1"]) * r * (1 - r ** 4)
          + p["A1"] / 2 * b * (1 - r ** 4) * np.cos(psi + p["betaL1"])
          + p["A2"] / 2 * b * r * (1 - r ** 8) * np.cos(2 * psi + p["betaL2"]))
    dpsi = (2 * np.pi / p["tau"] + p["K"] / 2 * np.sin(p["beta1"]) * (1 + r ** 4) + p["sigma"] * b
            - p["A1"] / 2 * b * (r ** 3 + 1 / r) * np.sin(psi + p["betaL1"])
            - p["A2"] / 2 * b * (1 + r ** 8) * np.sin(2 * psi + p["betaL2"]))
    return [dr * np.cos(psi) - r * dpsi * np.sin(psi), dr * np.sin(psi) + r * dpsi * np.cos(psi),
            60 * (a * (1 - n) - p["delta"] * n)]


@pytest.fixture(scope="module", params=sorted(SYSTEMS))
def system_cfg(request):
    return compose_config(f"system={request.param}").system


def test_every_registered_system_has_a_config_and_state_names(system_cfg):
    system = make_system(system_cfg)
    assert system.dim == len(system_cfg.start) in (2, 3)


def test_rhs_matches_the_equations_at_a_point(system_cfg):
    system = make_system(system_cfg)
    x = POINT[system.dim]
    assert system.name in HAND_WRITTEN, f"write {system.name}'s equations into HAND_WRITTEN"
    np.testing.assert_allclose(system.rhs(x), HAND_WRITTEN[system.name](system.params, *x), rtol=1e-14)
    # Batched evaluation (what the integrators use) agrees with single points.
    batch = np.stack([x, 1.1 * x])
    np.testing.assert_allclose(system.rhs(batch)[1], system.rhs(1.1 * x))


def test_jacobian_matches_finite_differences(system_cfg):
    system = make_system(system_cfg)
    x = POINT[system.dim]
    h = 1e-6
    fd = np.stack([(system.rhs(x + h * e) - system.rhs(x - h * e)) / (2 * h) for e in np.eye(system.dim)], axis=-1)
    np.testing.assert_allclose(system.jacobian(x), fd, rtol=1e-6, atol=1e-8)
    assert system.jacobian(np.stack([x, x])).shape == (2, system.dim, system.dim)


def test_orbit_stays_finite_and_moves_over_its_time_span(system_cfg):
    """Every state moves, except those a constant input holds fixed (`held`), which stay put."""
    orbit = simulate(system_cfg)
    assert orbit.x.shape == (system_cfg.n_steps, len(system_cfg.state_names))
    held = np.isin(system_cfg.state_names, make_system(system_cfg).held)
    assert np.all(np.isfinite(orbit.x)) and np.all(np.ptp(orbit.x[:, ~held], axis=0) > 0)
    assert np.all(np.ptp(orbit.x[:, held], axis=0) < 1e-9)


def test_competitive_lv_lyapunov_function_decreases_to_the_coexistence_point():
    cfg = compose_config("system=competitive_lv").system
    system = make_system(cfg)
    x = simulate(cfg).x
    v = system.lyapunov(x)
    assert np.all(np.diff(v) < 0) and v[-1] < 1e-2 * v[0]
    np.testing.assert_allclose(system.rhs(system.equilibrium()), 0, atol=1e-12)
    # dV/dt = ∇V·f < 0 away from the equilibrium, pointwise.
    assert np.all(np.sum(system.lyapunov_grad(x) * system.rhs(x), axis=-1) < 0)


def test_goodwin_settles_on_a_limit_cycle_not_the_fixed_point():
    cfg = compose_config("system=goodwin").system
    system = make_system(cfg)
    t = np.linspace(0, 800, 8001)
    z = integrate(system, [1.0, 1.0, 1.0], t, 1e-10, 1e-10)[0, :, 2]
    late, later = z[(t > 400) & (t < 600)], z[t >= 600]
    assert np.ptp(later) > 5 and np.ptp(later) == pytest.approx(np.ptp(late), rel=1e-3)  # sustained, same amplitude


REFUSED = [
    (["system=van_der_pol", "analysis.sensitivity=lyapunov_normal"],
     "analysis.sensitivity: 'lyapunov_normal' needs a Lyapunov function or first integral, which van_der_pol "
     "does not have; allowed for van_der_pol: auto, ftle"),
    (["system=lorenz", "analysis.prc=true"],
     "analysis.prc: a phase response curve needs an oscillator, and lorenz has no periodic orbit; allowed for "
     "lorenz: false"),
    (["system=goodwin", "analysis.prc=true", "analysis.prc_kick.state=clock"],
     "analysis.prc_kick.state: unknown state 'clock'; allowed: mrna, protein, repressor, 0, 1, 2"),
    (["analysis.ftle_horizon=0"], "analysis.ftle_horizon: must be a number in (0, 30]"),
]


@pytest.mark.parametrize("override, message", REFUSED)
def test_measure_and_prc_the_system_cannot_have_fail_before_any_run(tmp_path, override, message):
    """The first through the real CLI in a process of its own; the others, refused the same way
    before anything opens, through its entry function here (see `helpers.table`)."""
    run = run_cli if (override, message) == REFUSED[0] else call_cli
    assert error_line(run(tmp_path, *QUICK, *override)).startswith(f"lvsweep: error: {message}")
    assert not (tmp_path / "mlruns").exists()


# The systems of the cross-system preset, each with the measure `auto` must pick for it.
CROSS = {"lotka_volterra": "lyapunov_normal", "van_der_pol": "ftle", "rossler": "ftle", "lorenz": "ftle",
         "goodwin": "ftle"}


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_cross_system_multirun_records_one_child_per_system_with_its_measure(tmp_path: Path):
    proc = run_cli(tmp_path, "-m", f"system={','.join(CROSS)}", *QUICK)
    assert proc.returncode == 0, proc.stderr
    children = child_runs(tmp_path)
    by_system = {r.data.params["system.name"]: r for r in children}
    assert len(children) == len(CROSS) and set(by_system) == set(CROSS)
    for name, measure in CROSS.items():
        run = by_system[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["lvsweep.sensitivity"] == measure
        assert {"align/pearson", "align/spearman", "align/anticorrelation",
                "dynamics/max_lyapunov"} <= set(run.data.metrics)
        assert np.isfinite(run.data.metrics["align/spearman"])
    assert "sensitivity/ftle_vs_lyapunov_spearman" in by_system["lotka_volterra"].data.metrics
    assert by_system["lorenz"].data.metrics["dynamics/max_lyapunov"] > 0.5  # chaotic even on a short orbit
