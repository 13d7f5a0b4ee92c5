"""What every figure shares: one style (fonts, resolution), figures built with matplotlib's object
API (`Figure`, no pyplot: nothing here selects a backend or keeps global figure state), legends
kept off the data, and files written the same way."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, TypeVar

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

# One style for every figure: the same font sizes everywhere, and a resolution at which 8-point
# text stays legible when the MLflow UI scales the PNG down to its preview width.
DPI = 150
STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11.5}
F = TypeVar("F", bound=Callable[..., Path])


def styled(draw: F) -> F:
    """Draw under the common STYLE: fonts are fixed as each artist is made, so the whole drawing
    (not only the save) runs inside the style."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def subplots(*shape: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure and its axes, like `pyplot.subplots` but owned by no global state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*shape, **kwargs)


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend in the margin right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # tight: legends outside the axes stay in
    return path
