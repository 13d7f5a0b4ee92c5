"""Phase response: linear in the kick, periodic with the cycle, recorded by a real run."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lvsweep.app import compose_config, objective_value
from lvsweep.config import validate
from lvsweep.errors import LvsweepError
from lvsweep.analysis.prc import orbit_period, phase_response
from lvsweep.systems.simulate import simulate
from lvsweep.systems import make_system
from helpers.cli import run_cli
from helpers.overrides import QUICK
from helpers.store import all_runs, client_for


def oscillator(name: str):
    cfg = compose_config(f"system={name}")
    return make_system(cfg.system), simulate(cfg.system)


@pytest.mark.parametrize("name", ["van_der_pol", "goodwin"])
def test_twice_the_kick_gives_twice_the_phase_shift(name):
    system, orbit = oscillator(name)
    small = phase_response(system, orbit, 0, 0.002, 10, 1e-10, 1e-10)
    double = phase_response(system, orbit, 0, 0.004, 10, 1e-10, 1e-10)
    scale = np.abs(small.shift).max()
    assert scale > 1e-4  # a real response, not numerical noise
    np.testing.assert_allclose(double.shift, 2 * small.shift, atol=0.03 * 2 * scale)
    assert np.any(small.shift > 0.2 * scale) and np.any(small.shift < -0.2 * scale)  # advances and delays


@pytest.mark.parametrize("name", ["van_der_pol", "goodwin", "lotka_volterra"])
def test_prc_is_periodic_with_the_cycle(name):
    system, orbit = oscillator(name)
    first = phase_response(system, orbit, 1, 0.005, 10, 1e-10, 1e-10, cycle_index=0)
    second = phase_response(system, orbit, 1, 0.005, 10, 1e-10, 1e-10, cycle_index=1)
    scale = np.abs(first.shift).max()
    # Kicks one period apart land at the same phases and move the clock alike.
    np.testing.assert_allclose(np.interp(first.phase, second.phase, second.shift, period=1.0), first.shift,
                               atol=0.03 * scale)
    # ... and the curve closes on itself: its ends meet across phase 0 = 1.
    assert abs(first.shift[0] - first.shift[-1]) < 0.1 * scale
    assert first.at(first.t_kick + first.period) == pytest.approx(first.shift, abs=1e-12)


def test_period_of_van_der_pol_matches_the_known_value():
    _, orbit = oscillator("van_der_pol")
    assert orbit_period(orbit)[0] == pytest.approx(6.6633, rel=1e-3)  # μ = 1


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_prc_run_records_csv_figure_and_alignment(tmp_path: Path):
    proc = run_cli(tmp_path, *QUICK, "analysis.figures=true", "system=goodwin", "analysis.prc=true", "analysis.prc_kick.state=repressor",
                   "objectives=[prc/spearman]")
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    (run,) = all_runs(tmp_path)
    assert run.data.tags["lvsweep.sensitivity"] == "ftle"
    assert -1 <= run.data.metrics["prc/spearman"] <= 1
    assert run.data.metrics["prc/period"] == pytest.approx(19.65, rel=0.02)
    assert "prc.png" in {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
    with Path(client.download_artifacts(run.info.run_id, "prc.csv", str(tmp_path))).open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["phase", "t", "mrna", "protein", "repressor", "phase_shift"]
    phases = [float(r["phase"]) for r in rows]
    assert 0 <= min(phases) and max(phases) < 1 and len(rows) > 20


def test_prc_alignment_is_an_objective_only_where_it_is_logged():
    cfg = compose_config("system=goodwin", "analysis.prc=true", "objectives=[prc/spearman,align/anticorrelation]")
    validate(cfg)
    assert objective_value(cfg, {"prc/spearman": 0.25, "align/anticorrelation": 0.5}) == [0.25, 0.5]
    with pytest.raises(LvsweepError, match="'prc/spearman' is logged only with analysis.prc=true") as err:
        validate(compose_config("system=goodwin", "objectives=[prc/spearman]"))
    assert err.value.field == "objectives"
    with pytest.raises(LvsweepError, match="unknown metric 'prc/spearmn'; allowed: .*prc/spearman \\(with"):
        validate(compose_config("system=goodwin", "objectives=[prc/spearmn]"))
