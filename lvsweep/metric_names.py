"""The names of the metrics runs log, defined once: analysis, tracking, the summary, the report
and the sweeper import them from here."""
from __future__ import annotations

# Final metrics every run logs; `objectives` must name some of them.
RUN_METRICS = ("train/loss", "val/loss", "align/pearson", "align/spearman", "align/anticorrelation",
               "perturb/low_over_high", "val/r2", "val/noisy_mse", "align/excess", "align/pvalue",
               "align/training_gain", "dynamics/max_lyapunov")
# Final metrics only some runs log: each with the setting that turns it on (all: analysis.prc).
OPTIONAL_METRICS = {"prc/spearman": "analysis.prc=true", "prc/period": "analysis.prc=true"}


