"""The figures a reader of the paper looks for, written as PNG files (Agg backend, no display)."""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lvsweep.analysis.perturbation import PerturbationResult  # noqa: E402
from lvsweep.analysis.prc import PhaseResponse  # noqa: E402
from lvsweep.systems import DynamicalSystem  # noqa: E402

HIGH, LOW = "tab:red", "tab:blue"


def _minmax(v: np.ndarray) -> np.ndarray:
    span = np.ptp(v)
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timeseries(path: Path, t: np.ndarray, clean: np.ndarray, noisy: np.ndarray, names: tuple[str, ...],
               attention: np.ndarray, pert: PerturbationResult) -> Path:
    """States over time with the noisy observations faint; top and bottom attention times marked."""
    fig, (ax, ax_a) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=[3, 1.3])
    for i, name in enumerate(names):
        line, = ax.plot(t, clean[:, i], lw=1.6, label=name)
        ax.scatter(t, noisy[:, i], s=3, color=line.get_color(), alpha=0.18, lw=0)
    for idx, color, label in ((pert.high_idx, HIGH, "highest attention"), (pert.low_idx, LOW, "lowest attention")):
        ax.scatter(t[idx], clean[idx].max(axis=1), marker="v", s=36, color=color, zorder=3, label=label)
        for ti in t[idx]:
            ax_a.axvline(ti, color=color, alpha=0.25, lw=0.8)
    ax.set_ylabel("state")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax.set_title("Clean orbit (lines), noisy training data (dots), extreme-attention times (triangles)")
    ax_a.plot(t, attention, color="black", lw=1.0)
    ax_a.set_ylabel("attention")
    ax_a.set_xlabel("t")
    fig.tight_layout()
    return _save(fig, path)


