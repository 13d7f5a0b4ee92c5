"""The ablation report from a real small sweep: one row per group, numbers as MLflow holds them."""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lvsweep.tracking.report import continuous_bins, group_runs, quantile_bins, varying_params
from lvsweep.metric_names import ALIGN_SPEARMAN, ALIGN_SPEARMAN_CI_HIGH, ALIGN_SPEARMAN_CI_LOW, ALIGN_TRAINING_GAIN, VAL_LOSS, VAL_NOISY_MSE, VAL_R2
from lvsweep.tracking.provenance import COMMAND_TAG, COMMIT_TAG, VERSION_TAG
from lvsweep.tracking.report_plot import REPORT_KINDS, alignment_figure
from lvsweep.tracking.report_table import COLUMNS, INPUT_MSE, N_BINS, NO_INTERVAL, Group, markdown, table

from helpers.cli import run_cli, together
from helpers.inprocess import call_cli
from helpers.overrides import QUICK
from helpers.store import child_runs, client_for, sweep_parents, with_store


def run_report(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(cwd, *args, module="lvsweep.report")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, made_store):
    """The sweep, in a directory holding a store made as the CLI makes one (its creation is checked
    elsewhere)."""
    cwd = with_store(made_store, tmp_path_factory.mktemp("sweep"))
    proc = run_cli(cwd, "-m", "noise=0,2", "model=linear,multihead", "replicates=2", *QUICK)
    assert proc.returncode == 0, proc.stderr
    (parent,) = sweep_parents(cwd)
    return cwd, client_for(cwd), parent


UNKNOWN = [
    (["--parent", "nosuchrun"], "lvsweep: error: --parent: no run 'nosuchrun' in this store"),
    (["--experiment", "other"], "lvsweep: error: --experiment: no experiment 'other' in this store"),
]


@pytest.fixture(scope="module")
def reports(sweep) -> dict[str, subprocess.CompletedProcess]:
    """The report commands on the sweep's store: the two that write the report one after the
    other (both log it to the parent run), the two refused beside them. Keyed by their flags."""
    cwd = sweep[0]
    writing = [("--out", "rep"), ()]
    refused = [tuple(args) for args, _ in UNKNOWN]
    done = together({"writing": lambda: [run_report(cwd, *args) for args in writing],
                     **{args: (lambda args=args: run_report(cwd, *args)) for args in refused}})
    return {**dict(zip(writing, done["writing"])), **{args: done[args] for args in refused}}


def test_report_has_one_row_per_group_with_the_numbers_mlflow_holds(sweep, reports):
    cwd, client, parent = sweep
    proc = reports[("--out", "rep")]
    assert proc.returncode == 0, proc.stderr
    with (cwd / "rep" / "report.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model.name"], r["noise.level"]) for r in rows] == [
        ("linear", "0.0"), ("linear", "2.0"), ("multihead", "0.0"), ("multihead", "2.0")]
    children = child_runs(cwd, parent.info.run_id)
    by_group = {(c.data.params["model.name"], c.data.params["noise.level"]): c for c in children}
    for row in rows:
        child = by_group[(row["model.name"], row["noise.level"])]
        assert row["runs"] == "1" and row["replicates"] == "2"
        for name, metric in COLUMNS:
            assert float(row[name]) == child.data.metrics[metric], (name, row)
        assert child.data.metrics["align/spearman_ci_low"] <= child.data.metrics["align/spearman"]
    md = (cwd / "rep" / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(table) == 1 + 4  # the header and one row per group
    assert "| linear | 2.0 | 1 × 2 |" in md
    logged = {f.path for f in client.list_artifacts(parent.info.run_id, "report")}
    assert logged == {"report/report.md", "report/report.csv", "report/alignment.png", "report/report.html"}
    child_files = {f.path for f in client.list_artifacts(children[0].info.run_id)}
    assert "replicates.csv" in child_files


def test_report_finds_the_latest_sweep_by_itself(sweep, reports):
    cwd, _, parent = sweep
    proc = reports[()]
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "report" / parent.info.run_id / "report.md").is_file()


@pytest.mark.parametrize("args, message", UNKNOWN)
def test_unknown_run_or_experiment_is_one_line(reports, args, message):
    proc = reports[tuple(args)]
    assert proc.returncode == 2 and proc.stderr.strip() == message


