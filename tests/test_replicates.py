"""Replicates: one vectorised model behaves as R models trained alone, and R = 1 changes nothing."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from lvsweep.app import compose_config
from lvsweep.data.trajectory import replicate_seed
from lvsweep.pipeline import run_experiment
from helpers.cli import error_line, run_cli
from helpers.inprocess import call_cli
from helpers.overrides import QUICK
# Windowed attention for one model, torch's full nn.MultiheadAttention path for the other.
MODELS = {"linear": [], "multihead": ["model.window=16"], "transformer": ["model.window=null"]}


def _run(tmp_path, name, *overrides):
    out = tmp_path / name
    result = run_experiment(compose_config(*QUICK, *overrides), lambda m, s: None, out)
    table = np.genfromtxt(out / "attention.csv", delimiter=",", names=True)
    with (out / "replicates.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return result.metrics, table, rows


@pytest.mark.parametrize("model", list(MODELS))
def test_each_replicate_equals_the_model_trained_alone_with_its_seed(tmp_path, model):
    metrics, table, rows = _run(tmp_path, "vectorised", f"model={model}", *MODELS[model], "replicates=2", "seed=5")
    assert [int(r["seed"]) for r in rows] == [5, replicate_seed(5, 1)]
    spearmans = []
    for r, row in enumerate(rows):
        alone, alone_table, alone_rows = _run(tmp_path, f"alone{r}", f"model={model}", *MODELS[model],
                                              f"seed={row['seed']}")
        np.testing.assert_allclose(table[f"attention_r{r}"], alone_table["attention"], rtol=2e-4, atol=1e-7)
        assert float(row["val_loss"]) == pytest.approx(alone["val/loss"], rel=1e-4)
        assert float(row["spearman"]) == pytest.approx(alone["align/spearman"], abs=1e-3)
        assert float(row["spearman_init"]) == pytest.approx(alone["align/spearman_init"], abs=1e-6)
        spearmans.append(alone["align/spearman"])
    # The replicates differ (own initialisation, own noise), and the run reports their mean.
    assert not np.allclose(table["attention_r0"], table["attention_r1"])
    assert metrics["align/spearman"] == pytest.approx(np.mean(spearmans), abs=1e-3)
    assert metrics["align/anticorrelation"] == -metrics["align/spearman"]
    np.testing.assert_allclose(table["attention"], (table["attention_r0"] + table["attention_r1"]) / 2)


def test_one_replicate_is_the_run_without_replicates(tmp_path):
    metrics, table, rows = _run(tmp_path, "one", "replicates=1")
    assert len(rows) == 1 and int(rows[0]["seed"]) == 0
    assert "attention_r0" not in table.dtype.names
    assert metrics["align/spearman_mean"] == metrics["align/spearman"]
    assert "align/spearman_ci_low" not in metrics and "align/spearman_std" not in metrics


def test_replicate_seeds_are_distinct_and_reproducible():
    seeds = [replicate_seed(s, r) for s in range(3) for r in range(8)]
    assert len(set(seeds)) == len(seeds)
    assert replicate_seed(0, 0) == 0 and replicate_seed(2, 3) == replicate_seed(2, 3)


@pytest.mark.parametrize("value", ["0", "-3", "5000"])
def test_bad_replicates_is_one_line_naming_the_field(tmp_path, value):
    """The first through the real CLI in a process of its own; the others, refused the same way,
    through its entry function here (see `helpers.table`)."""
    proc = (run_cli if value == "0" else call_cli)(tmp_path, f"replicates={value}")
    assert error_line(proc) == f"lvsweep: error: replicates: must be an integer in [1, 1024], got {value}"
    assert not (tmp_path / "mlruns").exists()
