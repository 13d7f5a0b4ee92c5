"""The report's table: which metric feeds each column, a group of runs as one row, and the table
written as Markdown, as one self-contained HTML page, and as CSV at full precision."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from lvsweep.analysis.alignment import t_interval
from lvsweep.metric_names import (ALIGN_BASELINE_LINEAR, ALIGN_BASELINE_NORM, ALIGN_EXCESS, ALIGN_PVALUE, ALIGN_SPEARMAN,
                                  ALIGN_SPEARMAN_CI_HIGH, ALIGN_SPEARMAN_CI_LOW, ALIGN_SPEARMAN_INIT, ALIGN_TRAINING_GAIN,
                                  ESTIMATE_ATTENTION_GAIN, VAL_LOSS, VAL_NOISY_MSE, VAL_R2)
from lvsweep.tracking.report_header import header_rows

# A numeric factor with more distinct values than this (an Optuna study's `model.lr`, sampled from a
# continuous range) is grouped into N_BINS quantile bins: one group per 17-digit value would give
# one row and one plot series per run.
MAX_LEVELS = 6
N_BINS = 4
COLUMNS = [  # report column, metric it comes from
    ("spearman", ALIGN_SPEARMAN),
    ("ci_low", ALIGN_SPEARMAN_CI_LOW),
    ("ci_high", ALIGN_SPEARMAN_CI_HIGH),
    ("pvalue", ALIGN_PVALUE),
    ("baseline_norm", ALIGN_BASELINE_NORM),
    ("baseline_linear", ALIGN_BASELINE_LINEAR),
    ("spearman_init", ALIGN_SPEARMAN_INIT),
    ("training_gain", ALIGN_TRAINING_GAIN),
    ("excess", ALIGN_EXCESS),
    ("val_loss", VAL_LOSS),
    # The loss of doing nothing (the noisy input against the clean orbit) and 1 − val/loss over it,
    # so that a val/loss reads against what the model had to beat.
    ("noisy_mse", VAL_NOISY_MSE),
    ("r2", VAL_R2),
]
NO_INTERVAL = "one replicate, no interval"
INPUT_MSE = "input MSE"  # the column of VAL_NOISY_MSE, as the terminal's summary names it
# Columns shown only when some run logged their metric (analysis.estimate=true runs).
OPTIONAL_COLUMNS = [("attention_gain", ESTIMATE_ATTENTION_GAIN)]


def has_metric(groups: Sequence["Group"], metric: str) -> bool:
    return any(metric in r.data.metrics for g in groups for r in g.runs)


@dataclass
class Group:
    """The runs that share one setting of the varying params."""

    params: dict[str, str]
    runs: list[Any]

    def values(self, metric: str) -> np.ndarray:
        return np.array([r.data.metrics.get(metric, math.nan) for r in self.runs])

    def row(self) -> dict[str, float]:
        """One run: its own numbers. Several runs (the same setting recorded twice): means over runs,
        the CI a t-interval over the runs' mean Spearman, and the largest p-value (conservative)."""
        row = {name: float(np.mean(self.values(metric))) for name, metric in COLUMNS}
        for name, metric in OPTIONAL_COLUMNS:  # a ratio: the geometric mean over runs
            row[name] = float(np.exp(np.mean(np.log(self.values(metric)))))
        if len(self.runs) > 1:
            row["ci_low"], row["ci_high"] = t_interval(self.values(ALIGN_SPEARMAN))
            row["pvalue"] = float(np.max(self.values(ALIGN_PVALUE)))
        row["runs"] = len(self.runs)
        row["replicates"] = int(sum(int(r.data.params.get("replicates", 1)) for r in self.runs))
        return row




def _fmt(x: float, digits: int = 3) -> str:
    return "—" if not math.isfinite(x) else f"{x:+.{digits}f}"


def _num(x: float) -> str:
    """A loss as the terminal prints it (4 significant digits), — where no run logged it."""
    return "—" if not math.isfinite(x) else f"{x:.4g}"


NOTE = ("ρ < 0 is the paper's claim (attention high where the sensitivity is low). The CI is a "
        "t-interval over a run's replicates, or over the runs of a group that holds several; a group of one "
        f"run with one replicate has none, and its cell says \"{NO_INTERVAL}\". p: one-sided, attention shifted "
        "circularly in time against the sensitivity. Baselines need no training: the noisy state's norm, the "
        "least-squares linear score of the noisy state with the sign that anticorrelates, and the model's "
        "own attention before training. gain = the anticorrelation trained − untrained (< 0: training "
        "weakened it). excess = the model's anticorrelation − the strongest baseline's (> 0: the model says "
        f"more than every baseline). {INPUT_MSE} ({VAL_NOISY_MSE}) is the noisy input's own error against the clean orbit, "
        f"the loss of doing nothing; R² ({VAL_R2}) = 1 − {VAL_LOSS} / {VAL_NOISY_MSE} (> 0: the model denoises).")


