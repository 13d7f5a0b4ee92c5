"""Observed time series to fit a system to: a user's CSV, or the lynx-hare records shipped with lvsweep.

Every problem a user can fix in the file is one `LvsweepError` line that names the file, the row
(1-based data row, with the file line beside it) and the column, because a fit that fails later on
a NaN or a zero says nothing about where the bad cell is. Problems of the file as a whole (it
cannot be read, is not UTF-8 text, is too large, has a broken line) name `data.path`, the setting
that chose it.

The file is read line by line with bounds on each line, on the number of data rows and on the
characters read, so no file (a stray quote, a binary file, a million rows, a device that never
ends) costs more than a fraction of a second and a few megabytes before it is refused.
"""
from __future__ import annotations

import csv
import io
import math
import os
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError

MISSING = {"", "na", "nan", "null", "none"}
PATH_FIELD = "data.path"
# The most data rows a series may have. The posterior sampler solves the ODE at every observation
# time for every walker at every step, so its time is linear in the rows: measured on
# Lotka-Volterra with the default 32 walkers, one ensemble step takes 9 ms at 21 rows, 51 ms at
# 10,000 and 470 ms at 100,000, i.e. about 2 minutes of sampling at the default 2,500 steps for
# 10,000 rows and 20 minutes for 100,000, before the attention model, whose weights over the
# series grow with the square of its length, is trained. Observed ecological and lab series have
# tens to thousands of points; a longer one is better thinned or cut to a window than sampled whole.
MAX_ROWS = 10_000
# The longest line read, in characters: a row of numbers is well under a kilobyte, and this bound
# stays below the csv module's field limit (131072), so an oversized cell is refused here, with its line.
MAX_LINE_CHARS = 100_000
# The most characters read in all, comments and unused columns included: MAX_ROWS rows of 3,000.
MAX_CHARS = 30_000_000
# The most lines read, comments and blank lines included (a line costs a microsecond: 0.1 s).
MAX_LINES = 10 * MAX_ROWS


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
        raise LvsweepError(field, f"{where}: {text.strip()[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise LvsweepError(field, f"{where}: {text.strip()!r} is not a finite number")
    return value


def _text_lines(fh: BinaryIO, source: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each line of `fh`, read as UTF-8 with a leading byte-order
    mark dropped (spreadsheets write one) and any line end (\\n, \\r\\n, a lone \\r); a line
    longer than MAX_LINE_CHARS, more than MAX_CHARS in all, bytes that are not UTF-8 or a NUL
    (a binary file) end the reading with one line naming the file and the line."""
    text_fh = io.TextIOWrapper(fh, encoding="utf-8-sig", newline=None)
    line_no, total = 0, 0
    while True:
        try:
            line = text_fh.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError:
            raise _not_utf8(fh, source) from None
        except OSError as err:
            after = f" after line {line_no}" if line_no else ""
            raise LvsweepError(PATH_FIELD, f"{source}: cannot be read{after} ({err.strerror or err})") from None
        if not line:
            return
        line_no += 1
        total += len(line)
        if line_no > MAX_LINES:
            raise LvsweepError(PATH_FIELD, f"{source}: more than {MAX_LINES} lines, comments and blank lines "
                                           f"included; a series has at most {MAX_ROWS} rows")
        if total > MAX_CHARS:
            raise LvsweepError(PATH_FIELD, f"{source}: longer than {MAX_CHARS} characters (line {line_no}); "
                                           f"a series has at most {MAX_ROWS} rows")
        text = line.rstrip("\n")
        if len(text) > MAX_LINE_CHARS:
            raise LvsweepError(PATH_FIELD, f"{source}: line {line_no} is longer than {MAX_LINE_CHARS} characters "
                                           "(a huge cell, a stray quote, or not a CSV file)")
        if "\0" in text:
            raise LvsweepError(PATH_FIELD, f"{source}: line {line_no} holds a NUL byte: a binary file, not CSV text")
        yield line_no, text


def _not_utf8(fh: BinaryIO, source: str) -> LvsweepError:
    """The error for a file that is not UTF-8, naming the line and the first bad byte. The text
    reader decodes ahead in blocks, so the place is found again in the bytes, a block at a time
    (a character cut by a block's end is carried into the next)."""
    fh.seek(0)
    line, carry, read = 1, b"", 0
    while read <= 4 * MAX_CHARS:
        block = fh.read(1 << 20)
        read += len(block)
        data = carry + block
        if not data:
            break
        try:
            data.decode("utf-8")
            carry = b""
        except UnicodeDecodeError as err:
            if not (block and err.reason == "unexpected end of data"):
                line += data.count(b"\n", 0, err.start)
                return LvsweepError(PATH_FIELD, f"{source}: line {line}: byte {data[err.start]:#04x} is not UTF-8 "
                                                "text; save the file as UTF-8 (CSV UTF-8 in a spreadsheet)")
            data, carry = data[:err.start], data[err.start:]
        line += data.count(b"\n")
    return LvsweepError(PATH_FIELD, f"{source}: not UTF-8 text; save the file as UTF-8")


def _records(lines: Iterator[tuple[int, str]], source: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each line that is not blank or a '#' comment. Each line is one
    record: a quoted cell cannot span lines, so a stray quote is reported on its own line instead
    of swallowing the rest of the file into one cell."""
    for line_no, text in lines:
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            cells = next(csv.reader([text], strict=True))
        except csv.Error as err:
            raise LvsweepError(PATH_FIELD, f"{source}: line {line_no}: {err} (an unmatched quote?)") from None
        yield line_no, cells


def _column_index(header: list[str], header_line: int, column: str, field: str, source: str) -> int:
    """Where `column` is in the header; one line naming the setting that asked for it when it is absent."""
    if column in header:
        return header.index(column)
    same_but_case = [h for h in header if h.lower() == column.lower()]
    hint = f"; did you mean {same_but_case[0]!r}?" if same_but_case else ""
    raise LvsweepError(field, f"{source}: row 0 (line {header_line}, the header), column {column!r}: no such "
                              f"column; the header has {_listed(header)}{hint}")


def _listed(header: list[str], most: int = 20) -> str:
    """The header's names as a message shows them: quoted (a stray space or an invisible character
    shows), each and their number bounded (a binary file's "header" can be anything)."""
    shown = ", ".join(repr(h[:40]) for h in header[:most])
    return shown + (f", ... ({len(header)} columns)" if len(header) > most else "")


def _check_header(header: list[str], header_line: int, source: str) -> None:
    """A column name twice would leave which of the two is meant to chance: refused, naming it."""
    seen: dict[str, int] = {}
    for k, name in enumerate(header):
        if name and name in seen:
            raise LvsweepError(PATH_FIELD, f"{source}: row 0 (line {header_line}, the header): column {name!r} "
                                           f"appears twice (columns {seen[name] + 1} and {k + 1}); rename one")
        seen.setdefault(name, k)


def _check_columns(time_column: str, state_columns: list[str], n_states: Optional[int], source: str) -> None:
    """The requested columns themselves: as many states as the system has, each a different column
    and none of them the time column."""
    if n_states is not None and len(state_columns) != n_states:
        raise LvsweepError("data.states", f"{source}: {len(state_columns)} state columns "
                                          f"({', '.join(state_columns)}) but the system has {n_states} states")
    for k, col in enumerate(state_columns):
        if col == time_column:
            raise LvsweepError("data.states", f"column {col!r} is also the time column (data.time)")
        if col in state_columns[:k]:
            raise LvsweepError("data.states", f"column {col!r} is named twice; each state needs its own column")


def _parse(records: Iterator[tuple[int, list[str]]], source: str, time_column: str, state_columns: Sequence[str],
           n_params: int, n_states: Optional[int], positive: bool) -> ObservedSeries:
    """The series from the file's records (see load_series for the arguments)."""
    state_columns = list(state_columns)
    _check_columns(time_column, state_columns, n_states, source)
    first = next(records, None)
    if first is None:
        raise LvsweepError(PATH_FIELD, f"{source}: no header and no rows")
    header_line, header = first[0], [h.strip() for h in first[1]]
    _check_header(header, header_line, source)
    columns = [time_column, *state_columns]
    index = [_column_index(header, header_line, time_column, "data.time", source),
             *(_column_index(header, header_line, c, "data.states", source) for c in state_columns)]
    t: list[float] = []
    y: list[list[float]] = []
    for line_no, cells in records:
        r = len(t) + 1
        if r > MAX_ROWS:
            raise LvsweepError(PATH_FIELD, f"{source}: more than {MAX_ROWS} data rows (line {line_no} is row {r}); "
                                           "thin the series or cut it to a window")
        if len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            raise LvsweepError("data.values", f"{source}: row {r} (line {line_no}): {len(cells)} cells but the header "
                                              f"has {len(header)} columns (a comma inside a number?)")
        values = []
        for j, (col, k) in enumerate(zip(columns, index)):
            where = f"{source}: row {r} (line {line_no}), column {col!r}"
            value = _cell(cells[k] if k < len(cells) else "", where, "data.values")
            if j == 0 and t and value <= t[-1]:
                problem = "duplicate time" if value == t[-1] else "times must increase"
                raise LvsweepError("data.times", f"{where}: {problem} ({value:g} after {t[-1]:g})")
            if j > 0 and positive and value <= 0:
                raise LvsweepError("data.values", f"{where}: {value:g} is not > 0, which the log-normal "
                                                  "measurement model needs")
            values.append(value)
        t.append(values[0])
        y.append(values[1:])
    if not t:
        raise LvsweepError(PATH_FIELD, f"{source}: a header (line {header_line}) but no data rows")
    if len(t) < max(n_params, 2):
        raise LvsweepError("data.rows", f"{source}: {len(t)} rows, fewer than the {max(n_params, 2)} the fit "
                                        f"needs ({n_params} free parameters)")
    t_arr, y_arr = np.array(t, dtype=float), np.array(y, dtype=float).reshape(len(t), len(state_columns))
    t_arr.setflags(write=False)
    y_arr.setflags(write=False)
    return ObservedSeries(t=t_arr, y=y_arr, names=tuple(state_columns), source=source)


def _open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading when it is a regular file; otherwise one line saying what it is.
    A FIFO or a device is refused before it is opened: opening a FIFO waits for a writer, and a
    device such as /dev/zero never ends."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise LvsweepError(PATH_FIELD, f"{path}: no such file") from None
    except OSError as err:
        raise LvsweepError(PATH_FIELD, f"{path}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise LvsweepError(PATH_FIELD, f"{path}: is a folder, not a CSV file")
    if not stat.S_ISREG(mode):
        raise LvsweepError(PATH_FIELD, f"{path}: is not a regular file (a FIFO, socket or device); "
                                       "give a CSV file")
    try:
        return path.open("rb")
    except OSError as err:
        raise LvsweepError(PATH_FIELD, f"{path}: cannot be read ({err.strerror or err})") from None


def load_series(path: str | Path, time_column: str, state_columns: Sequence[str], n_params: int = 0, *,
                n_states: Optional[int] = None, positive: bool = True) -> ObservedSeries:
    """Read a CSV of observations: one time column and one column per state, in the system's state order.

    `n_params` is the number of free parameters the fit will have (a series with fewer rows cannot
    determine them); `n_states`, when given, is the system's dimension and must equal
    len(state_columns); `positive` requires every state value > 0 (the log-normal measurement
    model's support). Lines starting with '#' are comments; the text is UTF-8 (a byte-order mark,
    as spreadsheets write it, is dropped); at most MAX_ROWS data rows. Returns t [T], y [T, d].
    """
    path = Path(os.path.expanduser(str(path)))
    with _open_regular(path) as fh:
        records = _records(_text_lines(fh, str(path)), str(path))
        return _parse(records, str(path), time_column, state_columns, n_params, n_states, positive)


def lynx_hare() -> ObservedSeries:
    """The Hudson's Bay Company hare and lynx pelt records (thousands), 1900-1920, packaged with lvsweep.

    States are ordered [Hare, Lynx] = lotka_volterra's [prey, predator]; t is years since 1900,
    so an initial state is the population in 1900. Provenance: lvsweep/datasets/README.md.
    """
    data = resources.files("lvsweep").joinpath("datasets/lynx_hare.csv").read_bytes()
    records = _records(_text_lines(io.BytesIO(data), "lynx_hare.csv"), "lynx_hare.csv")
    series = _parse(records, "lynx_hare.csv", "Year", ["Hare", "Lynx"], 0, 2, True)
    t = series.t - 1900.0
    t.setflags(write=False)
    return ObservedSeries(t=t, y=series.y, names=series.names, source="lvsweep/datasets/lynx_hare.csv")