def test_missing_store_is_one_line_and_creates_nothing(tmp_path):
    """Through the report's entry function here: refused before MLflow opens anything, as the
    unknown run above is refused in a process of its own."""
    proc = call_cli(tmp_path, module="lvsweep.report")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("lvsweep: error: --tracking-uri: no MLflow store at sqlite:///mlruns/mlflow.db; "
                                   "run a sweep first or pass the store's URI")
    assert list(tmp_path.iterdir()) == []


def _run(**params: str) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(params=params))


def test_a_group_options_defaults_follow_the_choice_but_a_swept_field_stays_a_factor():
    # t_end is fixed within each system: it follows system.name. alpha varies within lotka_volterra: a factor.
    runs = [_run(**{"system.name": n, "system.t_end": t, "system.params.alpha": a})
            for n, t, a in [("lotka_volterra", "30", "1.0"), ("lotka_volterra", "30", "2.0"),
                            ("lorenz", "15", "1.0"), ("lorenz", "15", "1.0")]]
    assert varying_params(runs) == ["system.name", "system.params.alpha"]


def _trial(lr: float, noise: float, rho: float) -> SimpleNamespace:
    metrics = {metric: rho for _, metric in COLUMNS}
    return SimpleNamespace(data=SimpleNamespace(params={"model.lr": repr(float(lr)), "noise.level": "2.0", "replicates": "1"},
                                                metrics=metrics, tags={}),
                           info=SimpleNamespace(run_id="x", run_name="x", status="FINISHED"))


def test_a_continuous_param_is_grouped_into_quantile_bins_with_readable_edges():
    rng = np.random.default_rng(0)
    lrs = 10 ** rng.uniform(-4, -1, size=18)  # as Optuna samples model.lr: 18 distinct 17-digit values
    runs = [_trial(lr, 2.0, float(i)) for i, lr in enumerate(lrs)]
    bins = continuous_bins(runs, ["model.lr"])
    groups = group_runs(runs, ["model.lr"], bins)
    assert len(groups) == N_BINS and sum(len(g.runs) for g in groups) == 18
    for g in groups:
        low, high = (float(x) for x in g.params["model.lr"][1:-1].split(", "))
        assert all(low <= float(r.data.params["model.lr"]) * (1 + 1e-3) for r in g.runs)
        assert all(float(r.data.params["model.lr"]) <= high * (1 + 1e-3) for r in g.runs)
        assert len(g.params["model.lr"]) < 25  # %.3g edges, not repr
    assert [_low(g) for g in groups] == sorted(_low(g) for g in groups)  # ordered by value, not as text
    parent = SimpleNamespace(info=SimpleNamespace(run_name="s", run_id="p", start_time=0), data=SimpleNamespace(tags={}))
    md = markdown(parent, ["model.lr"], groups, [],
                  "alignment.png", list(bins))
    assert "quantile bins" in md and repr(float(lrs[0])) not in md
    assert np.isfinite(groups[0].row()["ci_low"])  # several runs per bin: an interval over runs


def _low(g) -> float:
    return float(g.params["model.lr"][1:].split(",")[0])


def test_a_few_numeric_levels_stay_discrete():
    assert quantile_bins(["0.0", "1.0", "2.0", "4.0"]) is None
    assert quantile_bins(["linear", "multihead"] * 5) is None


def _html_table(page: str) -> tuple[list[str], list[list[str]]]:
    """The report table's header and rows, as the page shows them."""
    import re
    from html import unescape

    main = page.split("<thead>", 1)[1].split("</table>", 1)[0]
    head = [unescape(h) for h in re.findall(r"<th>(.*?)</th>", main)]
    rows = [[unescape(c) for c in re.findall(r"<td>(.*?)</td>", r)] for r in re.findall(r"<tr>(.*?)</tr>", main)[1:]]
    return head, rows


