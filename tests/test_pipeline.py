"""The experiment in-process: reproducible, and sensitive to what it is given."""
from __future__ import annotations

import numpy as np

from lvsweep.app import compose_config
from lvsweep.pipeline import run_experiment
from helpers.overrides import QUICK


def _run(tmp_path, *overrides):
    logged: list = []
    result = run_experiment(compose_config(*QUICK, *overrides), lambda m, s: logged.append((dict(m), s)),
                            tmp_path)
    return result, logged


def test_same_seed_same_numbers_other_seed_other_numbers(tmp_path):
    a, log_a = _run(tmp_path / "a")
    b, log_b = _run(tmp_path / "b")
    c, _ = _run(tmp_path / "c", "seed=1")
    assert a.metrics == b.metrics and log_a == log_b
    assert (tmp_path / "a" / "attention.csv").read_text() == (tmp_path / "b" / "attention.csv").read_text()
    assert c.metrics["align/spearman"] != a.metrics["align/spearman"]


def test_histories_are_logged_at_their_cadence(tmp_path):
    _, logged = _run(tmp_path, "trainer.epochs=30", "trainer.log_every=5", "trainer.align_every=10",
                     "trainer.val_every=10")
    steps = {key: [s for m, s in logged if key in m] for key in ("train/loss", "val/loss", "align/spearman")}
    assert steps["train/loss"] == [4, 9, 14, 19, 24, 29, 30]  # per Lightning step, then the final value
    assert steps["val/loss"] == [10, 20, 30]
    assert steps["align/spearman"] == [10, 20, 30]


def test_noise_off_gives_the_model_the_clean_orbit(tmp_path):
    result, _ = _run(tmp_path, "noise=none")
    table = np.genfromtxt(tmp_path / "attention.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(table["prey"], table["noisy_prey"])
    assert np.isfinite(result.metrics["align/spearman"])
