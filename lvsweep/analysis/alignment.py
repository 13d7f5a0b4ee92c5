"""Correlation between attention and sensitivity, along the last axis so replicates vectorise."""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata, t as student_t
from lvsweep.metric_names import ALIGN_ANTICORRELATION, ALIGN_PEARSON, ALIGN_SPEARMAN

CONFIDENCE = 0.95


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis; NaN where either series is constant."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    da = a - a.mean(axis=-1, keepdims=True)
    db = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt(np.sum(da * da, axis=-1) * np.sum(db * db, axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.sum(da * db, axis=-1) / denom
    return np.clip(r, -1.0, 1.0)


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ: Pearson r of the ranks (ties get their average rank)."""
    return pearson(rankdata(a, axis=-1), rankdata(b, axis=-1))


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval for the mean of independent replicates: mean ± t·s/√n.

    Undefined (NaN, NaN) for fewer than two values: one replicate says nothing about the spread.
    """
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return math.nan, math.nan
    half = student_t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean() - half), float(v.mean() + half)


def replicate_summary(name: str, values: np.ndarray) -> dict[str, float]:
    """`<name>_mean`, and with two or more replicates `_std` (sample), `_ci_low`, `_ci_high` (95 % t,
    clipped to [−1, 1], where a correlation lives).

    With one replicate there is no spread to estimate: std and CI are left out rather than logged
    as 0 (which would claim certainty) or NaN (which breaks sorting in the MLflow UI).
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    out = {f"{name}_mean": float(v.mean())}
    if v.size >= 2:
        low, high = t_interval(v)
        out.update({f"{name}_std": float(v.std(ddof=1)), f"{name}_ci_low": max(low, -1.0),
                    f"{name}_ci_high": min(high, 1.0)})
    return out


def alignment_metrics(attention: np.ndarray, sensitivity: np.ndarray) -> dict[str, float]:
    """The `align/*` metrics of the tracking contract for attention [T] or [R, T] (R replicates).

    Pearson and Spearman are means over replicates; the objective is −mean Spearman.
    """
    r = pearson(attention, sensitivity)
    rho = spearman(attention, sensitivity)
    return {
        ALIGN_PEARSON: float(np.mean(r)),
        ALIGN_SPEARMAN: float(np.mean(rho)),
        ALIGN_ANTICORRELATION: -float(np.mean(rho)),
        **replicate_summary(ALIGN_PEARSON, r),
        **replicate_summary(ALIGN_SPEARMAN, rho),
    }
