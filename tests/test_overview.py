"""The sweep overview (`sweep_overview.png` on a sweep's parent run, from its children's own
attention.csv) and the caption every figure of a run carries, through the real CLI and store."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.cli import run_cli
from helpers.overrides import QUICK_SWEEP
from helpers.store import client_for, parents_and_children
from lvsweep.analysis.captions import data_text, run_caption
from lvsweep.analysis.overview import MAX_PANELS, Panel, grid_shape, overview_figure
from lvsweep.tracking.overview import OVERVIEW, panels_of


def _panel(label: str, rho: float, n: int = 50, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    return Panel(label, rho, rng.random(n), rng.random(n))


def test_the_overview_has_one_titled_panel_per_run_on_shared_axes():
    panels = [_panel("noise.level=0", -0.5), Panel("noise.level=1", status="PRUNED"), _panel("noise.level=2", 0.25, seed=1)]
    fig = overview_figure(panels, "sweep noise=0,1,2", "FTLE")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 3 and grid_shape(3) == (1, 3)
    titles = [ax.get_title() for ax in shown]
    assert titles == ["noise.level=0\nρ = -0.500", "noise.level=1\nPRUNED", "noise.level=2\nρ = +0.250"]
    assert not shown[1].collections  # the pruned run: no points, only its status
    assert all(shown[0].get_shared_x_axes().joined(shown[0], ax) for ax in shown[1:])
    assert all(shown[0].get_shared_y_axes().joined(shown[0], ax) for ax in shown[1:])
    assert shown[0].get_xlim() == pytest.approx((-0.02, 1.02))  # ranks on the unit square
    assert "sweep noise=0,1,2" in fig.get_suptitle() and "FTLE" in fig.get_suptitle()


def test_above_twelve_runs_the_overview_shows_those_with_the_lowest_rho_and_says_so():
    rhos = [0.3, -0.1, math.nan, -0.9, 0.0, -0.4, 0.8, -0.2, 0.5, -0.6, 0.1, -0.3, 0.6, -0.7]
    panels = [_panel(f"run {i}", r, seed=i) for i, r in enumerate(rhos)]
    fig = overview_figure(panels, "study s")
    shown = [ax.get_title().split("\n")[0] for ax in fig.axes if ax.get_visible()]
    left_out = {f"run {i}" for i in (2, 6)}  # no ρ, and the highest ρ
    assert len(shown) == MAX_PANELS and left_out.isdisjoint(shown)
    assert shown == [f"run {i}" for i in range(len(rhos)) if f"run {i}" not in left_out]  # in sweep order
    assert f"the {MAX_PANELS} of {len(rhos)} runs with the lowest ρ" in " ".join(fig.get_suptitle().split())


def test_the_caption_names_system_model_data_seed_and_run():
    assert (run_caption("lotka_volterra", "linear", data_text("simulated", "gaussian", 2.0), 0, "noise.level=2")
            == "lotka_volterra · linear · noise 2 · seed 0 · noise.level=2")
    assert data_text("simulated", "relative", 0.25) == "noise relative 0.25"
    assert data_text("lynx_hare", "gaussian", 2.0) == "data lynx_hare"


@pytest.mark.usefixtures("store_in_tmp_path")
def test_a_sweep_logs_its_overview_and_no_root_level_copies_of_figures(tmp_path):
    proc = run_cli(tmp_path, "-m", "noise=0,2", *QUICK_SWEEP, "analysis.figures=true", "analysis.log_model=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "not drawn" not in proc.stderr
    (parent,), children = parents_and_children(tmp_path)
    client = client_for(tmp_path)
    assert OVERVIEW in {a.path for a in client.list_artifacts(parent.info.run_id)}
    picture = Image.open(client.download_artifacts(parent.info.run_id, OVERVIEW, str(tmp_path / "dl")))
    width, height = picture.size
    assert 1.3 < width / height < 3.0 and width >= 800  # two panels side by side, one row
    panels = panels_of(client, sorted(children, key=lambda r: r.info.start_time), tmp_path / "panels")
    assert [p.label for p in panels] == ["noise.level=0", "noise.level=2"]
    for panel, child in zip(panels, sorted(children, key=lambda r: r.info.start_time)):
        assert panel.drawn and len(panel.attention) == int(child.data.params["system.n_steps"])
        assert panel.rho == child.data.metrics["align/spearman"]
    for child in children:
        root = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert not any(p.endswith(".png") for p in root), root  # figures live under figures/ only
        figure = Path(client.download_artifacts(child.info.run_id, "figures/timeseries.png", str(tmp_path / "f")))
        title = Image.open(figure).text["Title"]  # the figure's suptitle, written into the PNG
        level = float(child.data.params["noise.level"])
        assert title == f"lotka_volterra · linear · noise {level:g} · seed 0 · {child.info.run_name}"
