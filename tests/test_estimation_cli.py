"""Estimation from the CLI: observed data (data=csv, data=lynx_hare), its bad-data errors, and the
weighting study on simulated runs (analysis.estimate=true). Real CLI runs, read back from the store."""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from helpers.cli import Outcomes, run_cli, together
from helpers.inprocess import call_cli
from helpers.overrides import QUICK
from helpers.store import all_runs, client_for, with_store

# Reduced sampler and training: a csv run end to end in seconds (the fit need not converge here).
FAST_FIT = ["estimate.walkers=18", "estimate.steps=60", "estimate.burn=20", "trainer.epochs=20",
            "analysis.perturb.k=3", "analysis.log_model=false", "analysis.figures=true"]


def lv_csv(path: Path, n: int = 31, seed: int = 0) -> Path:
    """Lotka-Volterra (the default config's parameters) observed with 20 % log-normal noise."""
    from lvsweep.app import compose_config
    from lvsweep.systems import make_system
    from lvsweep.systems.simulate import integrate

    cfg = compose_config()
    t = np.linspace(0.0, 15.0, n)
    x = integrate(make_system(cfg.system), np.array([10.0, 5.0]), t, 1e-9, 1e-9)[0]
    y = x * np.exp(0.2 * np.random.default_rng(seed).standard_normal(x.shape))
    rows = ["time,rabbits,foxes", *(f"{a:g},{b:.6g},{c:.6g}" for a, (b, c) in zip(t, y))]
    path.write_text("\n".join(rows) + "\n")
    return path


GOOD = "t,prey,predator\n0,10,5\n1,12,4\n2,14,4.5\n3,13,6\n4,9,7\n5,7,6\n6,6,5\n7,8,4\n8,11,4\n9,13,5\n"
# name: (file text or None for a missing file, what the one error line must name)
BAD = {
    "missing_file": (None, ["no such file"]),
    "non_numeric": (GOOD.replace("3,13,6", "3,abc,6"), ["row 4", "'prey'", "not a number"]),
    "missing_value": (GOOD.replace("3,13,6", "3,,6"), ["row 4", "'prey'", "missing value"]),
    "unsorted": (GOOD.replace("3,13,6", "1.5,13,6"), ["row 4", "'t'", "times must increase"]),
    "duplicate": (GOOD.replace("3,13,6", "2,13,6"), ["row 4", "'t'", "duplicate time"]),
    "non_positive": (GOOD.replace("3,13,6", "3,13,0"), ["row 4", "'predator'", "not > 0"]),
    "too_few_rows": ("t,prey,predator\n0,10,5\n1,12,4\n2,14,4.5\n", ["3 rows", "8 free parameters"]),
    "column_count": (GOOD, ["3 state columns", "2 states"]),
    "short_row": (GOOD.replace("3,13,6", "3,13"), ["row 4", "'predator'", "missing value"]),
    "unknown_column": (GOOD.replace("predator", "wolves"), ["row 0", "'predator'", "no such column"]),
    "uneven_times": (GOOD.replace("9,13,5", "9.5,13,5"), ["row 10", "'t'", "evenly spaced"]),
}


def _bad_run(tmp_path: Path, name: str, run: Callable[..., subprocess.CompletedProcess]) -> tuple[str, Path, object]:
    text, _ = BAD[name]
    cwd = tmp_path / name
    cwd.mkdir()
    csv = cwd / "obs.csv"
    if text is not None:
        csv.write_text(text)
    extra = ["data.states=[prey,predator,prey]"] if name == "column_count" else []
    return name, csv, run(cwd, "data=csv", f"data.path={csv}", "data.time=t", *QUICK, *extra)


