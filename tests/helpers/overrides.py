"""The fast settings, defined once. Tests that need a value of their own add it after these (the
last override of a key wins), so the dependency shows where it is.

`QUICK`: one small but real run (simulation, training, alignment, perturbation) in about a
second; tests/test_cli.py checks these numbers as the run records them (40 epochs, 300 rows).
Figures are off: a test that checks them adds `analysis.figures=true`.

`QUICK_SWEEP`: for sweeps of several trials, where only the bookkeeping is checked.
"""
from __future__ import annotations

QUICK = ["trainer.epochs=40", "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=false"]
QUICK_SWEEP = ["trainer.epochs=20", "system.n_steps=200", "analysis.perturb.k=3", "analysis.figures=false"]
