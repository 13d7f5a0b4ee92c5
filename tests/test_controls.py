"""Controls and intervals on synthetic data whose answer is known by construction."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lvsweep.analysis.alignment import replicate_summary, spearman, t_interval
from lvsweep.analysis.controls import (baseline_linear, baseline_norm, circular_shift_pvalue, control_metrics,
                              shift_statistics, strongest_baseline)


def ar1(rng: np.random.Generator, n: int, phi: float = 0.9) -> np.ndarray:
    x = np.empty(n)
    x[0] = rng.standard_normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.standard_normal()
    return x


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [low <= 0.3 <= high for low, high in (t_interval(rng.normal(0.3, 0.2, 6)) for _ in range(2000))]
    assert 0.935 <= np.mean(hits) <= 0.965


def test_t_interval_matches_scipy_and_one_value_has_none():
    v = np.array([-0.4, -0.55, -0.3, -0.62, -0.47])
    expected = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert t_interval(v) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(t_interval(np.array([0.1]))).all()
    summary = replicate_summary("align/spearman", v)
    assert summary["align/spearman_ci_high"] < 0  # a planted anticorrelation is found
    assert summary["align/spearman_std"] == pytest.approx(v.std(ddof=1))
    assert set(replicate_summary("align/spearman", v[:1])) == {"align/spearman_mean"}


def test_shift_statistics_equal_rolling_by_hand():
    rng = np.random.default_rng(1)
    attention, sensitivity = rng.random((3, 50)), rng.random(50)
    by_hand = [np.mean(spearman(np.roll(attention, k, axis=-1), sensitivity)) for k in range(50)]
    np.testing.assert_allclose(shift_statistics(attention, sensitivity), by_hand, atol=1e-12)


def test_planted_anticorrelation_gets_the_smallest_p_value():
    rng = np.random.default_rng(2)
    sensitivity = ar1(rng, 400)
    attention = np.stack([-sensitivity + 0.5 * rng.standard_normal(400) for _ in range(4)])
    assert circular_shift_pvalue(attention, sensitivity) == pytest.approx(1 / 400)
    # One-sided: the same attention with the sign flipped (positive correlation) is not significant.
    assert circular_shift_pvalue(-attention, sensitivity) > 0.9


def test_independent_autocorrelated_series_give_roughly_uniform_p_values():
    rng = np.random.default_rng(3)
    p = np.array([circular_shift_pvalue(ar1(rng, 300), ar1(rng, 300)) for _ in range(300)])
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(p <= 0.05) <= 0.09
    # The naive test that treats time steps as independent rejects far too often on the same kind of data.
    naive = [stats.spearmanr(ar1(rng, 300), ar1(rng, 300), alternative="less").pvalue for _ in range(300)]
    assert np.mean(np.array(naive) <= 0.05) > 0.15


def test_baselines_on_cases_known_by_construction():
    rng = np.random.default_rng(4)
    x = rng.uniform(1, 10, size=(200, 2))
    # Sensitivity falling with the state's norm: the norm baseline is a perfect anticorrelation.
    assert baseline_norm(x, 1.0 / np.linalg.norm(x, axis=1)) == pytest.approx(-1.0)
    assert baseline_norm(x, np.linalg.norm(x, axis=1) ** 2) == pytest.approx(1.0)
    # Sensitivity linear in the state, either sign: least squares recovers it; the score's sign is free.
    linear = 3 * x[:, 0] - 2 * x[:, 1] + 5
    assert baseline_linear(x, linear) == pytest.approx(-1.0)
    assert baseline_linear(x, -linear) == pytest.approx(-1.0)
    # Sensitivity unrelated to the state: the best linear score finds little, and never a positive ρ.
    unrelated = baseline_linear(x, rng.standard_normal(200))
    assert -0.3 < unrelated <= 0
    # Replicates [R, T, d]: the mean of the per-replicate values.
    two = np.stack([x, x[::-1]])
    s = 1.0 / np.linalg.norm(x, axis=1)
    assert baseline_norm(two, s) == pytest.approx((baseline_norm(x, s) + baseline_norm(x[::-1], s)) / 2)


def test_excess_is_measured_against_the_strongest_baseline():
    rng = np.random.default_rng(5)
    x = rng.uniform(1, 10, size=(300, 2))
    s = 1.0 / np.linalg.norm(x, axis=1)
    attention = -s + 0.01 * rng.standard_normal(300)
    m = control_metrics(attention, rng.random(300), x, s, anticorrelation=0.8)
    assert m["align/baseline_norm"] == pytest.approx(-1.0)
    assert m["align/excess"] == pytest.approx(0.8 - 1.0)
    assert m["align/pvalue"] == pytest.approx(1 / 300)
    assert abs(m["align/spearman_init"]) < 0.2
    assert m["align/training_gain"] == pytest.approx(0.8 + m["align/spearman_init"])


def test_the_untrained_model_is_a_baseline_and_training_gain_is_measured_from_it():
    rng = np.random.default_rng(6)
    x = rng.uniform(1, 10, size=(300, 2))
    s = rng.standard_normal(300)  # unrelated to the state: the state baselines find little
    untrained = -s + 0.05 * rng.standard_normal(300)  # an initialisation that happens to anticorrelate
    m = control_metrics(untrained, untrained, x, s, anticorrelation=0.5)
    assert m["align/spearman_init"] < -0.9 < m["align/baseline_linear"]
    assert strongest_baseline(m) == ("align/spearman_init", m["align/spearman_init"])
    # Against the untrained model, not the state's scores: excess and gain coincide, both negative.
    assert m["align/excess"] == pytest.approx(0.5 + m["align/spearman_init"]) == m["align/training_gain"]
    assert m["align/training_gain"] < 0
    assert strongest_baseline({"align/baseline_norm": -0.2, "align/baseline_linear": float("nan")}) == \
        ("align/baseline_norm", -0.2)
