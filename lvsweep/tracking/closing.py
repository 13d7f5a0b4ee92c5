"""A sweep job's run closed once its figures are in, while the next job of the process trains.

A job of an in-process multirun (Hydra's basic sweeper and launcher: `-m noise=0,1,2,4`) hands its
figures to the figure workers and returns as soon as its numbers, CSVs, model and note are
recorded; the workers draw on the other core while the next job imports its config, simulates
and trains, and that job logs the figures and closes the run just before it hands over figures
of its own (the workers then have nothing else to draw, so nothing is waited for). The sweep's
end, and a sweep stopped by a signal or an error, close whatever is still pending first, so a
run is never left open by this: its figures are logged, or it is FAILED with the figure's error.

Only where the job's return value is not read before its run closes: a study's trial (the
objective is told to the sampler) and a job in a launcher's worker process (whose end nobody in
this process sees) close their runs as they return.
"""
from __future__ import annotations

from typing import Callable

_PENDING: list[Callable[[], None]] = []  # the closes still to do, oldest first

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def defer(close: Callable[[], None]) -> None:
    """`close` (which handles its own errors) to run at the next `settle()`."""
    _PENDING.append(close)


def settle() -> None:
    """Run every deferred close now, oldest first (waiting for figures still being drawn)."""
    while _PENDING:
        _PENDING.pop(0)()
