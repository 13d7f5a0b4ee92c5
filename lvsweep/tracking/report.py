"""The ablation report of a sweep: `python -m lvsweep.report [--parent RUN_ID] [--out DIR]`.

It reads the sweep's child runs back from MLflow, groups them by the params that vary across
them (noise level, model, system, learning rate, ...), and writes report.md and a self-contained
report.html (alignment with its 95 % CI beside the controls, p-value and reconstruction loss), report.csv (the same numbers at
full precision) and a plot of alignment against noise level; all four are also logged as
artifacts of the sweep's parent run, under `report/`.
"""
from __future__ import annotations

import argparse
import difflib
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError, exit_with_error
from lvsweep.tracking.stores import check_reachable
from lvsweep.tracking.report_table import MAX_LEVELS, N_BINS, Group, html_page, markdown, write_csv

SWEEP_TAG = "lvsweep.kind"
# Params that say where a run was recorded, not what it measured.
NOT_A_FACTOR = ("tracking.",)
NOISE = "noise.level"
DEFAULT_OUT = Path("report")  # the report of sweep <id> goes to report/<id>/ unless --out says otherwise


def check_inputs(out: Optional[Path], tracking_uri: Optional[str]) -> None:
    """What can be checked without MLflow, before its imports (seconds) and the store's reads:
    where the report goes, and whether a server store answers at all (MLflow's own client retries
    an unreachable server for minutes before it says so)."""
    check_out(out if out is not None else DEFAULT_OUT, "" if out is not None else f" (the default, {DEFAULT_OUT}/)")
    given = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if given:
        check_reachable(given, "--tracking-uri")


def check_out(out: Path, which: str = "") -> None:
    """Refuse, naming --out, a report folder that is a file, lies under a file, or cannot be made
    or written: the report is written last, after the store has been read."""
    if os.path.exists(out) and not out.is_dir():
        raise LvsweepError("--out", f"{out}{which} is a file, not a folder; give a folder for the report")
    existing = next((p for p in (out, *out.parents) if os.path.exists(p)), Path("."))
    if not existing.is_dir():
        raise LvsweepError("--out", f"{existing} is a file, so the folder {out}{which} cannot be made there")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".lvsweep-report-check-"))
    except OSError as exc:
        raise LvsweepError("--out", f"cannot write in {existing} ({exc.strerror or exc}), where the folder "
                                    f"{out}{which} goes; make it writable or choose another --out") from None


def open_client(uri: str) -> Any:
    """A client on an existing store; the report never creates one."""
    from mlflow.tracking import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise LvsweepError("--tracking-uri", f"no MLflow store at {uri}; run a sweep first or pass the store's URI")
    return MlflowClient(tracking_uri=uri)


def find_parent(client: Any, experiment: str, parent_id: Optional[str]) -> Any:
    """The given parent run, or the experiment's latest sweep."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise LvsweepError("--experiment", f"no experiment '{experiment}' in this store")
    if parent_id:
        try:
            run = client.get_run(parent_id)
        except MlflowException:
            raise LvsweepError("--parent", f"no run '{parent_id}' in this store") from None
        if run.info.experiment_id != exp.experiment_id:
            raise LvsweepError("--parent", f"run '{parent_id}' is not in experiment '{experiment}'")
        return run
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise LvsweepError("--parent", f"experiment '{experiment}' has no sweep; run one with -m, or pass --parent")
    return runs[0]


def varying_params(runs: Sequence[Any]) -> list[str]:
    """Params present in every run whose value differs between them, less those that only follow a
    config group's choice. A param only some runs have (`model.heads`) belongs to one option of a
    group; one that every option has but that is fixed within each option (`system.t_end` when
    `system.name` varies) is that option's default, not a factor of its own."""
    keys = sorted(set.intersection(*(set(r.data.params) for r in runs)))
    varying = [k for k in keys if not k.startswith(NOT_A_FACTOR) and len({r.data.params[k] for r in runs}) > 1]
    return [k for k in varying if not follows_choice(runs, k, varying)]