def phase_portrait(path: Path, system: DynamicalSystem, clean: np.ndarray, noisy: np.ndarray,
                   attention: np.ndarray) -> Path:
    """The orbit coloured by attention in every pair of state variables, over level sets of V."""
    names = system.state_names
    pairs = list(combinations(range(system.dim), 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(5.6 * len(pairs), 4.8), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        ax.scatter(noisy[:, i], noisy[:, j], s=3, color="0.6", alpha=0.25, lw=0, label="noisy data")
        if system.dim == 2 and system.lyapunov(clean[:1]) is not None:
            _lyapunov_contours(ax, system, clean)
        sc = ax.scatter(clean[:, i], clean[:, j], c=attention, s=9, cmap="viridis", zorder=3)
        eq = system.equilibrium()
        if eq is not None:
            ax.plot(eq[i], eq[j], "k+", ms=10, label="equilibrium")
        ax.set_xlabel(names[i])
        ax.set_ylabel(names[j])
        ax.legend(loc="upper right", fontsize=8)
    fig.colorbar(sc, ax=axes[0].tolist(), label="attention")
    fig.suptitle("Phase portrait coloured by attention" + (", with level sets of V" if system.dim == 2 else ""))
    return _save(fig, path)


def _lyapunov_contours(ax: plt.Axes, system: DynamicalSystem, clean: np.ndarray) -> None:
    lo, hi = clean.min(axis=0), clean.max(axis=0)
    pad = 0.25 * (hi - lo)
    # Stay inside the state space (V of Lotka-Volterra takes logarithms of populations).
    lo = 0.5 * lo if system.check_state(lo - pad) else lo - pad
    hi = hi + pad
    g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    v = system.lyapunov(np.stack([g0, g1], axis=-1))
    levels = np.quantile(v, np.linspace(0.02, 0.9, 12))
    ax.contour(g0, g1, v, levels=np.unique(levels), colors="0.35", linewidths=0.6, alpha=0.8)


def attention_vs_sensitivity(path: Path, t: np.ndarray, attention: np.ndarray, sensitivity: np.ndarray,
                             metrics: dict[str, float], sensitivity_name: str) -> Path:
    """Normalised attention and sensitivity over time, their scatter with r and ρ, and the model's ρ
    beside the controls (state norm, best linear score, untrained model) with p and excess."""
    fig, (ax_t, ax_s, ax_c) = plt.subplots(1, 3, figsize=(16, 4.2), width_ratios=[2.2, 1, 1])
    ax_t.plot(t, _minmax(attention), color="black", lw=1.3, label="attention (normalised)")
    ax_t.plot(t, _minmax(sensitivity), color="tab:orange", lw=1.3, label=f"{sensitivity_name} (normalised)")
    ax_t.set_xlabel("t")
    ax_t.set_ylabel("min-max normalised")
    ax_t.legend(loc="upper right", fontsize=8)
    ax_t.set_title("Attention against sensitivity along the orbit")
    ax_s.scatter(sensitivity, attention, s=5, alpha=0.5, color="tab:purple", lw=0)
    ax_s.set_xlabel(sensitivity_name)
    ax_s.set_ylabel("attention")
    ax_s.set_title(f"Pearson r = {metrics['align/pearson']:+.3f}   Spearman ρ = {metrics['align/spearman']:+.3f}",
                   fontsize=9)
    _controls_panel(ax_c, metrics)
    fig.tight_layout()
    return _save(fig, path)


def _controls_panel(ax: plt.Axes, m: dict[str, float]) -> None:
    labels = ["model", "untrained model", "state norm", "best linear score"]
    values = [m["align/spearman"], m["align/spearman_init"], m["align/baseline_norm"], m["align/baseline_linear"]]
    colors = ["black", "0.6", "tab:green", "tab:blue"]
    y = np.arange(len(labels))[::-1]
    ax.barh(y, values, color=colors, height=0.6)
    if "align/spearman_ci_low" in m:  # only with replicates
        ax.errorbar(values[0], y[0], xerr=[[values[0] - m["align/spearman_ci_low"]],
                                           [m["align/spearman_ci_high"] - values[0]]],
                    color="tab:red", capsize=4, lw=1.5, label="95 % CI over replicates")
        ax.legend(loc="lower right", fontsize=7)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman ρ with the sensitivity")
    ax.set_title(f"excess {m['align/excess']:+.3f}   circular-shift p = {m['align/pvalue']:.3f}", fontsize=9)


def perturbation(path: Path, pert: PerturbationResult, epsilon: float) -> Path:
    """Distance between kicked and unkicked orbits after kicks at extreme-attention times."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for dev, color, label in ((pert.deviation_high, HIGH, "kick at highest attention"),
                              (pert.deviation_low, LOW, "kick at lowest attention")):
        ax.plot(pert.t, dev.T, color=color, alpha=0.2, lw=0.8)
        ax.plot(pert.t, dev.mean(axis=0), color=color, lw=2.2, label=f"{label} (mean of {len(dev)})")
    ax.set_xlabel("time since kick")
    ax.set_ylabel(f"|kicked − unkicked|  (kick size ε = {epsilon:g})")
    ax.set_title(f"Perturbation test: low/high deviation ratio = {pert.low_over_high:.3f}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def attention_heads(path: Path, t: np.ndarray, head_attention: np.ndarray, sensitivity: np.ndarray,
                    metrics: dict[str, float], sensitivity_name: str) -> Path:
    """One panel per head: its per-step attention against the sensitivity, with the head's ρ.

    Heads can specialise (one tracking the flat stretches, another the steep ones), which the
    head-averaged attention would hide.
    """
    n = len(head_attention)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.9 * n + 0.6), sharex=True, squeeze=False)
    for h, ax in enumerate(axes[:, 0]):
        ax.plot(t, _minmax(sensitivity), color="tab:orange", lw=1.1, label=f"{sensitivity_name} (normalised)")
        ax.plot(t, _minmax(head_attention[h]), color="black", lw=1.0, label="attention (normalised)")
        rho = metrics.get(f"align/spearman_head{h}", np.nan)
        r = metrics.get(f"align/pearson_head{h}", np.nan)
        ax.set_ylabel(f"head {h}")
        ax.set_title(f"head {h}: Pearson r = {r:+.3f}   Spearman ρ = {rho:+.3f}", fontsize=9)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("t")
    fig.tight_layout()
    return _save(fig, path)


def phase_response(path: Path, response: PhaseResponse, names: tuple[str, ...], t: np.ndarray,
                   attention: np.ndarray, spearman_rho: float) -> Path:
    """The PRC over one cycle, and attention against phase: does attention peak where |PRC| does?"""
    fig, (ax_p, ax_a) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    order = np.argsort(response.phase)
    phase, shift = response.phase[order], response.shift[order]
    ax_p.axhline(0, color="0.6", lw=0.8)
    ax_p.plot(phase, shift, color="tab:green", lw=1.6, label="phase shift (advance > 0)")
    ax_p.plot(phase, np.abs(shift), color="tab:green", lw=1.0, ls="--", label="|PRC|")
    ax_p.set_ylabel("phase shift (cycles)")
    ax_p.set_title(f"Phase response to a kick of {response.epsilon:.3g} in {names[response.state]} "
                   f"(period {response.period:.3g})")
    ax_p.legend(fontsize=8)
    ax_a.scatter(response.phase_of(t), attention, s=5, color="black", alpha=0.5, lw=0)
    ax_a.set_ylabel("attention")
    ax_a.set_xlabel("phase (cycles; 0 = upward crossing of the section)")
    ax_a.set_title(f"Attention by phase: Spearman ρ(attention, |PRC|) = {spearman_rho:+.3f}")
    fig.tight_layout()
    return _save(fig, path)


def write_all(out_dir: Path, system: DynamicalSystem, t: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
              attention: np.ndarray, sensitivity: np.ndarray, sensitivity_name: str, metrics: dict[str, float],
              pert: PerturbationResult, epsilon: float, head_attention: np.ndarray | None = None) -> list[Path]:
    """Every figure of a run; `attention_heads.png` only for models that report per-head attention."""
    fig_dir = out_dir / "figures"
    paths = [
        timeseries(fig_dir / "timeseries.png", t, clean, noisy, system.state_names, attention, pert),
        phase_portrait(fig_dir / "phase_portrait.png", system, clean, noisy, attention),
        attention_vs_sensitivity(fig_dir / "attention_vs_sensitivity.png", t, attention, sensitivity, metrics,
                                 sensitivity_name),
        perturbation(fig_dir / "perturbation.png", pert, epsilon),
    ]
    if head_attention is not None:
        paths.append(attention_heads(fig_dir / "attention_heads.png", t, head_attention, sensitivity, metrics,
                                     sensitivity_name))
    return paths


def alignment_by_group(path: Path, factors: list[str], params: list[dict[str, str]], rows: list[dict[str, float]],
                       x_key: str) -> Path:
    """Mean Spearman ρ with its 95 % CI band against `x_key` (noise level), one line per setting of
    the other factors (e.g. per model), baselines dashed and dotted in the same colour. Without
    `x_key` among the factors, one point per group with its CI as an error bar."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    along = x_key in factors
    others = [f for f in factors if f != x_key]
    series: dict[str, list[int]] = {}
    for i, p in enumerate(params):
        label = ", ".join(f"{f}={p[f]}" for f in others) if along else "all groups"
        series.setdefault(label, []).append(i)
    for (label, idx), color in zip(series.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4):
        x = np.array([float(params[i][x_key]) for i in idx]) if along else np.arange(len(idx))
        get = lambda key: np.array([rows[i][key] for i in idx])  # noqa: E731
        ax.plot(x, get("spearman"), "o-", color=color, label=f"{label or 'model'}: attention")
        ax.fill_between(x, get("ci_low"), get("ci_high"), color=color, alpha=0.2, lw=0)
        if not along:
            ax.errorbar(x, get("spearman"), yerr=[get("spearman") - get("ci_low"), get("ci_high") - get("spearman")],
                        fmt="none", color=color, capsize=4)
        ax.plot(x, get("baseline_norm"), "--", color=color, lw=1, label=f"{label or 'model'}: state norm")
        ax.plot(x, get("baseline_linear"), ":", color=color, lw=1.3, label=f"{label or 'model'}: best linear score")
    if not along:
        ax.set_xticks(range(len(params)), [", ".join(p[f] for f in factors) for p in params], rotation=20,
                      fontsize=8)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(x_key if along else ", ".join(factors))
    ax.set_ylabel("Spearman ρ, attention vs sensitivity")
    ax.set_title("Alignment (95 % CI over replicates) and no-learning baselines; ρ < 0 = paper's claim", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig, path)
