"""The experiment in-process: reproducible, and sensitive to what it is given."""
from __future__ import annotations

import numpy as np

from lvsweep.app import compose_config
from lvsweep.pipeline import run_experiment
from helpers.overrides import QUICK


# The step and shape numbers below follow from these two, whatever QUICK holds.
SMALL = ["trainer.epochs=30", "system.n_steps=200"]


def _run(tmp_path, *overrides):
    logged: list = []
    result = run_experiment(compose_config(*QUICK, *SMALL, *overrides), lambda m, s: logged.append((dict(m), s)),
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
    # The untrained model at 0, then per Lightning step (train) or cadence, then the final value.
    assert steps["train/loss"] == [0, 4, 9, 14, 19, 24, 29, 30]
    assert steps["val/loss"] == [0, 10, 20, 30]
    assert steps["align/spearman"] == [0, 10, 20, 30]


def test_histories_start_at_step_0_with_the_untrained_model(tmp_path):
    result, logged = _run(tmp_path)
    m = result.metrics
    at = lambda key, step: [mm[key] for mm, s in logged if key in mm and s == step]  # noqa: E731
    # The untrained model's ρ is the start of the align/spearman curve, and stays a scalar too.
    assert at("align/spearman", 0) == [m["align/spearman_init"]]
    assert at("align/anticorrelation", 0) == [-m["align/spearman_init"]]
    assert len(at("align/pearson", 0)) == 1
    # Values logged once sit at step 0: the baselines (they need no training) and the final results.
    for key in ("align/baseline_norm", "align/baseline_linear", "align/excess", "align/training_gain",
                "align/spearman_init", "val/r2", "perturb/low_over_high"):
        assert [(mm[key], s) for mm, s in logged if key in mm] == [(m[key], 0)], key
    # Training changed the model: the losses at 0 are the untrained ones, not the final ones.
    assert at("val/loss", 0)[0] != m["val/loss"] and at("train/loss", 0)[0] != m["train/loss"]
    assert m["align/training_gain"] == m["align/anticorrelation"] + m["align/spearman_init"]


def test_one_epoch_per_step_logs_the_untrained_train_loss_once(tmp_path):
    _, logged = _run(tmp_path, "trainer.log_every=1")
    assert [s for m, s in logged if "train/loss" in m][:2] == [0, 1]


def test_run_returns_the_trained_model_and_its_input(tmp_path):
    import torch

    result, _ = _run(tmp_path, "replicates=2")
    assert result.model_input.shape == (2, 200, 2) and result.model is not None
    with torch.no_grad():
        attention = result.model.attention(torch.from_numpy(result.model_input)).numpy()
    table = np.genfromtxt(tmp_path / "attention.csv", delimiter=",", names=True)
    np.testing.assert_allclose(attention[1], table["attention_r1"], atol=1e-7)


def test_auto_accelerator_on_a_cpu_machine_gives_the_cpu_numbers(tmp_path):
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("auto picks the GPU here; the numbers may differ in the last digits")
    cpu, _ = _run(tmp_path / "cpu")
    auto, _ = _run(tmp_path / "auto", "trainer.accelerator=auto")
    assert auto.metrics == cpu.metrics


def test_noise_off_gives_the_model_the_clean_orbit(tmp_path):
    result, _ = _run(tmp_path, "noise=none")
    table = np.genfromtxt(tmp_path / "attention.csv", delimiter=",", names=True)
    np.testing.assert_array_equal(table["prey"], table["noisy_prey"])
    assert np.isfinite(result.metrics["align/spearman"])
