"""The figures of a run, written as PNG files: what a reader of the paper looks for, drawn so that
the runs of a sweep can be compared (attention on one fixed log range in every run)."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from lvsweep.analysis.captions import caption
from lvsweep.analysis.plotting import FigureCall, legend_outside, new_figure, save, styled, subplots
from lvsweep.metric_names import ALIGN_BASELINE_LINEAR, ALIGN_BASELINE_NORM, ALIGN_EXCESS, ALIGN_PEARSON, ALIGN_PVALUE, ALIGN_SPEARMAN, ALIGN_SPEARMAN_CI_HIGH, ALIGN_SPEARMAN_CI_LOW, ALIGN_SPEARMAN_INIT

if TYPE_CHECKING:
    from lvsweep.analysis.perturbation import PerturbationResult
    from lvsweep.systems import DynamicalSystem

HIGH, LOW = "tab:red", "tab:blue"
# Attention relative to uniform (T·a_t: 1 = every step weighted alike) is drawn on one fixed log range
# in every run, so that the colours and axes of two runs of a sweep mean the same; values outside are
# clipped to its ends.
ATTENTION_RANGE = (1e-2, 1e2)
# The one name of that quantity on every axis, colour bar and legend of every figure.
ATTENTION = "T·a_t"
ATTENTION_AXIS = f"attention relative to uniform, {ATTENTION}"
RANGE_NOTE = f"log; {ATTENTION_RANGE[0]:g} to {ATTENTION_RANGE[1]:g} in every run, clipped"
# The phase portrait's layout height, and the room below it for its legend (see `phase_portrait`);
# SUPTITLE_Y is matplotlib's default height of a suptitle.
PORTRAIT_HEIGHT, LEGEND_ROOM, SUPTITLE_Y = 4.8, 0.6, 0.98
# Display names of the sensitivity measures, by the code name runs record (`lvsweep.sensitivity`).
MEASURE_NAMES = {"lyapunov_normal": r"Lyapunov normal derivative $\nabla V\cdot\hat{n}$",
                 "ftle": r"FTLE $\lambda(\tau)$"}


def measure_name(code: str) -> str:
    """The human name of a sensitivity measure (the code name itself for one not in the table)."""
    return MEASURE_NAMES.get(code, code)


def relative_attention(attention: np.ndarray) -> np.ndarray:
    """T·a_t clipped to ATTENTION_RANGE: attention in units of the uniform weight 1/T, which a run
    of any length T shares, on the range every figure draws."""
    return np.clip(len(attention) * np.asarray(attention, dtype=float), *ATTENTION_RANGE)


def _minmax(v: np.ndarray) -> np.ndarray:
    span = np.ptp(v)
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def _has_noise(clean: np.ndarray, noisy: np.ndarray) -> bool:
    return not np.allclose(clean, noisy, rtol=0.0, atol=1e-12)


@styled
def timeseries(path: Path, t: np.ndarray, clean: np.ndarray, noisy: np.ndarray, names: tuple[str, ...],
               attention: np.ndarray, pert: PerturbationResult, caption_text: str = "") -> Path:
    """States over time (the noisy observations as dots behind the clean lines, when there is
    noise), the perturbation test's kick times on a rug row of their own, and attention relative to
    uniform on the fixed log range.

    The kick times are marked on a row shared by all states rather than on a curve: a marker on one
    state's curve would suggest the attention belongs to that state. The dots are drawn large and
    opaque enough to print, under the lines (zorder), so the orbit stays readable over them."""
    fig, (ax, ax_r, ax_a) = subplots(3, 1, figsize=(10, 6.2), sharex=True, height_ratios=[3, 0.45, 1.5])
    noise = _has_noise(clean, noisy)
    for i, name in enumerate(names):
        line, = ax.plot(t, clean[:, i], lw=1.6, label=name, zorder=3)
        if noise:
            ax.scatter(t, noisy[:, i], s=9, color=line.get_color(), alpha=0.55, lw=0, zorder=2)
    for idx, color in ((pert.high_idx, HIGH), (pert.low_idx, LOW)):
        for a in (ax, ax_a):
            for ti in t[idx]:
                a.axvline(ti, color=color, alpha=0.22, lw=0.8, zorder=0)
    ax.set_ylabel("state")
    legend_outside(ax, title="clean orbit" + (" (noisy data: dots)" if noise else ""))
    what = "clean orbit (lines)" + (", noisy training data (dots)" if noise else "")
    ax.set_title(f"{what[0].upper()}{what[1:]}; perturbation-test kick times (ticks)")
    ax_r.eventplot([t[pert.high_idx], t[pert.low_idx]], lineoffsets=[1, 0], linelengths=0.8,
                   colors=[HIGH, LOW], linewidths=1.6)
    ax_r.set_yticks([1, 0], ["high", "low"])
    ax_r.set_ylim(-0.6, 1.6)
    ax_r.tick_params(axis="y", length=0)
    ax_r.set_ylabel("kicks", rotation=0, ha="right", va="center")
    handles = [Line2D([], [], color=HIGH, lw=1.6, label=f"highest attention ({len(pert.high_idx)} distinct places)"),
               Line2D([], [], color=LOW, lw=1.6, label=f"lowest attention ({len(pert.low_idx)} distinct places)")]
    ax_r.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.2), borderaxespad=0.0)
    ax_a.plot(t, relative_attention(attention), color="black", lw=1.0)
    ax_a.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax_a.set_yscale("log")
    ax_a.set_ylim(*ATTENTION_RANGE)
    ax_a.set_ylabel(f"{ATTENTION}\n(1 = uniform)")
    # The range note in the right margin, beside the panel, never over the attention spikes.
    ax_a.text(1.01, 0.5, RANGE_NOTE.replace("; ", ";\n").replace(" in every", "\nin every"),
              transform=ax_a.transAxes, ha="left", va="center", fontsize=8.5, color="0.35")
    ax_a.set_xlabel("t")
    fig.align_ylabels([ax, ax_r, ax_a])
    caption(fig, caption_text)
    fig.tight_layout()
    return save(fig, path)


@styled
def phase_portrait(path: Path, system: DynamicalSystem, clean: np.ndarray, noisy: np.ndarray,
                   attention: np.ndarray, caption_text: str = "") -> Path:
    """The orbit coloured by attention relative to uniform in every pair of state variables, over
    level sets of V where the system has one.

    The colour scale is logarithmic on the fixed ATTENTION_RANGE: softmax attention spans orders of
    magnitude, so a linear scale shows a few specks on a uniformly dark orbit, and a range fitted to
    each run would give the same colour different meanings in two runs of a sweep."""
    names = system.state_names
    pairs = list(combinations(range(system.dim), 2))
    # The legend hangs below the axes. The figure is LEGEND_ROOM taller than the 4.8 inches it is
    # laid out in, at the bottom, so that the legend lies on the canvas (the file is cropped to what
    # is drawn): every height of the 4.8-inch layout is lifted by LEGEND_ROOM.
    height = PORTRAIT_HEIGHT + LEGEND_ROOM
    lift = lambda y: (y * PORTRAIT_HEIGHT + LEGEND_ROOM) / height  # noqa: E731
    rc = matplotlib.rcParams
    fig, axes = subplots(1, len(pairs), figsize=(5.2 * len(pairs) + 1.2, height), squeeze=False,
                         gridspec_kw={"bottom": lift(rc["figure.subplot.bottom"]), "top": lift(rc["figure.subplot.top"])})
    noise = _has_noise(clean, noisy)
    rel = relative_attention(attention)
    order = np.argsort(rel, kind="stable")  # the highest attention drawn last, on top
    norm = LogNorm(*ATTENTION_RANGE, clip=True)
    with_v = system.dim == 2 and system.lyapunov(clean[:1]) is not None
    for ax, (i, j) in zip(axes[0], pairs):
        if noise:
            ax.scatter(noisy[:, i], noisy[:, j], s=3, color="0.6", alpha=0.25, lw=0, label="noisy data")
        sc = ax.scatter(clean[order, i], clean[order, j], c=rel[order], norm=norm, s=9, cmap="viridis", zorder=3)
        eq = system.equilibrium()
        if eq is not None:
            ax.plot(eq[i], eq[j], "k+", ms=10, label="equilibrium")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        if with_v:
            _lyapunov_contours(ax, system)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if with_v:
        handles.append(Line2D([], [], color="0.35", lw=0.8))
        labels.append("level sets of V")
    cbar = fig.colorbar(sc, ax=axes[0].tolist(), extend="both", pad=0.02)
    cbar.set_label(f"{ATTENTION_AXIS}\n({RANGE_NOTE})")
    if handles:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.45, lift(0.0)), ncol=len(handles),
                   frameon=False)
    caption(fig, caption_text, "Phase portrait coloured by attention" + (", over level sets of V" if with_v else ""),
            y=lift(SUPTITLE_Y))
    return save(fig, path)


def _lyapunov_contours(ax: Axes, system: DynamicalSystem, n: int = 240) -> None:
    """Level sets of V over the whole visible area (call after everything else is drawn, so that
    the limits are final); V is left blank where it is undefined (e.g. the logarithms of
    Lotka-Volterra's V at populations ≤ 0)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    g0, g1 = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.asarray(system.lyapunov(np.stack([g0, g1], axis=-1)), dtype=float)
    v = np.where(np.isfinite(v), v, np.nan)
    finite = v[np.isfinite(v)]
    if finite.size < 4:
        return
    levels = np.unique(np.quantile(finite, np.linspace(0.02, 0.9, 14)))
    ax.contour(g0, g1, v, levels=levels, colors="0.35", linewidths=0.6, linestyles="solid", alpha=0.8, zorder=1)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def ranks(v: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their mean rank), the scale Spearman's ρ correlates.

    Counted here rather than with `scipy.stats.rankdata` (the same values): the figure worker then
    draws without importing SciPy's statistics, about half a second of its start."""
    v = np.asarray(v, dtype=float).reshape(-1)
    order = np.argsort(v, kind="mergesort")
    first = np.r_[True, v[order][1:] != v[order][:-1]]  # where each run of equal values starts
    group = np.cumsum(first) - 1  # the tie group of each sorted position
    starts = np.r_[np.flatnonzero(first), len(v)]  # 0-based first position of each group, then the end
    mean_rank = (starts[:-1] + starts[1:] - 1) / 2  # 0-based mean position of each group
    out = np.empty(len(v))
    out[order] = mean_rank[group]
    return out / max(len(v) - 1, 1)


RANK_X = "rank of the sensitivity (0 = lowest, 1 = highest)"
RANK_Y = "rank of attention"


def rank_scatter(ax: Axes, attention: np.ndarray, sensitivity: np.ndarray, size: float = 6) -> None:
    """The key panel of a run: attention's rank against the sensitivity's at every step, on the
    unit square (the same in `attention_vs_sensitivity.png` and in a sweep's overview)."""
    ax.scatter(ranks(sensitivity), ranks(attention), s=size, alpha=0.5, color="tab:purple", lw=0)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")


@styled
def attention_vs_sensitivity(path: Path, t: np.ndarray, attention: np.ndarray, sensitivity: np.ndarray,
                             metrics: dict[str, float], sensitivity_name: str, caption_text: str = "") -> Path:
    """Attention (relative to uniform, log) and the sensitivity over time across the top; below,
    their scatter on rank axes titled with Spearman's ρ, and the model's ρ beside the controls
    (state norm, best linear score, untrained model) with p and excess.

    The scatter uses ranks because softmax attention piles almost every step onto ≈ 0: on value
    axes the cloud is a line along the bottom, while ranks spread it out and are exactly what
    Spearman's ρ correlates (Pearson's r, computed on the raw values, is named as such). Two rows
    keep the file near 4:3, so that MLflow's artifact viewer shows its text at a readable size."""
    label = measure_name(sensitivity_name)
    fig = new_figure(figsize=(10, 7.8))
    axes = fig.subplot_mosaic([["time", "time"], ["ranks", "controls"]], height_ratios=[1, 1.25])
    ax_t, ax_s, ax_c = axes["time"], axes["ranks"], axes["controls"]
    ax_t.plot(t, relative_attention(attention), color="black", lw=1.2)
    ax_t.set_yscale("log")
    ax_t.set_ylim(*ATTENTION_RANGE)
    ax_t.set_ylabel(f"{ATTENTION} (log)")
    ax_t.set_xlabel("t")
    ax_v = ax_t.twinx()
    ax_v.plot(t, sensitivity, color="tab:orange", lw=1.3)
    ax_v.set_ylabel(label, color="tab:orange")
    ax_v.tick_params(axis="y", colors="tab:orange")
    handles = [Line2D([], [], color="black", lw=1.2, label=f"{ATTENTION_AXIS} (left, log)"),
               Line2D([], [], color="tab:orange", lw=1.3, label=f"{label} (right)")]
    ax_t.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, borderaxespad=0.0,
                frameon=False)
    rank_scatter(ax_s, attention, sensitivity)
    ax_s.set_xlabel(RANK_X)
    ax_s.set_ylabel(RANK_Y)
    ax_s.set_title(f"Ranks: Spearman ρ = {metrics[ALIGN_SPEARMAN]:+.3f}\n"
                   f"(Pearson r on the raw values = {metrics[ALIGN_PEARSON]:+.3f})")
    _controls_panel(ax_c, metrics)
    caption(fig, caption_text, f"Attention against the sensitivity along the orbit ({label})")
    fig.tight_layout()
    return save(fig, path)


