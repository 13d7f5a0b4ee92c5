"""The real CLI in a temp dir, read back from the real SQLite MLflow store."""
from __future__ import annotations

import csv
import json
import re
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from helpers.cli import HANG_S, Outcomes, error_line, run_cli, together
from helpers.inprocess import call_cli
from helpers.overrides import QUICK
from helpers.servers import MlflowServer
from helpers.store import all_runs, client_for, parents_and_children, store_uri, with_store

METRICS = {"train/loss", "val/loss", "align/pearson", "align/spearman", "align/anticorrelation",
           "perturb/low_over_high"}
FIGURES = {"timeseries.png", "phase_portrait.png", "attention_vs_sensitivity.png", "perturbation.png"}


def torch_cuda() -> bool:
    """Whether torch sees a CUDA GPU here (imported late: collecting the tests stays cheap)."""
    import torch

    return torch.cuda.is_available()


# The failures during a run that a store must survive: the override, what the one line says.
FAILURES = [
    ("system.params.beta=-0.1", "system: the lotka_volterra ODE blew up"),
    ("noise.level=1e300", "train/loss: became nan"),
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, made_store) -> Iterator[Outcomes]:
    """The module's CLI runs, each in a directory of its own, started together rather than one
    test after another: name -> (directory, the CLIs' results in order). The single run and the
    sweep start in empty directories (a first run makes the store); the others in a copy of a store
    made as the CLI makes one, where the store's creation is not what they check. Once the sweep
    has ended, an MLflow server over its store starts while the other runs go on ("server":
    the server, stopped when the module's tests are done)."""
    commands = {
        "single": (None, [(*QUICK, "analysis.figures=true")]),
        "sweep": (None, [("-m", "noise=0,2,-1", *QUICK)]),
        "replicates": (made_store, [(*QUICK, "replicates=2", "analysis.figures=false")]),
        "no model": (made_store, [(*QUICK, "analysis.figures=false", "analysis.log_model=false")]),
        "shorthand": (made_store, [("noise=multiplicative", "noise.level=0.05", *QUICK)]),
        **{override: (made_store, [QUICK, (*QUICK, override)]) for override, _ in FAILURES},
    }
    dirs = {name: tmp_path_factory.mktemp("run") for name in commands}

    def one(name: str) -> tuple[Path, list]:
        template, chain = commands[name]
        if template is not None:
            with_store(template, dirs[name])
        return dirs[name], [run_cli(dirs[name], *args) for args in chain]

    def served_sweep() -> MlflowServer:
        one_sweep[0] = one("sweep")
        return MlflowServer(store_uri(dirs["sweep"]), tmp_path_factory.mktemp("served") / "artifacts").start(
            timeout_s=HANG_S)

    one_sweep: list = [None]
    outcomes = together({"server": served_sweep, **{name: (lambda name=name: one(name))
                                                     for name in commands if name != "sweep"}})
    if one_sweep[0] is not None:
        outcomes.update(sweep=one_sweep[0])
    else:
        outcomes.failures.setdefault("sweep", outcomes.failures["server"])
    try:
        yield outcomes
    finally:
        if "server" not in outcomes.failures:
            outcomes["server"].stop()


def finished(runs: dict, name: str) -> tuple[Path, object]:
    cwd, (proc,) = runs[name]
    assert proc.returncode == 0, proc.stderr
    return cwd, proc


@pytest.fixture(scope="module")
def single_run(runs):
    return finished(runs, "single")


