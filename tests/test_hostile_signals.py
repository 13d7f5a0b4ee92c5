"""A signal at any instant, through the real CLI: the instant is swept across the store's creation,
training, the figures and posterior sampling. Whatever it hits, the command ends with the signal's
status and one line, every run it opened is closed KILLED, and the directory stays usable: the
next command in it runs.

The instants are events the test waits for (a file appearing, a run in the store), plus a short
offset into what follows: an offset that lands after the phase ended still tests a signal at that
later instant, so no outcome depends on the machine's speed.
"""
from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from lvsweep.tracking.runs import STORE_CACHE_ENV
from helpers.cli import HANG_S, finish_cli, run_cli, start_cli
from helpers.overrides import QUICK
from helpers.table import INTERNAL_NAMES, store_runs

Event = Callable[[Path], bool]
LANDED_IN_CREATION: list[Path] = []  # cases whose signal was sent while the store was being made


def creating(cwd: Path) -> bool:
    return any((cwd / "mlruns").glob(".mlflow.db.creating-*"))


def store_being_created(cwd: Path) -> bool:
    return creating(cwd) or (cwd / "mlruns" / "mlflow.db").exists()


def run_open(cwd: Path) -> bool:
    return any(status == "RUNNING" for _, status, _ in store_runs(cwd))


def figure_written(cwd: Path) -> bool:
    return any(cwd.glob("outputs/runs/*/*/figures/*.png"))


def signal_at(cwd: Path, args: tuple[str, ...], event: Event, offset_s: float, signum: int) -> list[str]:
    """Start the CLI, wait for `event`, wait `offset_s` more, send `signum`: what went wrong."""
    proc = start_cli(cwd, *args)
    deadline = time.monotonic() + HANG_S
    while not event(cwd) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(offset_s)
    if creating(cwd):
        LANDED_IN_CREATION.append(cwd)
    if proc.poll() is None:
        proc.send_signal(signum)
    out, err = finish_cli(proc)
    name = f"[{signal.Signals(signum).name} +{offset_s} s after {event.__name__}]"
    problems = []
    if proc.returncode not in (0, 128 + signum):
        problems.append(f"exit {proc.returncode}")
    if proc.returncode == 128 + signum and len(err.strip().splitlines()) != 1:
        problems.append(f"{len(err.strip().splitlines())} stderr lines")
    problems += [f"stderr names {word!r}" for word in INTERNAL_NAMES if word in err]
    if "emcee" in out + err:
        problems.append("emcee's report of the stop printed")
    runs = store_runs(cwd)
    wanted = "KILLED" if proc.returncode == 128 + signum else "FINISHED"
    problems += [f"run {run_id} {status}, expected {wanted}" for run_id, status, _ in runs if status != wanted]
    after = run_cli(cwd, *QUICK)
    if after.returncode != 0:
        problems.append(f"the next command failed: {after.stderr.strip()[-400:]}")
    return [f"{name} {p} (stderr {err.strip()[-300:]!r})" for p in problems]


def sweep(tmp_path: Path, cases: list[tuple[tuple[str, ...], Event, float, int]]) -> list[str]:
    def one(i_case: tuple[int, tuple]) -> list[str]:
        i, (args, event, offset, signum) = i_case
        cwd = tmp_path / f"case{i}"
        cwd.mkdir()
        return signal_at(cwd, args, event, offset, signum)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return [p for problems in pool.map(one, enumerate(cases)) for p in problems]


def test_a_signal_while_the_store_is_created_leaves_a_usable_store(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(STORE_CACHE_ENV, "off")  # MLflow's migrations, the long window, not a copy of the template
    cases = [(tuple(QUICK), store_being_created, offset, signum)
             for offset, signum in [(0.0, signal.SIGTERM), (0.05, signal.SIGINT), (0.15, signal.SIGTERM),
                                    (0.3, signal.SIGINT), (0.5, signal.SIGTERM)]]
    problems = sweep(tmp_path, cases)
    assert not problems, "\n".join(problems)
    assert any(tmp_path in case.parents for case in LANDED_IN_CREATION)  # the window was hit (measured: every case)
    for case in tmp_path.iterdir():
        assert not list((case / "mlruns").glob(".mlflow.db.creating-*"))  # nothing half made left behind


@pytest.mark.slow
def test_a_signal_during_training_figures_or_sampling_closes_the_run(tmp_path: Path):
    long_run = (*QUICK, "trainer.epochs=3000")
    with_figures = (*QUICK, "analysis.figures=true")
    fit = ("experiment=lynx_hare", "estimate.steps=1500", "analysis.figures=false")
    cases = [(long_run, run_open, 0.0, signal.SIGTERM), (long_run, run_open, 1.0, signal.SIGINT),
             (long_run, run_open, 3.0, signal.SIGTERM),
             (with_figures, figure_written, 0.0, signal.SIGTERM), (with_figures, figure_written, 0.3, signal.SIGINT),
             (fit, run_open, 2.0, signal.SIGTERM), (fit, run_open, 6.0, signal.SIGTERM),
             (fit, run_open, 12.0, signal.SIGINT)]
    problems = sweep(tmp_path, cases)
    assert not problems, "\n".join(problems)


def test_every_case_of_the_sweep_can_fail(tmp_path: Path):
    """The check itself: a directory whose next command cannot run is reported."""
    (tmp_path / "mlruns").write_text("x\n")
    problems = signal_at(tmp_path, tuple(QUICK), lambda cwd: True, 0.0, signal.SIGTERM)
    assert problems and any("the next command failed" in p for p in problems)