def _controls_panel(ax: Axes, m: dict[str, float]) -> None:
    labels = ["model", "untrained model", "state norm", "best linear score"]
    values = [m[ALIGN_SPEARMAN], m[ALIGN_SPEARMAN_INIT], m[ALIGN_BASELINE_NORM], m[ALIGN_BASELINE_LINEAR]]
    colors = ["black", "0.6", "tab:green", "tab:blue"]
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=colors, height=0.6)
    if ALIGN_SPEARMAN_CI_LOW in m:  # only with replicates
        ax.errorbar(values[0], y[0], xerr=[[values[0] - m[ALIGN_SPEARMAN_CI_LOW]],
                                           [m[ALIGN_SPEARMAN_CI_HIGH] - values[0]]],
                    color="tab:red", capsize=4, lw=1.5)
        note = "red: 95 % CI over replicates"
    else:
        note = "1 replicate: no interval"
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, labels)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman ρ with the sensitivity\n({note})")
    ax.set_title(f"Controls: excess {m[ALIGN_EXCESS]:+.3f}\ncircular-shift p = {m[ALIGN_PVALUE]:.3f}")


@styled
def perturbation(path: Path, pert: PerturbationResult, epsilon: float, states: np.ndarray | None = None,
                 names: tuple[str, ...] = (), caption_text: str = "") -> Path:
    """Separation between kicked and unkicked orbits after kicks at high- and low-attention places
    (log axis: separations grow multiplicatively), with the geometric means over the horizon whose
    ratio is `perturb/low_over_high`; beside it, where on the orbit the kicks were made.

    Each legend is kept narrower than its panel: a legend wider than its axes makes `tight_layout`
    push the panels apart, leaving an empty band between them."""
    with_orbit = states is not None and states.shape[1] >= 2
    fig, axes = subplots(1, 2 if with_orbit else 1, figsize=(12 if with_orbit else 8, 4.4), squeeze=False,
                          width_ratios=[1.7, 1] if with_orbit else None)
    ax = axes[0, 0]
    for dev, color, label in ((pert.deviation_high, HIGH, "high"), (pert.deviation_low, LOW, "low")):
        ax.plot(pert.t, dev.T, color=color, alpha=0.25, lw=0.8)
        gmean = np.exp(np.log(dev).mean(axis=0))
        ax.plot(pert.t, gmean, color=color, lw=2.2, label=f"{len(dev)} {label}-attention kicks: geometric mean")
        level = float(np.exp(np.log(dev[:, 1:]).mean()))
        ax.axhline(level, color=color, lw=1.0, ls="--", label=f"  over the horizon: {level:.3g}")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time since kick")
    ax.set_ylabel(f"|kicked − unkicked|  (kick size ε = {epsilon:g})")
    ax.set_title(f"Perturbation test: low/high = {pert.low_over_high:.3f}\n"
                 "(ratio of the dashed lines: geometric-mean separation over the whole horizon)")
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, frameon=False)
    if with_orbit:
        ax_o = axes[0, 1]
        ax_o.plot(states[:, 0], states[:, 1], color="0.7", lw=1.0, zorder=1)
        ax_o.scatter(states[pert.high_idx, 0], states[pert.high_idx, 1], color=HIGH, s=28, zorder=3,
                     label="high-attention kicks")
        ax_o.scatter(states[pert.low_idx, 0], states[pert.low_idx, 1], color=LOW, s=28, zorder=3,
                     label="low-attention kicks")
        ax_o.set_xlabel(names[0] if names else "state 0")
        ax_o.set_ylabel(names[1] if len(names) > 1 else "state 1")
        ax_o.set_title(f"Where the kicks were made\n(pairwise ≥ {pert.min_separation:.3g} apart, range-scaled)")
        ax_o.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=1, frameon=False)
    caption(fig, caption_text)
    # Laid out once by the constrained engine, which spaces unequal columns by what each needs
    # (tight_layout gives them one common gap, the widest: a band of empty space between them).
    fig.set_layout_engine("constrained")
    fig.get_layout_engine().execute(fig)
    fig.set_layout_engine("none")
    return save(fig, path)