def test_single_run_records_params_metrics_and_artifacts(single_run):
    cwd, proc = single_run
    client = client_for(cwd)
    (run,) = all_runs(cwd)
    assert run.info.status == "FINISHED"
    assert METRICS <= set(run.data.metrics)
    assert run.data.metrics["align/anticorrelation"] == pytest.approx(-run.data.metrics["align/spearman"])
    p = run.data.params
    assert (p["system.name"], p["noise.level"], p["model.name"], p["model.lr"], p["seed"]) == \
        ("lotka_volterra", "2.0", "linear", "0.01", "0")
    assert p["system.params.alpha"] == "1.0" and p["trainer.epochs"] == "40"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert len(history) >= 4 and history[0].value > history[-1].value  # it trained, and logged a history
    assert len(client.get_metric_history(run.info.run_id, "align/spearman")) >= 1

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"attention.csv", "config.yaml", "figures"} <= artifacts
    assert FIGURES <= {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
    local = Path(client.download_artifacts(run.info.run_id, "attention.csv", str(cwd)))
    with local.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["t", "prey", "predator", "noisy_prey", "noisy_predator", "attention", "sensitivity"]
    assert len(rows) == 300 and sum(float(r["attention"]) for r in rows) == pytest.approx(1.0, abs=1e-4)
    # The artifacts live under mlruns/artifacts of the launch directory, beside the database.
    assert (cwd / "mlruns" / "artifacts").is_dir()


def test_single_run_prints_summary_and_fills_hydra_run_dir(single_run):
    cwd, proc = single_run
    out = proc.stdout
    for needle in ("Pearson r =", "Spearman ρ =", "perturb/low_over_high =", "reconstruction: val loss",
                   "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db"):
        assert needle in out
    (run_dir,) = (cwd / "outputs" / "runs").glob("*/*")
    assert FIGURES <= {p.name for p in (run_dir / "figures").iterdir()}
    assert "noise:" in (run_dir / "config.yaml").read_text()
    assert f"figures: {run_dir / 'figures'}" in out



def test_summary_says_what_the_numbers_mean(single_run):
    cwd, proc = single_run
    (run,) = all_runs(cwd)
    m, out = run.data.metrics, proc.stdout
    # The reconstruction against the noisy input's own error, and R², as logged.
    assert f"val loss {m['val/loss']:.4g} vs {m['val/noisy_mse']:.4g} for the noisy input itself; " \
           f"R² {m['val/r2']:+.2f}: the model does not denoise" in out
    assert f"training gain {m['align/training_gain']:+.3f}" in out
    assert m["align/training_gain"] == pytest.approx(m["align/anticorrelation"] + m["align/spearman_init"])
    assert m["align/excess"] <= 0 and "⇒ the model beats none of the baselines: the best linear score" in out
    weakened = "⇒ training weakened the alignment" in out
    assert weakened == (m["align/training_gain"] < 0)
    # The run's page in MLflow states the same verdicts: its note holds the summary lines as printed.
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith("**Verdict**") and "- the model beats none of the baselines: the best linear score" in note
    assert ("- training weakened the alignment" in note) == weakened
    summary = [line for line in out.splitlines() if line.startswith("  attention vs ") or line.startswith("  ⇒ ")]
    assert summary and all(line in note.splitlines() for line in summary)
    assert f"| `val/r2` | {m['val/r2']:.4g} |" in note


def test_histories_start_at_step_0_values_logged_once_sit_there_and_no_metric_uses_a_reserved_prefix(single_run):
    cwd, _ = single_run
    client = client_for(cwd)
    (run,) = all_runs(cwd)
    m = run.data.metrics
    spearman = client.get_metric_history(run.info.run_id, "align/spearman")
    assert (spearman[0].step, spearman[0].value) == (0, pytest.approx(m["align/spearman_init"], abs=1e-12))
    assert spearman[-1].step == 40
    for key in ("align/pearson", "align/anticorrelation", "align/baseline_norm", "align/baseline_linear",
                "train/loss", "val/loss"):
        assert client.get_metric_history(run.info.run_id, key)[0].step == 0, key
    assert "dynamics/max_lyapunov" in m
    assert not [k for k in m if k.split("/")[0] in ("system", "mlflow")]
    # A value logged once is one point at step 0 (a labelled bar in the run page, not a lone dot at 40).
    for key in ("align/spearman_init", "align/excess", "align/pvalue", "align/training_gain", "val/r2",
                "val/noisy_mse", "perturb/low_over_high", "align/baseline_norm", "dynamics/max_lyapunov"):
        assert [(h.step, h.value) for h in client.get_metric_history(run.info.run_id, key)] == [(0, m[key])], key
    # The objective is written first, so MLflow's compare page opens its parallel coordinates on it.
    assert next(iter(client.get_run(run.info.run_id).data.metrics)) == "align/anticorrelation"


def _attention_matches_the_csv(cwd: Path) -> None:
    """Load the run's model from the store and read its attention on the run's own noisy input."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    client = client_for(cwd)
    (run,) = all_runs(cwd)
    mlflow.set_tracking_uri(store_uri(cwd))
    model = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model")
    csv_path = Path(client.download_artifacts(run.info.run_id, "attention.csv", str(cwd)))
    table = np.genfromtxt(csv_path, delimiter=",", names=True)
    replicates = int(run.data.params["replicates"])
    # The input example is the noisy training input; attention.csv keeps replicate 0's noisy columns.
    example = mlflow.models.Model.load(f"runs:/{run.info.run_id}/model").load_input_example(
        mlflow.artifacts.download_artifacts(f"runs:/{run.info.run_id}/model", dst_path=str(cwd / "model")))
    example = np.asarray(example, dtype=np.float32)
    assert example.shape == ((300, 2) if replicates == 1 else (replicates, 300, 2))
    np.testing.assert_array_equal(example.reshape(-1, 300, 2)[0],
                                  np.column_stack([table["noisy_prey"], table["noisy_predator"]]).astype(np.float32))
    with torch.no_grad():
        attention = model.attention(torch.from_numpy(example)).numpy().reshape(-1, 300)
    np.testing.assert_allclose(attention.mean(axis=0), table["attention"], atol=1e-6)
    for r in range(1, replicates):
        np.testing.assert_allclose(attention[r], table[f"attention_r{r}"], atol=1e-6)


def test_logged_model_reproduces_attention_csv(single_run):
    _attention_matches_the_csv(single_run[0])


def test_logged_model_carries_the_runs_params(single_run):
    """The experiment's Models tab shows what a model was trained with: the run's params are its own."""
    cwd = single_run[0]
    client = client_for(cwd)
    (run,) = all_runs(cwd)
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run.info.run_id and model.name == "model"
    assert model.params == run.data.params and model.params["noise.level"] == run.data.params["noise.level"]


def test_logged_model_of_replicates_reproduces_attention_csv(runs):
    _attention_matches_the_csv(finished(runs, "replicates")[0])


def test_model_logging_can_be_switched_off(runs):
    cwd, proc = finished(runs, "no model")
    (run,) = all_runs(cwd)
    assert run.outputs is None or not run.outputs.model_outputs
    assert "load_model" not in proc.stdout


@pytest.fixture(scope="module")
def noise_sweep(runs):
    cwd, (proc,) = runs["sweep"]
    return cwd, proc


def test_noise_multirun_makes_parent_and_children_and_survives_a_failed_job(noise_sweep):
    tmp_path, proc = noise_sweep
    assert proc.returncode == 1  # one job failed, the others ran
    assert "1 job(s) failed" in proc.stderr and "noise.level: must be" in proc.stderr
    parents, children = parents_and_children(tmp_path)
    assert len(parents) == 1 and len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    by_level = {r.data.params["noise.level"]: r for r in children}
    assert set(by_level) == {"0.0", "2.0", "-1.0"}
    for level in ("0.0", "2.0"):
        assert by_level[level].info.status == "FINISHED" and METRICS <= set(by_level[level].data.metrics)
    assert by_level["0.0"].data.metrics["align/spearman"] != by_level["2.0"].data.metrics["align/spearman"]
    failed = by_level["-1.0"]
    assert failed.info.status == "FAILED" and "noise.level" in failed.data.tags["lvsweep.error"]
    assert parents[0].info.status == "FINISHED" and parents[0].data.metrics["sweep/failed"] == 1
    best = max(by_level[level].data.metrics["align/anticorrelation"] for level in ("0.0", "2.0"))
    assert parents[0].data.metrics["best/align/anticorrelation"] == best
    for level in ("0.0", "2.0"):  # every finished run's page states its verdict; a failure keeps its reason
        assert by_level[level].data.tags["mlflow.note.content"].startswith("**Verdict**")
    assert failed.data.tags["mlflow.note.content"].startswith("Failed: ")
    # The closing lines give the parent run's page in the UI, not only its id.
    assert (f"then open http://127.0.0.1:5000/#/experiments/{parents[0].info.experiment_id}/runs/"
            f"{parents[0].info.run_id}?workflowType=machine_learning") in proc.stdout



def test_multirun_prints_one_line_per_job_and_an_aligned_fixed_decimal_table(noise_sweep):
    _, proc = noise_sweep
    out = proc.stdout
    job_lines = [line for line in out.splitlines() if line.startswith("  pearson ")]
    assert len(job_lines) == 2 and all("gain " in line and "(input " in line and "R² " in line for line in job_lines)
    assert "⇒" in job_lines[0] and "beats none of the baselines" in job_lines[0]
    table = out[out.index("sweep parent run"):out.index("  browse with: mlflow ui")].splitlines()[1:]
    header, rows, recorded = table[0], table[1:-1], table[-1]
    assert len(rows) == 3
    assert re.fullmatch(r"  recorded with lvsweep \S+ at commit [0-9a-f]{12}( with uncommitted changes \(its code\.diff\))?", recorded), recorded
    for name in ("excess", "p", "gain", "input mse", "R²"):
        assert f" {name}" in header
    # Right-aligned: every row ends where the header does, and numbers have exactly three decimals.
    assert {len(row) for row in rows} == {len(header)}
    finished = [row for row in rows if " FINISHED " in row]
    for row in finished:
        cells = row.split("FINISHED", 1)[1].split()
        assert len(cells) == 9 and all(re.fullmatch(r"[+-]?\d+\.\d{3}", c) for c in cells), row
    failed = next(row for row in rows if " FAILED " in row)
    assert failed.split("FAILED", 1)[1].split() == ["-"] * 9


def test_noise_shorthand_keeps_kind_selection_and_direct_level(runs):
    cwd, _ = finished(runs, "shorthand")
    (run,) = all_runs(cwd)
    assert (run.data.params["noise.kind"], run.data.params["noise.level"]) == ("multiplicative", "0.05")


BAD_SETTINGS = [
    ("noise=foo", "noise: unknown option 'foo'; allowed: gaussian, multiplicative, none, relative"),
    ("noise.levl=3", "noise.levl: unknown key; did you mean noise.level? keys of noise: kind, level"),
    ("noise.level=-1", "noise.level: must be a finite number >= 0"),
    ("model.lr=0", "model.lr: must be a finite number > 0"),
    ("trainer.epochs=0", "trainer.epochs: must be an integer >= 1"),
    ("model.form=bad", "model.form: Invalid value 'bad', expected one of [paper, scaled]"),
    ("system.start=[-1.0,5.0]", "system.start: [-1.0, 5.0] is outside the state space"),
    ("tracking.uri=sqlite:///no/such/dir/x.db", "tracking.uri: the store's directory no/such/dir does not exist"),
    ("trainer.accelerator=tpu", "trainer.accelerator: unknown accelerator 'tpu'; allowed: cpu, auto, gpu"),
    ("trainer.devices=2", "trainer.devices: must be an integer in [1, 1]"),
]


@pytest.mark.parametrize("override, message", BAD_SETTINGS)
def test_bad_input_fails_fast_with_one_line_naming_the_field(tmp_path, override, message):
    """The first through the real CLI in a process of its own; the others, refused the same way
    before anything opens, through its entry function here (see `helpers.table`)."""
    run = run_cli if (override, message) == BAD_SETTINGS[0] else call_cli
    assert error_line(run(tmp_path, *QUICK, override)).startswith(f"lvsweep: error: {message}")
    assert not all_runs(tmp_path)  # rejected before any work


def test_help_is_lvsweeps_own_and_lists_the_options_in_conf(tmp_path):
    proc = run_cli(tmp_path, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    out = proc.stdout
    assert "powered by Hydra" not in out and "base_" not in out
    conf = Path(__file__).resolve().parent.parent / "conf"
    for path in [*conf.glob("system/*.yaml"), *conf.glob("experiment/*.yaml"), *conf.glob("model/*.yaml")]:
        assert path.stem in out  # read from conf/ at run time: a new option shows up by itself
    for needle in ("-m noise=0,1,2,4", "search=optuna", "experiment=", "python -m lvsweep.report",
                   "mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db", "outputs/", "mlruns/mlflow.db",
                   "system.method"):
        assert needle in out, needle
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "mlruns").exists()
    hydra_help = run_cli(tmp_path, "--hydra-help")
    assert hydra_help.returncode == 0 and "Hydra" in hydra_help.stdout


@pytest.mark.parametrize("override, message", FAILURES)
def test_failures_during_a_run_are_recorded_and_lose_nothing(runs, override, message):
    """A QUICK run, then the failing one in the same directory."""
    cwd, (before, failing) = runs[override]
    assert before.returncode == 0, before.stderr
    assert error_line(failing).startswith(f"lvsweep: error: {message}")
    first, second = all_runs(cwd)
    assert first.info.status == "FINISHED" and METRICS <= set(first.data.metrics)
    assert second.info.status == "FAILED" and message in second.data.tags["lvsweep.error"]


def test_mlflow_server_serves_the_sweep_over_rest(noise_sweep, runs):
    """A real `mlflow server` over the sweep's store (started by `runs` once the sweep ended)."""
    cwd, _ = noise_sweep
    base = runs["server"].url
    exp = _get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=lvsweep")["experiment"]
    found = _post(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    assert len(found) == 4  # the parent and three jobs
    local = {r.info.run_id: r for r in all_runs(cwd)}
    for run in found:
        metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
        expected = local[run["info"]["run_id"]].data.metrics
        assert metrics == pytest.approx(expected)
    finished = [r for r in found if r["info"]["status"] == "FINISHED" and
                any(t["key"] == "mlflow.parentRunId" for t in r["data"].get("tags", []))]
    assert len(finished) == 2 and all("align/spearman" in {m["key"] for m in r["data"]["metrics"]}
                                      for r in finished)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=HANG_S) as resp:
        return json.load(resp)


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=HANG_S) as resp:
        return json.load(resp)


@pytest.mark.skipif(torch_cuda(), reason="this machine has CUDA: the error cannot happen")
def test_gpu_without_cuda_is_one_line_before_the_run_opens(tmp_path):
    proc = run_cli(tmp_path, *QUICK, "trainer.accelerator=gpu")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvsweep: error: trainer.accelerator: 'gpu' needs CUDA")
    assert not (tmp_path / "mlruns").exists() or not all_runs(tmp_path)


@pytest.mark.skipif(not torch_cuda(), reason="needs a CUDA GPU")
def test_gpu_run_trains_on_the_gpu_and_records_everything(tmp_path):
    proc = run_cli(tmp_path, *QUICK, "trainer.accelerator=gpu", "replicates=2", "model=multihead")
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FINISHED" and METRICS <= set(run.data.metrics)
    assert run.data.params["trainer.accelerator"] == "gpu"
    _attention_matches_the_csv(tmp_path)  # the model comes back to the CPU, loadable anywhere
