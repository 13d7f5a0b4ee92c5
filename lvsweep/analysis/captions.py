"""The line that says which run a figure shows, on every figure of a run.

A sweep's runs draw figures that look alike (the same titles at every noise level); once a PNG is
opened on its own (in MLflow's artifact view, under `outputs/multirun/...`, pasted in a note) only
this line tells them apart. It is the figure's suptitle, and the PNG's `Title` text field too, so
that a file says what it shows also to a program that reads it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SEPARATOR = " · "
CAPTION_SIZE = 9.5  # points: below the panel titles (10.5), so that the caption reads as a label


def run_caption(system: str, model: str, data: str, seed: int, label: str) -> str:
    """`lotka_volterra · linear · noise 2 · seed 0 · noise.level=2`: the system, the model, the
    data (`data_text`), the seed and the run's own label (its name in the store)."""
    return SEPARATOR.join(part for part in (system, model, data, f"seed {seed}", label) if part)


def data_text(source: str, noise_kind: str, noise_level: float) -> str:
    """`noise 2` (Gaussian, the default kind), `noise relative 0.25`, or `data lynx_hare` for
    observed data, which has no noise draw of its own."""
    if source != "simulated":
        return f"data {source}"
    kind = "" if noise_kind == "gaussian" else f"{noise_kind} "
    return f"noise {kind}{noise_level:g}"


def caption(fig: Figure, text: str, title: Optional[str] = None, **kwargs: Any) -> None:
    """The figure's suptitle: `title` (the figure's own heading, when it has one) over the run's
    caption `text`; `kwargs` go to `suptitle` (its height, for a figure laid out by hand). Call it
    before `tight_layout`, which makes room for a suptitle."""
    if title and text:
        fig.suptitle(f"{title}\n{text}", **kwargs)
    elif title:
        fig.suptitle(title, **kwargs)
    elif text:
        fig.suptitle(text, **{"fontsize": CAPTION_SIZE, "color": "0.2", **kwargs})


def title_of(fig: Figure) -> str:
    """The suptitle's text ('' without one): what `plotting.save` writes as the PNG's Title."""
    return fig.get_suptitle()