@styled
def attention_heads(path: Path, t: np.ndarray, head_attention: np.ndarray, sensitivity: np.ndarray,
                    metrics: dict[str, float], sensitivity_name: str, caption_text: str = "") -> Path:
    """One panel per head: its per-step attention against the sensitivity, with the head's ρ.

    Heads can specialise (one tracking the flat stretches, another the steep ones), which the
    head-averaged attention would hide.
    """
    label = measure_name(sensitivity_name)
    n = len(head_attention)
    fig, axes = subplots(n, 1, figsize=(10, 1.9 * n + 0.8), sharex=True, squeeze=False)
    for h, ax in enumerate(axes[:, 0]):
        ax.plot(t, _minmax(sensitivity), color="tab:orange", lw=1.1, label=f"{label} (min-max normalised)")
        ax.plot(t, _minmax(head_attention[h]), color="black", lw=1.0, label=f"head's {ATTENTION} (min-max normalised)")
        rho = metrics.get(f"align/spearman_head{h}", np.nan)
        r = metrics.get(f"align/pearson_head{h}", np.nan)
        ax.set_ylabel(f"head {h}")
        ax.set_title(f"head {h}: Spearman ρ = {rho:+.3f}   (Pearson r on the raw values = {r:+.3f})")
    legend_outside(axes[0, 0])
    axes[-1, 0].set_xlabel("t")
    caption(fig, caption_text)
    fig.tight_layout()
    return save(fig, path)


