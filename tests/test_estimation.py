"""Estimation: data loading and its errors, posterior fits (lynx-hare and simulated), weighted fits.

Simulated data are Lotka-Volterra orbits on the lynx-hare scale (α=0.55, β=0.028, γ=0.8, δ=0.024,
start (33, 6), 21 yearly points) from `integrate`, with seeded log-normal noise y = x·exp(σ·z).
"""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from lvsweep.errors import LvsweepError
from lvsweep.estimation import FitSettings, Model, ObservedSeries, fit, load_series, lynx_hare
from lvsweep.estimation.point import find_mode
from lvsweep.estimation.weighting import WEIGHTINGS, fit_weighted, weighting_study
from lvsweep.systems.simulate import integrate
from lvsweep.systems.lotka_volterra import LotkaVolterra

TRUTH = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024}
START = {"x0_prey": 33.0, "x0_predator": 6.0}
STATES = ["prey", "predator"]
# The Stan case study's posterior medians for these data (prey = hare).
STAN = {"alpha": 0.55, "beta": 0.028, "gamma": 0.80, "delta": 0.024}


def lv(params: dict[str, float] | None = None) -> LotkaVolterra:
    """Lotka-Volterra; the default parameters (conf/system/lotka_volterra.yaml) only centre non-LV priors."""
    return LotkaVolterra(params or {"alpha": 1.0, "beta": 0.1, "gamma": 1.5, "delta": 0.075}, STATES)


def simulated(sigma: float, seed: int, t: np.ndarray = np.arange(21.0)) -> ObservedSeries:
    x = integrate(lv(TRUTH), [START["x0_prey"], START["x0_predator"]], t)[0]
    z = np.random.default_rng([2024, seed]).standard_normal(x.shape)
    return ObservedSeries(t=t, y=x * np.exp(sigma * z), names=tuple(STATES), source=f"simulated σ={sigma}")


# ---------------------------------------------------------------- data


def write(path, rows: list[list[str]]):
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


GOOD = [["day", "prey", "predator"], ["0", "30", "4"], ["1.5", "47", "6"], ["2", "70", "9.8"], ["4", "77", "35"]]


def test_load_series_reads_uneven_times(tmp_path):
    s = load_series(write(tmp_path / "obs.csv", GOOD), "day", ["prey", "predator"], n_params=3, n_states=2)
    assert s.t.tolist() == [0.0, 1.5, 2.0, 4.0]
    assert s.y.shape == (4, 2) and s.y[1].tolist() == [47.0, 6.0]
    assert s.names == ("prey", "predator") and s.source.endswith("obs.csv")


def test_lynx_hare_is_packaged_data_in_state_order():
    s = lynx_hare()
    assert s.t.tolist() == list(range(21)) and s.names == ("Hare", "Lynx")
    assert s.y[0].tolist() == [30.0, 4.0] and s.y[4].tolist() == [36.3, 59.4]  # 1904: hare 36.3, lynx 59.4
    assert tuple(lv().state_names) == ("prey", "predator")  # hare = prey first


def bad(tmp_path, rows, **kw) -> str:
    path = write(tmp_path / "bad.csv", rows)
    args = {"time_column": "day", "state_columns": ["prey", "predator"], "n_params": 2, **kw}
    with pytest.raises(LvsweepError) as info:
        load_series(path, **args)
    message = str(info.value)
    assert "\n" not in message and "bad.csv" in message
    return message


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(LvsweepError) as info:
        load_series(tmp_path / "nope.csv", "day", ["prey"], 1)
    assert info.value.field == "data.path" and "nope.csv" in str(info.value) and "no such file" in str(info.value)