def follows_choice(runs: Sequence[Any], key: str, varying: Sequence[str]) -> bool:
    """Whether `key` (e.g. `system.t_end`) takes one value per value of its group's `<group>.name`."""
    choice = key.split(".")[0] + ".name"
    if key == choice or choice not in varying:
        return False
    seen: dict[str, str] = {}
    return all(seen.setdefault(r.data.params[choice], r.data.params[key]) == r.data.params[key] for r in runs)


def _order(value: Optional[str]) -> tuple[int, float, str]:
    text = str(value)
    if text.startswith("["):  # a bin label: by its lower edge
        text = text[1:].split(",")[0]
    try:
        return 0, float(text), ""
    except (TypeError, ValueError):
        return 1, 0.0, str(value)


def _floats(values: Sequence[Optional[str]]) -> Optional[np.ndarray]:
    try:
        return np.array([float(v) for v in values])  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def quantile_bins(values: Sequence[Optional[str]], n_bins: int = N_BINS,
                  max_levels: int = MAX_LEVELS) -> Optional[dict[str, str]]:
    """Each value's bin label (`[low, high)`, the last bin closed, edges `%.3g`) when the values are
    numbers with more than `max_levels` distinct ones; None for a factor that is discrete.

    Edges are quantiles of the values, so each bin holds about as many runs (a log-sampled learning
    rate gets bins even in log scale) and ties merge bins rather than leave one empty."""
    nums = _floats(values)
    if nums is None or len(np.unique(nums)) <= max_levels:
        return None
    edges = np.unique(np.quantile(nums, np.linspace(0.0, 1.0, n_bins + 1)))
    last = len(edges) - 2
    labels = {}
    for raw, x in zip(values, nums):
        b = min(int(np.searchsorted(edges, x, side="right")) - 1, last)
        labels[str(raw)] = f"[{edges[b]:.3g}, {edges[b + 1]:.3g}{']' if b == last else ')'}"
    return labels


def continuous_bins(runs: Sequence[Any], factors: Sequence[str]) -> dict[str, dict[str, str]]:
    """Bin labels of every continuous factor, by factor."""
    bins = {f: quantile_bins([r.data.params.get(f) for r in runs]) for f in factors}
    return {f: b for f, b in bins.items() if b is not None}


def group_runs(runs: Sequence[Any], factors: Sequence[str],
               bins: Optional[dict[str, dict[str, str]]] = None) -> list[Group]:
    """One group per setting of the factors; a binned factor's setting is its bin."""
    bins = bins or {}
    groups: dict[tuple, Group] = {}
    for r in runs:
        raw = [r.data.params.get(f) for f in factors]
        key = tuple(bins[f][str(v)] if f in bins else v for f, v in zip(factors, raw))
        groups.setdefault(key, Group(dict(zip(factors, key)), [])).runs.append(r)
    return [groups[k] for k in sorted(groups, key=lambda k: [_order(v) for v in k])]


def left_out(runs: list[Any]) -> str:
    """The sentence naming the runs not in the table: pruned trials (stopped early on purpose by
    their study's pruner) apart from runs that failed or were stopped."""
    from lvsweep.tracking.sweeps import was_pruned

    out = [r for r in runs if r.info.status != "FINISHED"]
    pruned = [r.info.run_name or r.info.run_id for r in out if was_pruned(r)]
    failed = [r.info.run_name or r.info.run_id for r in out if not was_pruned(r)]
    parts = ([f"{len(pruned)} pruned by the study's pruner ({', '.join(pruned)})"] if pruned else []) + \
            ([f"{len(failed)} not FINISHED ({', '.join(failed)})"] if failed else [])
    return f"Not in the table: {'; '.join(parts)}." if parts else ""