def figure_calls(out_dir: Path, system: DynamicalSystem, t: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
                 attention: np.ndarray, sensitivity: np.ndarray, sensitivity_name: str, metrics: dict[str, float],
                 pert: PerturbationResult, epsilon: float, head_attention: np.ndarray | None = None,
                 caption_text: str = "") -> list[FigureCall]:
    """Every figure of a run, as calls to draw in this process (`plotting.draw_inline`) or in the
    figure workers, each captioned with `caption_text` (`captions.run_caption`);
    `attention_heads.png` only for models that report per-head attention."""
    fig_dir = out_dir / "figures"
    named = {"caption_text": caption_text}
    calls = [
        FigureCall("timeseries", fig_dir / "timeseries.png", (t, clean, noisy, system.state_names, attention, pert),
                   named),
        FigureCall("phase_portrait", fig_dir / "phase_portrait.png", (system, clean, noisy, attention), named),
        FigureCall("attention_vs_sensitivity", fig_dir / "attention_vs_sensitivity.png",
                   (t, attention, sensitivity, dict(metrics), sensitivity_name), named),
        FigureCall("perturbation", fig_dir / "perturbation.png", (pert, epsilon, clean, system.state_names), named),
    ]
    if head_attention is not None:
        calls.append(FigureCall("attention_heads", fig_dir / "attention_heads.png",
                                (t, head_attention, sensitivity, dict(metrics), sensitivity_name), named))
    return calls


# What the report plot draws per group, with how: the model's alignment solid with round markers,
# each no-learning baseline in the series' colour with its own line style and marker.