def test_non_numeric_cell(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[2][1] = "lots"
    msg = bad(tmp_path, rows)
    assert "row 2 (line 3)" in msg and "'prey'" in msg and "'lots' is not a number" in msg


def test_missing_value(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[3][2] = ""
    msg = bad(tmp_path, rows)
    assert "row 3 (line 4)" in msg and "'predator'" in msg and "missing value" in msg


def test_short_row_is_a_missing_value(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[4] = rows[4][:2]
    msg = bad(tmp_path, rows)
    assert "row 4 (line 5)" in msg and "'predator'" in msg and "missing value" in msg


def test_unsorted_times(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[3][0] = "1"
    msg = bad(tmp_path, rows)
    assert "row 3 (line 4)" in msg and "'day'" in msg and "times must increase" in msg


def test_duplicate_times(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[3][0] = "1.5"
    msg = bad(tmp_path, rows)
    assert "row 3 (line 4)" in msg and "'day'" in msg and "duplicate time" in msg


def test_non_positive_value(tmp_path):
    rows = [r[:] for r in GOOD]
    rows[4][1] = "0"
    msg = bad(tmp_path, rows)
    assert "row 4 (line 5)" in msg and "'prey'" in msg and "log-normal" in msg


def test_fewer_rows_than_parameters(tmp_path):
    msg = bad(tmp_path, GOOD, n_params=8)
    assert "4 rows" in msg and "8 free parameters" in msg


def test_state_columns_must_match_the_system(tmp_path):
    rows = [r + ["1"] for r in GOOD]
    rows[0][-1] = "extra"
    msg = bad(tmp_path, rows, state_columns=["prey", "predator", "extra"], n_states=2)
    assert "3 state columns" in msg and "prey, predator, extra" in msg and "2 states" in msg
    series = load_series(tmp_path / "bad.csv", "day", ["prey", "predator", "extra"], 2)
    with pytest.raises(LvsweepError) as info:  # the model checks it too when it sees the system
        Model.build(lv(), series)
    assert info.value.field == "data.states" and "lotka_volterra has 2 states" in str(info.value)


def test_unknown_column(tmp_path):
    msg = bad(tmp_path, GOOD, state_columns=["prey", "wolves"])
    assert "column 'wolves'" in msg and "row 0 (line 1, the header)" in msg


# ---------------------------------------------------------------- model and priors


def test_priors_are_overridable_and_checked():
    m = Model.build(lv(), lynx_hare(), priors={"alpha": {"kind": "lognormal", "median": 0.5, "sigma": 0.1}})
    at = m.theta_of({**TRUTH, "x0_prey": 30, "x0_predator": 4, "sigma_prey": 0.25, "sigma_predator": 0.25})
    base = Model.build(lv(), lynx_hare())
    # only alpha's prior changed: the difference is exactly the two alpha log-densities
    expected = (-0.5 * ((math.log(0.55) - math.log(0.5)) / 0.1) ** 2 - math.log(0.1 * math.sqrt(2 * math.pi))
                - (-0.5 * (math.log(0.55) - math.log(1.0)) ** 2 - math.log(math.sqrt(2 * math.pi))))
    assert m.log_prior(at)[0] - base.log_prior(at)[0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(LvsweepError, match="estimate.priors.alpha.kind: .gauss. is not one of"):
        Model.build(lv(), lynx_hare(), priors={"alpha": {"kind": "gauss"}})
    with pytest.raises(LvsweepError, match="estimation.free: 'omega'"):
        Model.build(lv(), lynx_hare(), free=["alpha", "omega"])


def test_truncated_normal_prior_is_a_density_of_log_value_and_samples_it():
    """Normal(1, 0.5) cut at 0, as Stan's `real<lower=0> alpha; alpha ~ normal(1, 0.5)`: its
    density in θ = log v integrates to 1, its draws follow it, and its centre is the median."""
    from scipy import stats

    from lvsweep.estimation.priors import parse_prior

    prior = parse_prior("alpha", {"kind": "truncnormal", "loc": 1.0, "scale": 0.5})
    theta = np.linspace(-12, 2, 200_001)
    assert np.trapezoid(np.exp(prior.logpdf(theta)), theta) == pytest.approx(1.0, abs=1e-6)
    truth = stats.truncnorm(-2.0, np.inf, loc=1.0, scale=0.5)
    draws = np.exp(prior.sample(np.random.default_rng(0), 200_000))
    assert stats.kstest(draws, truth.cdf).pvalue > 1e-3
    assert math.exp(prior.center()) == pytest.approx(truth.median(), rel=1e-9)
    lo, hi = prior.bounds()
    assert truth.cdf(math.exp(hi)) > 1 - 1e-12 and truth.cdf(math.exp(lo)) < 1e-6


def test_a_prior_kind_switches_with_one_override_and_stale_fields_are_ignored():
    from lvsweep.app import compose_config
    from lvsweep.estimation.configured import priors
    from lvsweep.estimation.priors import parse_prior

    cfg = compose_config("experiment=lynx_hare", "estimate.priors.alpha={kind: loguniform, low: 0.1, high: 10}")
    spec = priors(cfg)["alpha"]
    assert parse_prior("alpha", spec) == parse_prior("alpha", {"kind": "loguniform", "low": 0.1, "high": 10})
    with pytest.raises(LvsweepError, match="estimate.priors.alpha: a truncnormal prior takes loc, scale; missing: loc"):
        parse_prior("alpha", {"kind": "truncnormal", "scale": 0.5, "median": 1.0})


@pytest.mark.parametrize("sigma", [0.05, 0.1, 0.25])
def test_point_estimate_recovers_parameters(sigma):
    """Measured over 8 data sets per level: the largest relative error of any rate or initial state was
    1.04σ, 0.99σ, 0.86σ at σ = 0.05, 0.1, 0.25 (mean 0.28σ). Tolerance 2.5σ: far above what we measured,
    far below what a wrong mode gives (errors of order 1)."""
    series = simulated(sigma, seed=int(sigma * 100))
    m = Model.build(lv(), series)
    mode = dict(zip(m.free, np.exp(find_mode(m, np.random.default_rng(0)).theta)))
    for name, true in {**TRUTH, **START}.items():
        assert abs(mode[name] / true - 1) < 2.5 * sigma, (name, mode[name], true)
    for s in STATES:  # σ itself, from 21 points per state: within a factor 2
        assert 0.5 * sigma < mode[f"sigma_{s}"] < 2 * sigma


# ---------------------------------------------------------------- lynx-hare


@pytest.fixture(scope="module")
def lynx_fit():
    return fit(lv(), lynx_hare(), seed=0)


@pytest.mark.slow  # the full fit, ~10-25 s; the default suite keeps the short determinism fit below
def test_lynx_hare_fit_converges_and_is_plausible(lynx_fit):
    metrics = lynx_fit.metrics()
    expected = {f"estimate/{n}{suffix}" for n in (*TRUTH, "x0_prey", "x0_predator") for suffix in ("", "_low", "_high")}
    expected |= {"estimate/sigma_prey", "estimate/sigma_predator", "estimate/acceptance", "estimate/autocorr_max",
                 "estimate/ess_min", "estimate/converged"}
    assert set(metrics) == expected and all(np.isfinite(list(metrics.values())))
    assert metrics["estimate/converged"] == 1.0
    assert 0.15 <= metrics["estimate/acceptance"] <= 0.7
    assert lynx_fit.chain.steps >= 50 * metrics["estimate/autocorr_max"]
    assert metrics["estimate/ess_min"] > 1000
    for name, stan in STAN.items():  # published medians: a sanity range, not equality
        assert abs(metrics[f"estimate/{name}"] / stan - 1) < 0.15, (name, metrics[f"estimate/{name}"])
        assert metrics[f"estimate/{name}_low"] < metrics[f"estimate/{name}"] < metrics[f"estimate/{name}_high"]
    for s in STATES:
        assert 0.1 < metrics[f"estimate/sigma_{s}"] < 0.5


@pytest.mark.slow  # shares the full fit above
def test_lynx_hare_writes_posterior_and_figures(lynx_fit, tmp_path):
    path = lynx_fit.write_posterior_csv(tmp_path / "posterior.csv")
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(lynx_fit.names)
    draws = np.array(rows[1:], dtype=float)
    assert draws.shape == (lynx_fit.chain.walkers * lynx_fit.chain.steps, 8)
    assert np.array_equal(draws, lynx_fit.draws)
    figures = lynx_fit.write_figures(tmp_path)
    for name in ("fit", "posterior"):
        assert figures[name] == tmp_path / f"{name}.png"
        assert figures[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figures[name].stat().st_size > 20_000


def test_fit_is_deterministic_for_a_seed():
    quick = FitSettings(burn=30, min_steps=60, max_steps=120)
    a, b = (fit(lv(), lynx_hare(), seed=3, settings=quick) for _ in range(2))
    c = fit(lv(), lynx_hare(), seed=4, settings=quick)
    assert np.array_equal(a.draws, b.draws) and a.metrics() == b.metrics()
    assert not np.array_equal(a.draws, c.draws)


# ---------------------------------------------------------------- weighting


@pytest.fixture(scope="module")
def study_data():
    t = np.linspace(0, 20, 120)
    x = integrate(lv(TRUTH), [33.0, 6.0], t)[0]
    rng = np.random.default_rng(11)
    y = x[None] + 2.0 * rng.standard_normal((2, *x.shape))
    score = y @ np.array([0.05, 0.02])
    attention = np.exp(score - score.max(axis=1, keepdims=True))
    attention /= attention.sum(axis=1, keepdims=True)
    return t, y, attention, np.linalg.norm(y, axis=-1)


def test_uniform_weighting_is_the_unweighted_fit(study_data):
    t, y, _, _ = study_data
    free = list(TRUTH)
    unweighted = fit_weighted(lv(), t, y[0], None, free, {**TRUTH, **START})
    scaled = fit_weighted(lv(), t, y[0], np.full(len(t), 7.0), free, {**TRUTH, **START})
    assert unweighted.estimate == scaled.estimate and np.allclose(scaled.weights, 1.0)
    assert unweighted.success and all(abs(unweighted.estimate[n] / TRUTH[n] - 1) < 0.1 for n in free)
    uneven = fit_weighted(lv(), t, y[0], np.linspace(0.1, 2, len(t)), free, {**TRUTH, **START})
    assert uneven.estimate != unweighted.estimate  # weights do reach the fit


def test_weighting_study_normalises_and_computes_the_gain(study_data):
    t, y, attention, norm = study_data
    study = weighting_study(lv(TRUTH), {**TRUTH, **START}, t, y, attention, norm, np.random.default_rng(0),
                            n_permutations=2)
    assert set(study.errors) == set(WEIGHTINGS)
    for w in WEIGHTINGS:  # every weighting spends the same total weight
        assert np.allclose(study.weights[w].sum(axis=1), len(t))
    for r in range(2):  # the permutation control has exactly the attention's values
        assert np.allclose(np.sort(study.weights["permuted"][r]), np.sort(study.weights["attention"][r]))
        assert not np.allclose(study.weights["permuted"][r], study.weights["attention"][r])
    # the uniform arm is the plain unweighted fit of replicate 0
    plain = fit_weighted(lv(TRUTH), t, y[0], None, study.free, {**TRUTH, **START})
    err = np.mean([abs(plain.estimate[n] / v - 1) for n, v in {**TRUTH, **START}.items()])
    assert study.errors["uniform"][0] == pytest.approx(err, rel=1e-12)
    m = study.metrics()
    ratio = study.errors["uniform"] / study.errors["attention"]
    assert m["estimate/attention_gain"] == pytest.approx(math.exp(np.mean(np.log(ratio))), rel=1e-12)
    half = 12.7062047 * np.std(np.log(ratio), ddof=1) / math.sqrt(2)  # t(0.975, 1 dof)
    assert m["estimate/attention_gain_ci_low"] == pytest.approx(math.exp(np.mean(np.log(ratio)) - half), rel=1e-6)
    assert m["estimate/attention_gain_ci_high"] == pytest.approx(math.exp(np.mean(np.log(ratio)) + half), rel=1e-6)
    assert 0 <= m["estimate/attention_gain_pvalue"] <= 1
    assert m["estimate/rel_error_state_norm_alpha"] == pytest.approx(np.mean(study.param_errors["state_norm"][:, 0]))
    single = weighting_study(lv(TRUTH), {**TRUTH, **START}, t, y[0], attention[0], norm[0], np.random.default_rng(0),
                             free_params=["alpha", "gamma"], n_permutations=1).metrics()
    assert "estimate/attention_gain_pvalue" not in single  # one replicate has no spread
    assert single["estimate/attention_gain"] == pytest.approx(
        single["estimate/rel_error_uniform"] / single["estimate/rel_error_attention"], rel=1e-12)


def test_the_prior_predictive_share_tells_narrow_priors_from_wide_ones():
    from lvsweep.estimation.calibration import lynx_hare_scale_priors, prior_plausible_share

    narrow = Model.build(lv(), lynx_hare(), priors=lynx_hare_scale_priors(0.05))
    wide = Model.build(lv(), lynx_hare(), priors=lynx_hare_scale_priors(2.0))
    assert prior_plausible_share(narrow, np.random.default_rng(0), n=100) > 0.95
    assert prior_plausible_share(wide, np.random.default_rng(0), n=100) < 0.2
