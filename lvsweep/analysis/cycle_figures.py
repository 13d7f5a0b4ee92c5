"""The figures of an oscillator's phase response: the PRC of a kick (`analysis.prc`) and the light
PRC of a circadian pacemaker (`analysis.lightprc`), each with attention by phase beside it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lvsweep.analysis.captions import caption
from lvsweep.analysis.figures import ATTENTION, ATTENTION_RANGE, relative_attention
from lvsweep.analysis.plotting import save, styled, subplots

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lvsweep.analysis.lightprc import LightPRC
    from lvsweep.analysis.prc import PhaseResponse


def legend_below(ax: Axes, ncol: int = 2) -> None:
    """The upper panel's legend under it, inside the width the two panels share: in the right
    margin it would widen the figure and leave an empty band right of the lower panel."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncol=ncol, frameon=False)


@styled
def phase_response(path: Path, response: PhaseResponse, names: tuple[str, ...], t: np.ndarray,
                   attention: np.ndarray, spearman_rho: float, caption_text: str = "") -> Path:
    """The PRC over one cycle, and attention against phase: does attention peak where |PRC| does?"""
    fig, (ax_p, ax_a) = subplots(2, 1, figsize=(9, 6), sharex=True)
    order = np.argsort(response.phase)
    phase, shift = response.phase[order], response.shift[order]
    ax_p.axhline(0, color="0.6", lw=0.8)
    ax_p.plot(phase, shift, color="tab:green", lw=1.6, label="phase shift (advance > 0)")
    ax_p.plot(phase, np.abs(shift), color="tab:green", lw=1.0, ls="--", label="|PRC|")
    ax_p.set_ylabel("phase shift (cycles)")
    ax_p.set_title(f"Phase response to a kick of {response.epsilon:.3g} in {names[response.state]} "
                   f"(period {response.period:.3g})")
    legend_below(ax_p)
    ax_a.scatter(response.phase_of(t), relative_attention(attention), s=5, color="black", alpha=0.5, lw=0)
    ax_a.set_yscale("log")
    ax_a.set_ylim(*ATTENTION_RANGE)
    ax_a.set_ylabel(f"attention relative\nto uniform, {ATTENTION}")
    ax_a.set_xlabel("phase (cycles; 0 = upward crossing of the section)")
    ax_a.set_title(f"Attention by phase: Spearman ρ({ATTENTION}, |PRC|) = {spearman_rho:+.3f}")
    caption(fig, caption_text)
    fig.tight_layout()
    return save(fig, path)


@styled
def light_phase_response(path: Path, prc: LightPRC, reference: dict, system_name: str, phase: np.ndarray,
                         attention: np.ndarray, metrics: dict[str, float], caption_text: str = "") -> Path:
    """The model's light PRC over the measured curve's features (Khalsa et al. 2003), and attention by
    phase beside |light PRC|: does attention mark the phases where light moves the clock most?"""
    from lvsweep.metric_names import LIGHTPRC_EXCESS, LIGHTPRC_PEAK_TO_TROUGH, LIGHTPRC_PVALUE, LIGHTPRC_SPEARMAN

    ref = reference["features"]
    fig, (ax_p, ax_a) = subplots(2, 1, figsize=(9, 6.5), sharex=True)
    ax_p.axhline(0, color="0.6", lw=0.8)
    ax_p.axvline(ref["crossover_h"], color="0.3", lw=1.0, ls=":", label="measured critical phase (CBT minimum)")
    ax_p.axhline(ref["drift_h"], color="tab:purple", lw=1.0, ls=":", label=f"measured drift ({ref['drift_h']:+.2f} h)")
    ax_p.plot(prc.phase, prc.shift, color="tab:orange", lw=1.8, marker="o", ms=3,
              label=f"{system_name}: {prc.protocol.pulse_hours:g} h pulse of {prc.protocol.pulse_lux:g} lx")
    ax_p.plot(prc.phase, prc.control, color="tab:purple", lw=1.0, label=f"{system_name} without the pulse (drift)")
    # The measured peak-to-trough amplitude as a bar from the model's trough: the paper gives the
    # amplitude, not where the fitted peaks lie.
    low = float(prc.shift.min())
    x_bar = float(prc.phase[np.argmax(prc.shift)])
    ax_p.errorbar([x_bar], [low + ref["peak_to_trough_h"] / 2], yerr=[ref["peak_to_trough_h"] / 2], color="black",
                  capsize=5, lw=1.2, label=f"measured peak-to-trough {ref['peak_to_trough_h']:.2f} h "
                                             f"(model {metrics[LIGHTPRC_PEAK_TO_TROUGH]:.2f} h)")
    ax_p.set_ylabel("phase shift (h, advance > 0)")
    ax_p.set_title("Light phase response, protocol of Khalsa et al. 2003")
    legend_below(ax_p)
    # Clipped into the fixed range, so a phase where attention is nearly zero shows on the floor
    # instead of vanishing below the axis.
    ax_a.scatter(phase, np.clip(relative_attention(attention), *ATTENTION_RANGE), s=5, color="black", alpha=0.5,
                 lw=0, label=ATTENTION)
    ax_a.set_yscale("log")
    ax_a.set_ylim(ATTENTION_RANGE[0] / 1.3, ATTENTION_RANGE[1] * 1.3)
    ax_a.set_ylabel(f"attention relative to\nuniform, {ATTENTION} (clipped)")
    twin = ax_a.twinx()
    order = np.argsort(prc.phase)
    twin.plot(prc.phase[order], np.abs(prc.shift[order]), color="tab:orange", lw=1.2, ls="--")
    twin.set_ylabel("|light PRC| (h)", color="tab:orange")
    ax_a.set_xlabel("phase (h from the CBT minimum)")
    ax_a.set_xlim(-12, 12)
    ax_a.set_title(f"Attention by phase: Spearman ρ with |light PRC| {metrics[LIGHTPRC_SPEARMAN]:+.3f}, "
                   f"excess {metrics[LIGHTPRC_EXCESS]:+.3f}, p = {metrics[LIGHTPRC_PVALUE]:.3g}")
    caption(fig, caption_text)
    fig.tight_layout()
    return save(fig, path)
