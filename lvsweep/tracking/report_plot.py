"""The report's plot: alignment of every group of a sweep's runs beside the baselines that need no
training, with its interval where there are replicates."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from matplotlib.figure import Figure

from lvsweep.analysis.plotting import save, styled, subplots

REPORT_KINDS = (("spearman", "trained attention", "-", "o"),
                ("spearman_init", "untrained attention", (0, (1, 1)), "v"),
                ("baseline_norm", "state norm", "--", "s"),
                ("baseline_linear", "best linear score", "-.", "^"))
NEUTRAL = "0.25"  # the legend's colour for the line styles when several groups share them


def kind_style(key: str, color: str) -> dict:
    """How one kind of ρ is drawn, the same for its lines and for its legend entry, so that a
    legend's marker is what the plot shows: the trained attention thick with filled markers, the
    baselines thinner with hollow ones."""
    main = key == "spearman"
    return dict(color=color, lw=1.8 if main else 1.1, ms=6 if main else 5, alpha=1.0 if main else 0.85,
                mfc=color if main else "white", mec=color)


@styled
def alignment_by_group(path: Path, factors: list[str], params: list[dict[str, str]], rows: list[dict[str, float]],
                       x_key: str, x_values: list[float] | None = None) -> Path:
    """The report's plot (see `alignment_figure`) written to `path`."""
    return save(alignment_figure(factors, params, rows, x_key, x_values), path)


def alignment_figure(factors: list[str], params: list[dict[str, str]], rows: list[dict[str, float]],
                     x_key: str, x_values: list[float] | None = None) -> Figure:
    """Mean Spearman ρ against `x_key` (noise level), one colour per setting of the other factors
    (e.g. per model), the trained attention beside every no-learning baseline (state norm, best
    linear score, untrained attention), each with its own line style and marker. The 95 % CI is a
    band where a group has ≥ 2 replicates; with one the plot says that there is no interval.
    Without `x_key` among the factors, one point per group.

    `x_values` places each group on the x axis (the mean `x_key` of its runs) when `x_key` is
    binned and `params` hold bin labels rather than numbers."""
    fig, ax = subplots(figsize=(9, 5))
    along = x_key in factors
    others = [f for f in factors if f != x_key]
    series: dict[str, list[int]] = {}
    for i, p in enumerate(params):
        label = ", ".join(f"{f} {p[f]}" if p[f].startswith("[") else f"{f}={p[f]}" for f in others) if along else ""
        series.setdefault(label, []).append(i)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    any_band = False
    for n, (label, idx) in enumerate(series.items()):
        color = colors[n % len(colors)]
        if along:
            x = np.array([x_values[i] if x_values is not None else float(params[i][x_key]) for i in idx])
        else:
            x = np.array(idx, dtype=float)
        get = lambda key: np.array([rows[i].get(key, np.nan) for i in idx], dtype=float)  # noqa: E731
        low, high = get("ci_low"), get("ci_high")
        band = np.isfinite(low) & np.isfinite(high)
        if band.any():
            any_band = True
            if along:
                ax.fill_between(x[band], low[band], high[band], color=color, alpha=0.18, lw=0)
            else:
                y = get("spearman")
                ax.errorbar(x[band], y[band], yerr=[y[band] - low[band], high[band] - y[band]], fmt="none",
                            color=color, capsize=4)
        for key, _, style, marker in REPORT_KINDS:
            ax.plot(x, get(key), ls=style if along else "none", marker=marker, **kind_style(key, color))
    if not along:
        ax.set_xticks(range(len(params)), [", ".join(p[f] for f in factors) for p in params], rotation=20,
                      ha="right")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(("noise level" if x_key == "noise.level" else x_key) + f" ({x_key})" if along
                  else ", ".join(factors) or "all runs")
    ax.set_ylabel("Spearman ρ with the sensitivity")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("Alignment and no-learning baselines"
                 + (" (band: 95 % CI over replicates or runs)" if any_band else "") + "; ρ < 0 = paper's claim")
    if not any_band:
        ax.text(0.99, 0.97, "1 replicate: no interval", transform=ax.transAxes, ha="right", va="top",
                color="0.3", fontsize=9)
    # One group: the line styles in its own colour, as drawn. Several: the styles in a neutral
    # colour, titled so, and each group's colour shown with the trained attention's line and marker.
    several = len(series) > 1
    kinds = [Line2D([], [], ls=style if along else "none", marker=marker, label=name,
                    **kind_style(key, NEUTRAL if several else colors[0]))
             for key, name, style, marker in REPORT_KINDS]
    legend = ax.legend(handles=kinds, title="Spearman ρ of" + (" (every colour)" if several else ""),
                       loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    if several or next(iter(series)):
        ax.add_artist(legend)
        main_marker = REPORT_KINDS[0][3]
        groups = [Line2D([], [], ls="-" if along else "none", marker=main_marker, label=label or "all runs",
                         **kind_style("spearman", colors[n % len(colors)])) for n, label in enumerate(series)]
        ax.legend(handles=groups, title="group (colour)", loc="upper left", bbox_to_anchor=(1.01, 0.5),
                  borderaxespad=0.0)
    fig.tight_layout()
    return fig
