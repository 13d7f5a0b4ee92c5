"""Observed time series to fit a system to: a user's CSV, or the lynx-hare records shipped with lvsweep.

Every problem a user can fix in the file is one `LvsweepError` line that names the file, the row
(1-based data row, with the file line beside it) and the column, because a fit that fails later on
a NaN or a zero says nothing about where the bad cell is.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError

MISSING = {"", "na", "nan", "null", "none"}


@dataclass(frozen=True)
class ObservedSeries:
    """Observations of d states at T times (not necessarily evenly spaced).

    t: [T] strictly increasing times; y: [T, d] observed values; names: the d column names;
    source: where the data came from (a path, or the packaged data set's name).
    """
    t: np.ndarray
    y: np.ndarray
    names: tuple[str, ...]
    source: str

    @property
    def n_times(self) -> int:
        return int(self.t.shape[0])

    @property
    def dim(self) -> int:
        return int(self.y.shape[1])


def _cell(text: str, where: str, field: str) -> float:
    """A finite float from one CSV cell, or one line saying what is wrong with it and where."""
    if text.strip().lower() in MISSING:
        raise LvsweepError(field, f"{where}: missing value")
    try:
        value = float(text)
    except ValueError:
        raise LvsweepError(field, f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise LvsweepError(field, f"{where}: {text.strip()!r} is not a finite number")
    return value


def _parse(text: str, source: str, time_column: str, state_columns: Sequence[str],
           n_params: int, n_states: Optional[int], positive: bool) -> ObservedSeries:
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines())
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise LvsweepError("data.file", f"{source}: no header and no rows")
    header_line, header_text = lines[0]
    header = [h.strip() for h in next(csv.reader([header_text]))]
    state_columns = list(state_columns)
    if n_states is not None and len(state_columns) != n_states:
        raise LvsweepError("data.states", f"{source}: {len(state_columns)} state columns "
                                          f"({', '.join(state_columns)}) but the system has {n_states} states")
    for col in [time_column, *state_columns]:
        if col not in header:
            raise LvsweepError("data.columns", f"{source}: row 0 (line {header_line}, the header), column {col!r}: "
                                               f"no such column; the header has {', '.join(header)}")
    index = [header.index(c) for c in [time_column, *state_columns]]
    rows = list(csv.reader([line for _, line in lines[1:]]))
    t = np.empty(len(rows))
    y = np.empty((len(rows), len(state_columns)))
    for r, (cells, (line_no, _)) in enumerate(zip(rows, lines[1:])):
        for j, (col, k) in enumerate(zip([time_column, *state_columns], index)):
            where = f"{source}: row {r + 1} (line {line_no}), column {col!r}"
            value = _cell(cells[k] if k < len(cells) else "", where, "data.values")
            if j == 0:
                if r > 0 and value <= t[r - 1]:
                    problem = "duplicate time" if value == t[r - 1] else "times must increase"
                    raise LvsweepError("data.times", f"{where}: {problem} ({value:g} after {t[r - 1]:g})")
                t[r] = value
            else:
                if positive and value <= 0:
                    raise LvsweepError("data.values", f"{where}: {value:g} is not > 0, which the log-normal "
                                                      "measurement model needs")
                y[r, j - 1] = value
    if len(rows) < max(n_params, 2):
        raise LvsweepError("data.rows", f"{source}: {len(rows)} rows, fewer than the {max(n_params, 2)} the fit "
                                        f"needs ({n_params} free parameters)")
    t.setflags(write=False)
    y.setflags(write=False)
    return ObservedSeries(t=t, y=y, names=tuple(state_columns), source=source)


def load_series(path: str | Path, time_column: str, state_columns: Sequence[str], n_params: int = 0, *,
                n_states: Optional[int] = None, positive: bool = True) -> ObservedSeries:
    """Read a CSV of observations: one time column and one column per state, in the system's state order.

    `n_params` is the number of free parameters the fit will have (a series with fewer rows cannot
    determine them); `n_states`, when given, is the system's dimension and must equal
    len(state_columns); `positive` requires every state value > 0 (the log-normal measurement
    model's support). Lines starting with '#' are comments. Returns t [T], y [T, d].
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LvsweepError("data.file", f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise LvsweepError("data.file", f"{path}: cannot be read as text ({type(err).__name__})") from None
    return _parse(text, str(path), time_column, state_columns, n_params, n_states, positive)


def lynx_hare() -> ObservedSeries:
    """The Hudson's Bay Company hare and lynx pelt records (thousands), 1900-1920, packaged with lvsweep.

    States are ordered [Hare, Lynx] = lotka_volterra's [prey, predator]; t is years since 1900,
    so an initial state is the population in 1900. Provenance: lvsweep/datasets/README.md.
    """
    text = resources.files("lvsweep").joinpath("datasets/lynx_hare.csv").read_text()
    series = _parse(text, "lynx_hare.csv", "Year", ["Hare", "Lynx"], 0, 2, True)
    t = series.t - 1900.0
    t.setflags(write=False)
    return ObservedSeries(t=t, y=series.y, names=series.names, source="lvsweep/datasets/lynx_hare.csv")
