"""`sweep_overview.png` on a sweep's parent run, from what its child runs recorded.

Each FINISHED child's own `attention.csv` (its `attention` and `sensitivity` per step) is read back
from the store, so the overview shows what the runs logged, whichever process or host ran them; a
failed, pruned or killed child, or one that logged no CSV, is an empty panel. A plain multirun and
an Optuna study both end in `MlflowSweepCallback.on_multirun_end`, which calls `log_sweep_overview`
before it closes the parent. Drawing it must never cost the sweep: any failure is one warning line."""
from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from lvsweep.metric_names import ALIGN_SPEARMAN
from lvsweep.trial import PRUNED_TAG

OVERVIEW = "sweep_overview.png"
ATTENTION_CSV = "attention.csv"
SENSITIVITY_TAG = "lvsweep.sensitivity"  # the measure a run's sensitivity column holds


def child_label(run: Any, swept: Sequence[str]) -> str:
    """`noise.level=2 model.lr=0.00017`: the child's swept values (numbers to 4 significant
    digits), or its run name where nothing varies."""
    parts = []
    for key in swept:
        value = run.data.params.get(key)
        if value is None:
            continue
        try:
            number = float(value)
            value = f"{number:.4g}" if math.isfinite(number) else value
        except ValueError:
            pass
        parts.append(f"{key}={value}")
    return " ".join(parts) or run.info.run_name or run.info.run_id[:8]


def read_attention_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The `attention` and `sensitivity` columns of a run's attention.csv."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return (np.array([float(r["attention"]) for r in rows]), np.array([float(r["sensitivity"]) for r in rows]))


def panels_of(client: Any, children: Sequence[Any], folder: Path) -> list[Any]:
    """One `Panel` per child, in sweep order; only the children that could be shown are read
    (above `MAX_PANELS`, those with the lowest ρ)."""
    from lvsweep.analysis.overview import Panel, chosen
    from lvsweep.tracking.report import varying_params

    with_params = [r for r in children if r.data.params]
    swept = varying_params(with_params) if len(with_params) > 1 else []
    bare = []
    for run in children:
        status = "PRUNED" if PRUNED_TAG in run.data.tags else run.info.status
        rho = run.data.metrics.get(ALIGN_SPEARMAN, math.nan)
        # A placeholder with data, so that `chosen` ranks a finished run by its ρ before reading it.
        ok = status == "FINISHED" and math.isfinite(rho)
        bare.append(Panel(child_label(run, swept), rho, np.zeros(2) if ok else None, np.zeros(2) if ok else None,
                          status))
    keep = {id(p) for p in chosen(bare)[0]}
    panels = []
    for run, panel in zip(children, bare):
        if id(panel) not in keep:
            panels.append(panel)
            continue
        if panel.drawn:
            try:
                where = client.download_artifacts(run.info.run_id, ATTENTION_CSV, str(folder / run.info.run_id))
                attention, sensitivity = read_attention_csv(Path(where))
                panel = Panel(panel.label, panel.rho, attention, sensitivity, panel.status)
            except Exception:  # a run that logged no CSV (or an unreadable one): shown as without data
                panel = Panel(panel.label, panel.rho, None, None, "NO CSV")
        panels.append(panel)
    return panels


def log_sweep_overview(client: Any, parent_run_id: str, children: Sequence[Any]) -> Optional[str]:
    """Draw the overview of `children` and log it at the parent's artifact root; its artifact path,
    or None (no children, or a failure, told in one warning line)."""
    try:
        if not children:
            return None
        from lvsweep.analysis.figures import measure_name
        from lvsweep.analysis.overview import sweep_overview
        from lvsweep.tracking.runs import store_write

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per child otherwise
        parent = client.get_run(parent_run_id)
        measures = {r.data.tags.get(SENSITIVITY_TAG) for r in children} - {None}
        with tempfile.TemporaryDirectory(prefix="lvsweep-overview-") as tmp:
            folder = Path(tmp)
            panels = panels_of(client, children, folder / "runs")
            path = sweep_overview(folder / OVERVIEW, panels, parent.info.run_name or parent_run_id,
                                  measure_name(measures.pop()) if len(measures) == 1 else "")
            store_write(client.log_artifact, parent_run_id, str(path))
        return OVERVIEW
    except Exception as exc:
        print(f"lvsweep: warning: {OVERVIEW} not drawn: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
