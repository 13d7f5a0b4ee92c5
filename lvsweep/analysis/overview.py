"""A sweep in one image: each run's key panel (attention's rank against the sensitivity's, as in
its `attention_vs_sensitivity.png`) side by side on shared axes, titled by its swept values and its ρ.

MLflow's compare page cannot put a sweep's figures side by side at laptop size; this figure is
how a sweep is compared. It is drawn from plain arrays: `lvsweep.tracking.overview` reads them
from the runs' own recorded `attention.csv`."""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from lvsweep.analysis.figures import RANK_X, RANK_Y, rank_scatter
from lvsweep.analysis.plotting import save, styled, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_PANELS = 12  # more panels than this would shrink each below legibility at ~800 px wide
PANEL_INCHES = 2.9


@dataclass(frozen=True)
class Panel:
    """One run of the sweep: its swept values (`noise.level=2`), its ρ (`align/spearman`) and its
    attention and sensitivity per step; no arrays for a run that recorded none (failed, pruned)."""
    label: str
    rho: float = math.nan
    attention: Optional[np.ndarray] = None
    sensitivity: Optional[np.ndarray] = None
    status: str = "FINISHED"

    @property
    def drawn(self) -> bool:
        return self.attention is not None and self.sensitivity is not None and len(self.attention) > 1


def chosen(panels: Sequence[Panel], most: int = MAX_PANELS) -> tuple[list[Panel], str]:
    """The panels to show, in sweep order, and a note on what was left out: above `most`, the `most`
    that anticorrelate most (lowest ρ, what a search maximises), runs without data left out first."""
    panels = list(panels)
    if len(panels) <= most:
        return panels, ""
    rank = sorted(range(len(panels)), key=lambda i: (not panels[i].drawn, _or_inf(panels[i].rho)))
    keep = sorted(rank[:most])
    return [panels[i] for i in keep], f"the {most} of {len(panels)} runs with the lowest ρ"


def _or_inf(v: float) -> float:
    return v if math.isfinite(v) else math.inf


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns near square (a row for three or fewer): 4 → 2×2, 6 → 2×3, 12 → 3×4."""
    cols = n if n <= 3 else math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


@styled
def overview_figure(panels: Sequence[Panel], title: str, measure: str = "") -> Figure:
    """The figure itself (see the module): one panel per run, axes shared, a run without data as
    an empty panel saying why; `title` heads it (the sweep), with what was left out, if anything."""
    shown, note = chosen(panels)
    if not shown:
        raise ValueError("a sweep overview needs at least one run")
    rows, cols = grid_shape(len(shown))
    fig, axes = subplots(rows, cols, figsize=(PANEL_INCHES * cols + 0.6, PANEL_INCHES * rows + 1.0), squeeze=False,
                         sharex=True, sharey=True)
    flat = axes.ravel()
    for ax, panel in zip(flat, shown):
        if panel.drawn:
            rank_scatter(ax, panel.attention, panel.sensitivity, size=4)
            ax.set_title(f"{panel.label}\nρ = {panel.rho:+.3f}")
        else:
            ax.set_xlim(-0.02, 1.02)
            ax.set_ylim(-0.02, 1.02)
            ax.set_aspect("equal")
            ax.text(0.5, 0.5, f"{panel.status.lower()}:\nno data", ha="center", va="center", color="0.45",
                    transform=ax.transAxes)
            ax.set_title(f"{panel.label}\n{panel.status}", color="0.45")
    for ax in flat[len(shown):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("rank of the sensitivity" if cols > 1 else RANK_X)
    for ax in axes[:, 0]:
        ax.set_ylabel(RANK_Y)
    what = f"Attention against the sensitivity{f' ({measure})' if measure else ''}, ranks, per run"
    heading = title + (f" ({note})" if note else "")
    width = max(40, int(9 * PANEL_INCHES * cols))  # characters a line of the heading may hold
    fig.suptitle(f"{what}\n" + "\n".join(textwrap.wrap(heading, width)))
    # The constrained engine, run once, makes room for a heading of several lines (tight_layout
    # leaves a wrapped sweep name over the panel titles of a single row).
    fig.set_layout_engine("constrained")
    fig.get_layout_engine().execute(fig)
    fig.set_layout_engine("none")
    return fig


def sweep_overview(path: Path, panels: Sequence[Panel], title: str, measure: str = "") -> Path:
    """`overview_figure` written to `path` as PNG."""
    return save(overview_figure(panels, title, measure), path)