def test_bad_data_is_one_line_naming_file_row_column_and_records_nothing(tmp_path: Path):
    """The first file through the real CLI in a process of its own, the others (the same refusal,
    another line) through its entry function here, meanwhile (see `helpers.table`)."""
    first, *others = BAD
    with ThreadPoolExecutor(1) as pool:
        own = pool.submit(_bad_run, tmp_path, first, run_cli)
        results = [_bad_run(tmp_path, name, call_cli) for name in others]
        results.insert(0, own.result())
    for name, csv, proc in results:
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (name, proc.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("lvsweep: error: data."), (name, proc.stderr)
        assert str(csv) in lines[0], (name, lines[0])
        for part in BAD[name][1]:
            assert part in lines[0], (name, part, lines[0])
        assert not all_runs(csv.parent), name  # rejected before the run opened: nothing recorded


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_csv_run_fits_and_logs_estimates(tmp_path: Path):
    csv = lv_csv(tmp_path / "obs.csv")
    proc = run_cli(tmp_path, "data=csv", f"data.path={csv}", "data.time=time", "data.states=[rabbits,foxes]",
                   *FAST_FIT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fit to the observations" in proc.stdout and "x0_prey" in proc.stdout
    (run,) = all_runs(tmp_path)
    m = run.data.metrics
    for name in ("alpha", "beta", "gamma", "delta", "x0_prey", "x0_predator"):
        assert m[f"estimate/{name}_low"] <= m[f"estimate/{name}"] <= m[f"estimate/{name}_high"]
    for key in ("estimate/sigma_prey", "estimate/acceptance", "estimate/autocorr_max", "estimate/ess_min",
                "align/spearman", "perturb/low_over_high", "val/loss"):
        assert np.isfinite(m[key]), key
    assert 0.5 < m["estimate/alpha"] < 2.0  # truth 1.0
    artifacts = {a.path for a in client_for(tmp_path).list_artifacts(run.info.run_id)}
    figures = {a.path for a in client_for(tmp_path).list_artifacts(run.info.run_id, "figures")}
    assert "posterior.csv" in artifacts and {"figures/fit.png", "figures/posterior.png"} <= figures
    # The fit's figures say which run they show, as the run's other figures do (suptitle and PNG Title).
    from PIL import Image

    for name in ("fit.png", "posterior.png", "attention_vs_sensitivity.png"):
        local = client_for(tmp_path).download_artifacts(run.info.run_id, f"figures/{name}", str(tmp_path / "dl"))
        assert Image.open(local).text["Title"].endswith(f"data csv · seed 0 · {run.info.run_name}"), name


@pytest.fixture(scope="module")
def long_runs(tmp_path_factory, made_store) -> Outcomes:
    """The slow runs (the weighting study, the lynx-hare fit at full settings), each in a directory
    holding a store made as the CLI makes one, made together: name -> (directory, result)."""
    commands = {"weighting": (*QUICK, "analysis.estimate=true", "analysis.log_model=false", "analysis.figures=false",
                              "objectives=[estimate/attention_gain]"),
                "lynx_hare": ("experiment=lynx_hare",)}
    dirs = {name: with_store(made_store, tmp_path_factory.mktemp(name)) for name in commands}
    return together({name: (lambda name=name: (dirs[name], run_cli(dirs[name], *commands[name]))) for name in commands})


@pytest.mark.slow  # a training run plus fits of every weighting, ~30 s
def test_weighting_study_on_a_simulated_run_logs_the_gain(long_runs):
    tmp_path, proc = long_runs["weighting"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "estimate/attention_gain" in proc.stdout
    (run,) = all_runs(tmp_path)
    m = run.data.metrics
    assert m["estimate/attention_gain"] > 0
    assert m["estimate/attention_gain"] == pytest.approx(m["estimate/rel_error_uniform"] / m["estimate/rel_error_attention"])
    for w in ("uniform", "attention", "inverse_attention", "state_norm", "permuted"):
        assert np.isfinite(m[f"estimate/rel_error_{w}"])


def test_estimate_objective_needs_the_study_and_the_study_needs_simulated_data(tmp_path: Path):
    proc = run_cli(tmp_path, *QUICK, "objectives=[estimate/attention_gain]")
    assert proc.returncode == 2 and "analysis.estimate=true" in proc.stderr
    proc = call_cli(tmp_path, "data=lynx_hare", "analysis.estimate=true")  # the same refusal, another field
    assert proc.returncode == 2 and "analysis.estimate" in proc.stderr
    assert not all_runs(tmp_path)


@pytest.mark.slow
def test_lynx_hare_experiment_at_full_settings(long_runs):
    tmp_path, proc = long_runs["lynx_hare"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alpha" in proc.stdout and "acceptance" in proc.stdout
    (run,) = all_runs(tmp_path)
    m = run.data.metrics
    reference = {"alpha": 0.55, "beta": 0.028, "gamma": 0.80, "delta": 0.024}  # the Stan case study's medians
    for name, value in reference.items():
        assert value / 1.5 < m[f"estimate/{name}"] < value * 1.5, (name, m[f"estimate/{name}"])
        assert m[f"estimate/{name}_low"] < m[f"estimate/{name}"] < m[f"estimate/{name}_high"]
    assert m["estimate/converged"] == 1.0 and m["estimate/ess_min"] > 400
    assert 0.1 < m["estimate/acceptance"] < 0.7
    for key in ("align/spearman", "align/baseline_norm", "align/pvalue", "perturb/low_over_high", "val/loss"):
        assert np.isfinite(m[key]), key
    client = client_for(tmp_path)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "posterior.csv" in artifacts and {"figures/fit.png", "figures/posterior.png"} <= figures