def table(factors: list[str], groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    """The report's header and rows as display strings, shared by report.md and report.html."""
    head = [*factors, "runs × replicates", "Spearman ρ (95 % CI)", "p (circular shift)", "ρ state norm",
            "ρ best linear", "ρ untrained", "gain", "excess", VAL_LOSS, INPUT_MSE, "R²"]
    optional = [(name, metric) for name, metric in OPTIONAL_COLUMNS if has_metric(groups, metric)]
    head += [metric for _, metric in optional]
    rows = []
    for g in groups:
        r = g.row()
        ci = (f" ({NO_INTERVAL})" if r["replicates"] == 1 else " (no interval recorded)") if not math.isfinite(r["ci_low"]) \
            else f" [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        rows.append([*(g.params[f] for f in factors), f"{r['runs']} × {r['replicates'] // r['runs']}",
                     f"{_fmt(r['spearman'])}{ci}", f"{r['pvalue']:.3f}", _fmt(r["baseline_norm"]),
                     _fmt(r["baseline_linear"]), _fmt(r["spearman_init"]), _fmt(r["training_gain"]), _fmt(r["excess"]),
                     _num(r["val_loss"]), _num(r["noisy_mse"]), _fmt(r["r2"], 2),
                     *(f"{r[name]:.3g}" if math.isfinite(r[name]) else "—" for name, _ in optional)])
    return head, rows


def binned_note(binned: Sequence[str], quote: str) -> str:
    """What the bins of continuous params mean, or nothing when no param was binned."""
    if not binned:
        return ""
    return (f"{', '.join(f'{quote}{f}{quote}' for f in binned)} take{'s' if len(binned) == 1 else ''} more than "
            f"{MAX_LEVELS} distinct values: grouped into {N_BINS} quantile bins [low, high), and the "
            "CI of a bin is a t-interval over its runs.")


def _intro(factors: list[str], groups: list[Group], quote: str) -> str:
    """The sentence under the header for both formats; `quote` marks a param name."""
    return (f"{sum(len(g.runs) for g in groups)} finished runs grouped by "
            f"{', '.join(f'{quote}{f}{quote}' for f in factors) or 'nothing (no param varies)'}.")


def _header(parent: Any, groups: list[Group]) -> list[tuple[str, str]]:
    return header_rows(parent, [r for g in groups for r in g.runs])


def markdown(parent: Any, factors: list[str], groups: list[Group], left_out: str, plot: str,
             binned: Sequence[str] = ()) -> str:
    head, rows = table(factors, groups)
    note = binned_note(binned, "`")
    lines = [f"# Ablation report: {parent.info.run_name}", "",
             *(f"- {label}: `{value}`" for label, value in _header(parent, groups)), "",
             _intro(factors, groups, "`"), "", *([note, ""] if note else []),
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += ["", NOTE, "", f"![alignment]({plot})"]
    if left_out:
        lines += ["", left_out]
    return "\n".join(lines) + "\n"


STYLE = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
         "th,td{border:1px solid #bbb;padding:3px 8px;text-align:right;white-space:nowrap}th{background:#eee}"
         "dl.header{display:grid;grid-template-columns:max-content auto;gap:1px 12px}"
         "dl.header dt{color:#555}dl.header dd{margin:0;font-family:monospace}")


def html_page(parent: Any, factors: list[str], groups: list[Group], left_out: str, plot: Path,
              binned: Sequence[str] = ()) -> str:
    """The report as one self-contained HTML file, the plot embedded as a data URI. MLflow's
    artifact preview shows report.md's image link as text (it cannot fetch a relative image); an
    HTML artifact is shown rendered, with nothing to fetch."""
    import base64
    from html import escape

    head, rows = table(factors, groups)
    title = f"Ablation report: {parent.info.run_name}"
    image = base64.b64encode(plot.read_bytes()).decode("ascii")
    header = "".join(f"<dt>{escape(label)}</dt><dd>{escape(value)}</dd>"
                     for label, value in _header(parent, groups))
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    missing = f"<p>{escape(left_out)}</p>" if left_out else ""
    note = f"<p>{escape(binned_note(binned, ''))}</p>" if binned else ""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title><style>{STYLE}'
            f'</style></head><body><h1>{escape(title)}</h1><dl class="header">{header}</dl>'
            f"<p>{escape(_intro(factors, groups, ''))}</p>{note}<table><thead><tr>{cells}</tr></thead>"
            f'<tbody>{body}</tbody></table><p>{escape(NOTE)}</p><img alt="alignment" style="max-width:100%" '
            f'src="data:image/png;base64,{image}">{missing}</body></html>\n')


def write_csv(path: Path, factors: list[str], groups: list[Group]) -> Path:
    names = [name for name, _ in COLUMNS] + [name for name, m in OPTIONAL_COLUMNS if has_metric(groups, m)]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*factors, "runs", "replicates", *names])
        for g in groups:
            r = g.row()
            writer.writerow([*(g.params[f] for f in factors), r["runs"], r["replicates"], *(repr(r[n]) for n in names)])
    return path