def write_report(client: Any, parent: Any, out_dir: Path) -> list[Path]:
    from lvsweep.tracking.report_plot import alignment_by_group
    from lvsweep.tracking.runs import child_runs

    runs = child_runs(client, parent.info.experiment_id, parent.info.run_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    if not finished:
        raise LvsweepError("--parent", f"sweep '{parent.info.run_id}' has no finished child runs")
    factors = varying_params(finished)
    bins = continuous_bins(finished, factors)
    groups = group_runs(finished, factors, bins)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # made or changed since check_out looked
        raise LvsweepError("--out", f"cannot make the folder {out_dir} ({exc.strerror or exc})") from None
    # Each group sits at the mean noise level of its runs (a bin's label is not a position).
    x_values = ([float(np.mean([float(r.data.params[NOISE]) for r in g.runs])) for g in groups]
                if NOISE in factors else None)
    plot = alignment_by_group(out_dir / "alignment.png", factors, [g.params for g in groups],
                                      [g.row() for g in groups], NOISE, x_values)
    missing = left_out(runs)
    md = out_dir / "report.md"
    md.write_text(markdown(parent, factors, groups, missing, plot.name, list(bins)))
    page = out_dir / "report.html"
    page.write_text(html_page(parent, factors, groups, missing, plot, list(bins)))
    paths = [md, write_csv(out_dir / "report.csv", factors, groups), plot, page]
    for path in paths:
        client.log_artifact(parent.info.run_id, str(path), artifact_path="report")
    return paths


class OneLineParser(argparse.ArgumentParser):
    """argparse prints its usage and then the error; lvsweep's promise is one line naming the flag."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        flags = [a for action in self._actions for a in action.option_strings if a.startswith("--")]
        if message.startswith("unrecognized arguments: "):
            first = message.split(": ", 1)[1].split()[0]
            guess = difflib.get_close_matches(first.partition("=")[0], flags, n=1, cutoff=0.7)
            hint = f"did you mean {guess[0]}? " if guess else ""
            exit_with_error(f"{first}: unknown argument; {hint}allowed: {', '.join(flags)} (see --help)")
        flag, sep, problem = message.removeprefix("argument ").partition(": ")
        exit_with_error(f"{flag}: {problem}" if sep else message)
        raise AssertionError("unreachable")


EPILOG = """examples:
  python -m lvsweep.report                            the latest sweep of experiment 'lvsweep' in ./mlruns
  python -m lvsweep.report --parent <run id> --out my_report
  python -m lvsweep.report --tracking-uri sqlite:///mlruns/mlflow.db --experiment lvsweep

writes report.md, report.csv and alignment.png to --out (default report/<parent run id>/) and logs
them to the sweep's parent run under report/. Errors are one line and exit status 2."""


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = OneLineParser(prog="python -m lvsweep.report", description=textwrap.fill(" ".join(__doc__.split("\n\n")[1].split()), 88),
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else "
                                               "sqlite:///mlruns/mlflow.db)")
    parser.add_argument("--experiment", default="lvsweep", help="MLflow experiment of the sweep (default: lvsweep)")
    parser.add_argument("--parent", help="the sweep's parent run id (default: the latest sweep)")
    parser.add_argument("--out", type=Path, help="output directory (default: report/<parent run id>)")
    args = parser.parse_args(argv)
    try:
        check_inputs(args.out, args.tracking_uri)
        from lvsweep.tracking.runs import resolve_uri

        client = open_client(resolve_uri(args.tracking_uri))
        parent = find_parent(client, args.experiment, args.parent)
        paths = write_report(client, parent, args.out or DEFAULT_OUT / parent.info.run_id)
    except LvsweepError as exc:
        exit_with_error(str(exc))
    print(f"report of sweep {parent.info.run_id}: {paths[0]}")
    print(f"  also logged to that run's artifacts under report/: {', '.join(p.name for p in paths)}")

