"""Controls logged beside every alignment: what needs no learning, and what chance alone gives.

On Lotka-Volterra the state's magnitude already anticorrelates with |∇V|, so a learned attention
only says something if it beats these. All scores are read on the noisy training input, the same
information the model gets: a baseline on the clean states would see what the model never sees,
and would not weaken with noise as the model must.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from scipy.stats import rankdata

from lvsweep.analysis.alignment import spearman
from lvsweep.metric_names import ALIGN_BASELINE_LINEAR, ALIGN_BASELINE_NORM, ALIGN_EXCESS, ALIGN_PVALUE, ALIGN_SPEARMAN_INIT, ALIGN_TRAINING_GAIN


def as_replicates(x: np.ndarray, trailing: int) -> np.ndarray:
    """Give an array without a replicate axis one of length 1 (trailing = dims per replicate)."""
    x = np.asarray(x, dtype=float)
    return x.reshape(-1, *x.shape[x.ndim - trailing:])


def baseline_norm(noisy: np.ndarray, sensitivity: np.ndarray) -> float:
    """Spearman ρ between |x̃_t| and the sensitivity, mean over replicates (noisy [T, d] or [R, T, d])."""
    x = as_replicates(noisy, 2)
    return float(np.mean(spearman(np.linalg.norm(x, axis=-1), sensitivity)))


def best_linear_scores(noisy: np.ndarray, sensitivity: np.ndarray) -> np.ndarray:
    """w·x̃_t with w fitted by least squares of the sensitivity on [x̃, 1], per replicate: [R, T].

    Least squares gives the linear score of largest Pearson correlation with the sensitivity.
    """
    x = as_replicates(noisy, 2)
    scores = []
    for xr in x:
        design = np.column_stack([xr, np.ones(len(xr))])
        coef, *_ = np.linalg.lstsq(design, sensitivity, rcond=None)
        scores.append(xr @ coef[:-1])
    return np.array(scores)


def baseline_linear(noisy: np.ndarray, sensitivity: np.ndarray) -> float:
    """The strongest anticorrelation a linear score of the state reaches with no training, as a ρ.

    A linear scoring layer can express w and −w alike, and softmax keeps the order of the scores,
    so the fitted score and its negation are both attainable attentions: the one that
    anticorrelates is taken, ρ = −|ρ(w·x̃, sensitivity)| (mean over replicates).
    """
    return float(np.mean(-np.abs(spearman(best_linear_scores(noisy, sensitivity), sensitivity))))


def shift_statistics(attention: np.ndarray, sensitivity: np.ndarray) -> np.ndarray:
    """Mean-over-replicates Spearman ρ of the attention circularly shifted by k against the
    sensitivity, for every k = 0 … T−1 ([T]; k = 0 is the observed value).

    All replicates move by the same k. The ranks of a shifted series are the shifted ranks, so every
    shift comes from one FFT cross-correlation of standardised ranks: O(R·T log T), exact.
    """
    a = as_replicates(attention, 1)
    ra = rankdata(a, axis=-1)
    rs = rankdata(sensitivity)
    za = (ra - ra.mean(-1, keepdims=True)) / ra.std(-1, keepdims=True)
    zs = (rs - rs.mean()) / rs.std()
    t = a.shape[-1]
    # c[k] = Σ_t za[t − k]·zs[t]: the correlation of roll(a, k) with s.
    corr = np.fft.irfft(np.conj(np.fft.rfft(za, axis=-1)) * np.fft.rfft(zs), n=t, axis=-1) / t
    return corr.mean(axis=0)


def circular_shift_pvalue(attention: np.ndarray, sensitivity: np.ndarray) -> float:
    """One-sided p-value for anticorrelation under circular time shifts (a null that keeps the
    autocorrelation of both series): p = (1 + #{k ≠ 0 : ρ_k ≤ ρ_0}) / T, over all T − 1 shifts."""
    stats = shift_statistics(attention, sensitivity)
    if not np.all(np.isfinite(stats)):
        return math.nan  # a constant attention has no ranks to correlate
    observed = stats[0]
    return float((1 + np.sum(stats[1:] <= observed + 1e-12)) / len(stats))


# The scores of the state a trained model has to beat, by metric, with the name the summary gives
# them. The untrained model is one: an attention that anticorrelates only as much as its own
# initialisation did has learnt nothing about the sensitivity.
BASELINES = {ALIGN_BASELINE_NORM: "state norm", ALIGN_BASELINE_LINEAR: "best linear score",
             ALIGN_SPEARMAN_INIT: "untrained model"}


def baseline_metrics(noisy: np.ndarray, sensitivity: np.ndarray) -> dict[str, float]:
    """`align/baseline_norm` and `align/baseline_linear`: they read only the noisy input, so they
    are known before training starts and are logged from step 0 of the histories on. An input
    that overflows gives NaN baselines quietly; the training that follows reports the divergence."""
    with np.errstate(over="ignore", invalid="ignore"):
        return {ALIGN_BASELINE_NORM: baseline_norm(noisy, sensitivity),
                ALIGN_BASELINE_LINEAR: baseline_linear(noisy, sensitivity)}


def strongest_baseline(metrics: Mapping[str, float]) -> tuple[str, float]:
    """The metric name and ρ of the baseline that anticorrelates most (the most negative ρ), over
    `BASELINES` (state norm, best linear score, untrained model); NaN baselines are skipped."""
    finite = {k: metrics[k] for k in BASELINES if k in metrics and math.isfinite(metrics[k])}
    if not finite:
        return "", math.nan
    name = min(finite, key=finite.__getitem__)
    return name, finite[name]


def control_metrics(attention: np.ndarray, init_attention: np.ndarray, noisy: np.ndarray,
                    sensitivity: np.ndarray, anticorrelation: float) -> dict[str, float]:
    """The controls of the tracking contract:

    - `align/baseline_norm`, `align/baseline_linear`, `align/spearman_init` (ρ values);
    - `align/pvalue` (circular shifts);
    - `align/excess` = the model's anticorrelation − the strongest baseline's, over all three
      baselines, the untrained model included;
    - `align/training_gain` = the model's anticorrelation − the untrained model's
      (−ρ_trained − (−ρ_init)): what training added; negative when training weakened it.
    """
    init = float(np.mean(spearman(init_attention, sensitivity)))
    metrics = {**baseline_metrics(noisy, sensitivity), ALIGN_SPEARMAN_INIT: init}
    _, strongest = strongest_baseline(metrics)
    return {
        **metrics,
        ALIGN_PVALUE: circular_shift_pvalue(attention, sensitivity),
        ALIGN_EXCESS: anticorrelation - (-strongest),
        ALIGN_TRAINING_GAIN: anticorrelation - (-init),
    }