def test_report_page_shows_the_input_error_r2_gain_and_interval_each_run_recorded(sweep, reports):
    cwd, _, parent = sweep
    assert reports[("--out", "rep")].returncode == 0
    head, rows = _html_table((cwd / "rep" / "report.html").read_text())
    for name in ("gain", VAL_LOSS, INPUT_MSE, "R²"):
        assert name in head, head
    by_group = {(c.data.params["model.name"], c.data.params["noise.level"]): c
                for c in child_runs(cwd, parent.info.run_id)}
    assert len(rows) == 4
    for cells in rows:
        shown = dict(zip(head, cells))
        m = by_group[(shown["model.name"], shown["noise.level"])].data.metrics
        assert shown[INPUT_MSE] == f"{m[VAL_NOISY_MSE]:.4g}" and shown[VAL_LOSS] == f"{m[VAL_LOSS]:.4g}"
        assert shown["R²"] == f"{m[VAL_R2]:+.2f}" and shown["gain"] == f"{m[ALIGN_TRAINING_GAIN]:+.3f}"
        # two replicates per run: the interval each run recorded, not the value alone
        assert shown["Spearman ρ (95 % CI)"] == (f"{m[ALIGN_SPEARMAN]:+.3f} [{m[ALIGN_SPEARMAN_CI_LOW]:+.3f}, "
                                                 f"{m[ALIGN_SPEARMAN_CI_HIGH]:+.3f}]")
    # the noisy input's error beside the model's: noise 2 has an input error, noise 0 none
    assert {float(dict(zip(head, c))[INPUT_MSE]) > 0 for c in rows} == {True, False}


def test_report_header_names_the_version_commit_command_and_start(sweep, reports):
    cwd, client, parent = sweep
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags[COMMAND_TAG].startswith("python -m lvsweep -m noise=0,2 model=linear,multihead")
    page = (cwd / "rep" / "report.html").read_text()
    header = page.split('<dl class="header">', 1)[1].split("</dl>", 1)[0]
    from html import unescape
    header = unescape(header)
    for label, value in [("lvsweep version", tags[VERSION_TAG]), ("git commit", tags.get(COMMIT_TAG, "none")),
                         ("command", tags[COMMAND_TAG]), ("sweep parent run", parent.info.run_id)]:
        assert f"<dt>{label}</dt><dd>{value}" in header, (label, header)
    from datetime import datetime, timezone
    day = datetime.fromtimestamp(parent.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d")
    assert f"<dt>started</dt><dd>{day} " in header
    md = (cwd / "rep" / "report.md").read_text()
    assert f"- command: `{tags[COMMAND_TAG]}`" in md and f"- lvsweep version: `{tags[VERSION_TAG]}`" in md


def test_one_replicate_says_it_has_no_interval_and_the_note_agrees():
    one = Group({"noise.level": "2.0"}, [_trial(1e-3, 2.0, -0.4)])
    one.runs[0].data.metrics.pop(ALIGN_SPEARMAN_CI_LOW), one.runs[0].data.metrics.pop(ALIGN_SPEARMAN_CI_HIGH)
    _, rows = table(["noise.level"], [one])
    assert rows[0][2] == f"-0.400 ({NO_INTERVAL})"
    two = Group({"noise.level": "2.0"}, [_trial(1e-3, 2.0, -0.4), _trial(2e-3, 2.0, -0.6)])
    _, rows = table(["noise.level"], [two])
    assert rows[0][2].startswith("-0.500 [") and NO_INTERVAL not in rows[0][2]  # an interval over the two runs


def test_report_legend_draws_each_kind_as_its_lines_are_drawn():
    """One group: every legend entry has the colour, line style, marker and fill of the lines it
    names, so that a reader matches them by eye."""
    params = [{"noise.level": "0.0"}, {"noise.level": "2.0"}]
    rows = [{key: -0.5 for key, *_ in REPORT_KINDS} for _ in params]
    fig = alignment_figure(["noise.level"], params, rows, "noise.level")
    ax = fig.axes[0]
    drawn = {(line.get_linestyle(), line.get_marker()): line for line in ax.get_lines() if len(line.get_xdata()) == 2}
    legend = ax.get_legend()
    assert len(legend.get_lines()) == len(REPORT_KINDS)
    for handle in legend.get_lines():
        line = drawn[(handle.get_linestyle(), handle.get_marker())]
        for prop in ("color", "markerfacecolor", "markeredgecolor", "linewidth", "markersize", "alpha"):
            assert getattr(handle, f"get_{prop}")() == getattr(line, f"get_{prop}")(), prop
