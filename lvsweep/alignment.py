"""Correlation between attention and sensitivity, along the last axis so replicates vectorise."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


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


def alignment_metrics(attention: np.ndarray, sensitivity: np.ndarray) -> dict[str, float]:
    """The `align/*` metrics of the tracking contract; anticorrelation is the sweep objective."""
    rho = float(spearman(attention, sensitivity))
    return {
        "align/pearson": float(pearson(attention, sensitivity)),
        "align/spearman": rho,
        "align/anticorrelation": -rho,
    }
