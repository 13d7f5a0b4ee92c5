"""Circadian pacemakers with a light input: their equations against the `circadian` package, their
light PRC (the protocol of Khalsa et al. 2003) against the measured curve's features, and a real
run of experiment=circadian that records the light PRC and attention's alignment with it."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lvsweep.analysis.lightprc import (Protocol, crossover, features, light_alignment, light_prc, measured,
                                       orbit_phase)
from lvsweep.app import compose_config
from lvsweep.config import validate
from lvsweep.errors import LvsweepError
from lvsweep.systems import make_system
from lvsweep.systems.simulate import simulate
from helpers.cli import run_cli
from helpers.overrides import QUICK
from helpers.store import all_runs, client_for

MODELS = ["forger99", "jewett99", "hannay19"]
# The `circadian` package's class of each model (its light is lux and its time hours, as here).
REFERENCE = {"forger99": "Forger99", "jewett99": "Jewett99", "hannay19": "Hannay19"}


def model(name: str, **params: float):
    cfg = compose_config(f"system={name}").system
    cfg.params.update(params)
    return make_system(cfg), cfg


@pytest.mark.parametrize("name", MODELS)
def test_rhs_matches_the_circadian_package_at_random_states_and_light(name):
    models = pytest.importorskip("circadian.models")
    ours, _ = model(name)
    ref = getattr(models, REFERENCE[name])()
    rng = np.random.default_rng(25)
    lux = np.concatenate([[0.0], rng.uniform(0, 10_000, 19)])
    n = rng.uniform(0, 1, 20)
    if name == "hannay19":  # the package's state is (R, ψ, n); ours is (R cos ψ, R sin ψ, n)
        r, psi = rng.uniform(0.1, 1.2, 20), rng.uniform(-np.pi, np.pi, 20)
        x = np.stack([r * np.cos(psi), r * np.sin(psi), n], axis=-1)
        d = np.stack([ref.derv(0.0, np.array([r[i], psi[i], n[i]]), lux[i]) for i in range(20)])
        expected = np.stack([d[:, 0] * np.cos(psi) - r * d[:, 1] * np.sin(psi),
                             d[:, 0] * np.sin(psi) + r * d[:, 1] * np.cos(psi), d[:, 2]], axis=-1)
    else:
        x = np.stack([rng.uniform(-1.5, 1.5, 20), rng.uniform(-1.5, 1.5, 20), n], axis=-1)
        expected = np.stack([ref.derv(0.0, x[i], lux[i]) for i in range(20)])
    np.testing.assert_allclose(ours.rhs_light(x, lux), expected, rtol=1e-12, atol=1e-14)
    # The package's defaults are the published parameters conf/system/<name>.yaml holds.
    for key, value in ref.parameters.items():
        ours_key = {"alpha_0": "alpha0", "Beta1": "beta1", "BetaL1": "betaL1", "BetaL2": "betaL2"}.get(key, key)
        if ours_key in ours.params:
            assert ours.params[ours_key] == pytest.approx(value, rel=1e-12), key


@pytest.mark.parametrize("name", MODELS)
def test_jacobian_matches_finite_differences_in_bright_light(name):
    """The table in tests/test_systems.py checks dim light; here the light terms dominate."""
    system, _ = model(name, light=10_000.0)
    x = np.array([0.6, -0.9, 0.3])
    h = 1e-6
    fd = np.stack([(system.rhs(x + h * e) - system.rhs(x - h * e)) / (2 * h) for e in np.eye(3)], axis=-1)
    np.testing.assert_allclose(system.jacobian(x), fd, rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module", params=MODELS)
def scanned(request):
    system, cfg = model(request.param)
    return request.param, system, cfg, light_prc(system, np.asarray(cfg.start))


def test_light_prc_has_the_measured_features(scanned):
    """Khalsa et al. 2003: type 1, peak-to-trough 5.02 h, delays before the CBT minimum and
    advances after it with the crossover there, no prolonged dead zone."""
    name, _, _, prc = scanned
    f = features(prc)
    ref = measured()["features"]
    assert len(prc.phase) == 48 and np.all(np.diff(prc.phase) > 0) and np.ptp(prc.phase) > 23
    assert f["lightprc/type"] == ref["type"] == 1
    assert abs(f["lightprc/peak_to_trough"] - ref["peak_to_trough_h"]) < 1.0, f
    assert abs(f["lightprc/crossover"] - ref["crossover_h"]) < 1.0, f
    assert f["lightprc/dead_zone"] <= 5.0, f
    assert f["lightprc/delays_then_advances"] == 1
    assert f["lightprc/max_delay_phase"] < f["lightprc/crossover"] < f["lightprc/max_advance_phase"]
    # The protocol without the pulse drifts late, as measured (0.54 h): each model free-runs longer than 24 h.
    assert -1.0 < f["lightprc/drift"] < 0


def test_light_prc_has_converged_in_its_step():
    system, cfg = model("forger99")
    coarse = light_prc(system, np.asarray(cfg.start), Protocol.default(step=0.05, phases=12))
    fine = light_prc(system, np.asarray(cfg.start), Protocol.default(step=0.025, phases=12))
    np.testing.assert_allclose(coarse.phase, fine.phase, atol=0.02)
    np.testing.assert_allclose(coarse.shift, fine.shift, atol=0.02)  # h: about a minute


def test_crossover_is_where_delays_turn_to_advances():
    from lvsweep.analysis.lightprc import LightPRC

    phase = np.linspace(-12, 12, 48, endpoint=False)
    shift = 2.0 * np.sin(2 * np.pi * (phase - 1.0) / 24)  # delays before 1 h, advances after
    prc = LightPRC(phase, shift, 0 * shift, phase, 0.0, phase, Protocol.default())
    assert crossover(prc) == pytest.approx(1.0, abs=0.02)
    f = features(prc)
    assert f["lightprc/type"] == 1 and f["lightprc/peak_to_trough"] == pytest.approx(4.0, abs=0.02)


def test_alignment_finds_an_attention_made_of_the_light_prc(scanned):
    name, system, cfg, prc = scanned
    orbit = simulate(cfg)
    phase, period = orbit_phase(system, orbit.t, orbit.x)
    assert 23.5 < period < 25
    target = np.abs(prc.at(phase))
    noisy = orbit.x[None]
    f = features(prc)
    for sign in (1, -1):
        m = light_alignment(system, orbit.t, orbit.x, prc, sign * target[None], np.ones_like(target)[None] + 0 * target,
                            noisy, f)
        assert m["lightprc/spearman"] == pytest.approx(sign, abs=1e-9)
    # Anticorrelation (the paper's direction, as for align/*) beats circular shifts of itself.
    assert m["lightprc/pvalue"] < 0.05 and m["lightprc/spearman_advance"] == pytest.approx(-1, abs=1e-9)
    assert m["lightprc/peak_error_advance"] <= 12 and m["lightprc/peak_error_delay"] <= 12


def test_a_light_prc_needs_a_light_input():
    with pytest.raises(LvsweepError, match="analysis.lightprc: a light phase response needs a system with a light "
                                           "input, which lotka_volterra has not; allowed for lotka_volterra: false"):
        validate(compose_config("analysis.lightprc=true"))
    for other in ("jewett99", "hannay19"):  # the preset swaps its model with one override
        validate(compose_config("experiment=circadian", f"system={other}"))


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_circadian_run_records_the_light_prc_its_alignment_and_controls(tmp_path: Path):
    proc = run_cli(tmp_path, "experiment=circadian", *QUICK, "analysis.figures=true",
                   "objectives=[lightprc/spearman]")
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    m = run.data.metrics
    assert run.data.params["system.name"] == "forger99"
    for name in ("max_advance", "max_delay", "max_advance_phase", "max_delay_phase", "peak_to_trough", "crossover",
                 "dead_zone", "drift", "type", "diff/peak_to_trough", "diff/crossover", "diff/drift", "diff/type",
                 "spearman", "spearman_advance", "spearman_delay", "peak_error_advance", "peak_error_delay",
                 "excess", "pvalue", "baseline_norm", "baseline_linear", "spearman_init", "training_gain"):
        assert np.isfinite(m[f"lightprc/{name}"]), name
    assert -1 <= m["lightprc/spearman"] <= 1 and 0 < m["lightprc/pvalue"] <= 1
    assert m["lightprc/diff/peak_to_trough"] == pytest.approx(m["lightprc/peak_to_trough"] - 5.02)
    assert m["lightprc/excess"] == pytest.approx(
        -m["lightprc/spearman"] + min(m["lightprc/baseline_norm"], m["lightprc/baseline_linear"],
                                      m["lightprc/spearman_init"]))
    # The summary tells the light PRC beside the measured curve, with the numbers the run recorded.
    assert f"peak-to-trough {m['lightprc/peak_to_trough']:.2f} h" in proc.stdout
    assert f"Spearman ρ = {m['lightprc/spearman']:+.3f}" in proc.stdout.split("attention vs |light PRC|")[1]
    client = client_for(tmp_path)
    assert "lightprc.png" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
    with Path(client.download_artifacts(run.info.run_id, "lightprc.csv", str(tmp_path))).open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["phase", "shift", "shift_without_pulse", "pulse_clock", "cbtmin1_clock", "cbtmin2_clock"]
    assert len(rows) == 48
    assert max(float(r["shift"]) for r in rows) == pytest.approx(m["lightprc/max_advance"])
