"""Hostile observed-data files, fit settings and report flags, through the real CLI: one stderr
line naming the field, exit status 2, no traceback, and a store that already holds a run left as
it was (every row here is refused before a run opens).

Each data row writes its file into the row's own directory and names it relatively
(`data.path=obs.csv`): Hydra does not change the working directory (version_base 1.3), so the path
is read from where the command was started. The reader's own bounds and decoding are tested
directly below the table.

The first row of each class (a data file, a fit setting, the report's --out) and the FIFO (which a
regression would leave waiting for a writer) run as subprocesses, as does the report's unreachable
store in the test after the table; the other rows call the CLI's entry function in this process
(`entry_calls`, see `helpers.table`).
"""
from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from lvsweep.errors import LvsweepError
from lvsweep.estimation.observed import MAX_LINE_CHARS, MAX_LINES, MAX_ROWS, load_series
from lvsweep.estimation.priors import Prior, mass_inside
from helpers.cli import cli_env, run_cli
from helpers.table import Row, check_rows, entry_calls

AS_ROOT = os.geteuid() == 0  # root reads a chmod 000 file; /proc/self/mem then stands in as unreadable
HEADER = "t,prey,predator"
GOOD = HEADER + "\n" + "".join(f"{i},{10 + i % 4},{5 + i % 3}\n" for i in range(30))
CSV = ("data=csv", "data.path=obs.csv")
LYNX = ("experiment=lynx_hare",)


def good_with(old: str, new: str) -> str:
    """GOOD with its first line that starts with `old` replaced by the line `new`."""
    lines = GOOD.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith(old))
    lines[k] = new
    return "\n".join(lines) + "\n"


def csv_file(content: str | bytes, name: str = "obs.csv") -> Callable[[Path], None]:
    """A setup writing `content` (text as UTF-8, or bytes as they are) to `name` in the row's directory."""
    def setup(cwd: Path) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (cwd / name).write_bytes(data)
    return setup


def million_rows(cwd: Path) -> None:
    (cwd / "obs.csv").write_text(HEADER + "\n" + "".join(f"{i},1,1\n" for i in range(1_000_000)))


def stray_quote_in_a_large_file(cwd: Path) -> None:
    """A quote opened on line 3 and never closed, 160 kB before the end: a csv reader over the whole
    file reads on to its field limit (131072) and fails with its own traceback."""
    rows = [f"{i},{10 + i % 4},5" for i in range(20_000)]
    rows[1] = '1,"11,5'
    (cwd / "obs.csv").write_text(HEADER + "\n" + "\n".join(rows) + "\n")


def folder(cwd: Path) -> None:
    (cwd / "obs.csv").mkdir()


def fifo(cwd: Path) -> None:
    os.mkfifo(cwd / "obs.csv")  # opened for reading, it would wait for a writer forever


def unreadable(cwd: Path) -> None:
    (cwd / "obs.csv").write_text(GOOD)
    (cwd / "obs.csv").chmod(0)


def out_is_a_file(cwd: Path) -> None:
    (cwd / "taken").write_text("not a folder\n")


def read_only_folder(cwd: Path) -> None:
    (cwd / "ro").mkdir()
    (cwd / "ro").chmod(0o555)


# Where the report cannot write: a read-only folder, or for root (who writes anywhere) sysfs.
UNWRITABLE_OUT = "/sys/lvsweep-report" if AS_ROOT else "ro/report"

ROWS = [
    # ------------------------------------------------ class 8: the data file
    Row((*CSV,), "data.path", setup=csv_file(good_with("3,", "3," + "9" * 200_000 + ",5")),
        says="line 5 is longer than", label="a 200 kB cell"),
    Row((*CSV,), "data.path", setup=fifo, says="not a regular file", label="a FIFO"),  # a hang here would be its own
    *entry_calls(
        Row((*CSV,), "data.path", setup=stray_quote_in_a_large_file, says="line 3", label="a stray quote"),
        Row((*CSV,), "data.path", setup=csv_file(GOOD.replace(HEADER, "t,prey,predator,prey")),
            says="column 'prey' appears twice", label="a duplicated column"),
        Row((*CSV,), "data.values", setup=csv_file("\ufeff" + good_with("2,", "2,lots,5")),
            says="row 3 (line 4), column 'prey'", label="a byte-order mark, then a bad cell"),
        Row((*CSV,), "data.path", setup=csv_file(GOOD.replace("prey", "pr\xe9y", 1).encode("latin-1")),
            says="line 1: byte 0xe9 is not UTF-8", label="latin-1 text"),
        Row((*CSV,), "data.path", setup=million_rows, says=f"more than {MAX_ROWS} data rows", label="1,000,000 rows"),
        Row((*CSV,), "data.path", setup=csv_file(""), says="no header and no rows", label="an empty file"),
        Row((*CSV,), "data.time", setup=csv_file(GOOD.replace(HEADER, "T,prey,predator")), says="did you mean 'T'?",
            label="no time column"),
        Row((*CSV,), "data.path", setup=folder, says="is a folder", label="a folder"),
        Row(("data=csv", "data.path=/proc/self/mem") if AS_ROOT else CSV, "data.path",
            setup=None if AS_ROOT else unreadable, says="cannot be read", label="an unreadable file"),
        Row((*CSV,), "estimate.priors.x0_prey", setup=csv_file(GOOD.replace("\n0,10,", "\n0,1e12,", 1)),
            says="the default prior, around the first observation", label="values beyond the fit's range"),
    ),
    # ------------------------------------------------ class 9: fit settings and the report's flags
    Row((*LYNX, "estimate.priors.alpha.median=abc"), "estimate.priors.alpha.median"),
    *entry_calls(
        Row((*LYNX, "estimate.priors.alpha.kind=gauss"), "estimate.priors.alpha.kind", says="lognormal, truncnormal"),
        Row((*LYNX, "estimate.priors.alpha.median=1e-320"), "estimate.priors.alpha", says="of its mass"),
        Row((*LYNX, "estimate.priors.alpha={kind: loguniform, low: 2, high: 1}"), "estimate.priors.alpha.high"),
        Row((*LYNX, "estimate.params=[beta,sigma_prey,sigma_predator]", "estimate.priors.alpha.median=-1"),
            "estimate.priors.alpha.median", label="a bad prior of a quantity held fixed"),
        Row((*LYNX, "estimate.params=[alpha,beta]"), "estimate.params", says="must include sigma_prey"),
        Row((*LYNX, "estimate.burn=0"), "estimate.burn"),
    ),
    Row(("--out", "taken"), "--out", setup=out_is_a_file, says="is a file", module="lvsweep.report"),
    *entry_calls(
        Row(("--out", "taken/report"), "--out", setup=out_is_a_file, says="is a file", module="lvsweep.report"),
        Row((), "--out", setup=csv_file("not a folder\n", "report"), says="(the default, report/)",
            module="lvsweep.report", label="a file named report"),
        Row(("--out", UNWRITABLE_OUT), "--out", setup=read_only_folder, says="cannot write", module="lvsweep.report"),
        Row(("--tracking-uri", "http://127.0.0.1:9", "--out", "taken"), "--out", setup=out_is_a_file,
            module="lvsweep.report", label="both bad: --out first"),
        # in a process of its own in the test below, which also times it
        Row(("--tracking-uri", "http://127.0.0.1:9"), "--tracking-uri", says="cannot reach", module="lvsweep.report"),
    ),
]


def test_every_hostile_input_is_one_line_naming_the_field(seeded_store: Path, tmp_path: Path):
    assert len(ROWS) >= 20
    failures = check_rows(ROWS, seeded_store, tmp_path)
    assert not failures, "\n".join(failures)


def test_an_unreachable_report_store_is_named_in_seconds(tmp_path: Path):
    """MLflow's client retried an unreachable server for about four minutes before it failed."""
    start = time.monotonic()
    proc = run_cli(tmp_path, "--tracking-uri", "http://127.0.0.1:9", module="lvsweep.report", timeout=120)
    took = time.monotonic() - start
    assert proc.returncode == 2 and proc.stderr.startswith("lvsweep: error: --tracking-uri: cannot reach"), proc.stderr
    assert took < 60, f"took {took:.0f} s"


def test_the_report_checks_out_before_importing_mlflow(tmp_path: Path):
    """A bad --out costs nothing: it is refused before MLflow's imports and the store's reads."""
    (tmp_path / "taken").write_text("x")
    code = ("import sys\nfrom lvsweep.tracking.report import main\ntry:\n    main(['--out', 'taken'])\n"
            "except SystemExit as stop:\n    print(stop.code, 'mlflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert proc.stderr.startswith("lvsweep: error: --out:"), proc.stderr


def test_the_report_names_an_unreachable_store_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    from lvsweep.tracking.report import check_inputs

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(LvsweepError) as info:
        check_inputs(None, None)
    assert info.value.field == "--tracking-uri" and "127.0.0.1:9" in info.value.problem


# ---------------------------------------------------------------- the reader itself

# More files of the same classes, refused by the reader in-process: (content, field, what the line says).
REFUSED = {
    "a word for a number": (good_with("4,", "4,12,five"), "data.values", "row 5 (line 6), column 'predator': 'five'"),
    "an inf cell": (good_with("4,", "4,12,-inf"), "data.values", "'-inf' is not a finite number"),
    "an overflowing number": (good_with("4,", "4,1e400,5"), "data.values", "'1e400' is not a finite number"),
    "times going back": (good_with("6,", "4,12,5"), "data.times", "row 7 (line 8), column 't': times must increase"),
    "a repeated time": (good_with("6,", "5,12,5"), "data.times", "duplicate time"),
    "a thousands separator": (good_with("5,", "5,1,200,5"), "data.values", "4 cells but the header has 3"),
    "a header only": (HEADER + "\n# nothing yet\n", "data.path", "a header (line 1) but no data rows"),
    "a NaN cell": (good_with("4,", "4,NaN,5"), "data.values", "row 5 (line 6), column 'prey': missing value"),
    "random bytes": (random.Random(0).randbytes(50_000), "data.path", "is not UTF-8 text"),
    "a NUL byte": (b"t,prey,predator\n0,1\x00,2\n", "data.path", "line 2 holds a NUL byte"),
    "a stray quote": ('t,prey,predator\n0,"1,2\n1,2,3\n', "data.path", "line 2: unexpected end of data"),
    "an unmatched quote in the header": ('t,"prey,predator\n0,1,2\n', "data.path", "line 1:"),
    "comments only": ("# t,prey,predator\n\n# 0,1,2\n", "data.path", "no header and no rows"),
    "a blank header cell for a state": ("t,,predator\n0,1,2\n", "data.states", "column 'prey': no such column"),
    "a state column in other case": (GOOD.replace("prey", "Prey", 1), "data.states", "did you mean 'Prey'?"),
    "a zero": (good_with("2,", "2,0,5"), "data.values", "0 is not > 0"),
    "a header with a space": (GOOD.replace("prey", "prey ", 1).replace("t,", "t ,", 1), "", ""),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_the_reader_refuses_in_one_line_naming_the_field(tmp_path: Path, case: str):
    content, field, says = REFUSED[case]
    path = csv_path(tmp_path / "obs.csv", content)
    if not field:  # names are stripped: this one reads
        assert read(path).n_times == 30
        return
    err = refused(path)
    assert err.field == field and says in err.problem, str(err)


@pytest.mark.parametrize("states, says", [(["prey", "prey"], "named twice"), (["t", "prey"], "also the time column"),
                                          (["prey"], "1 state columns")])
def test_the_state_columns_are_distinct_and_not_the_time(tmp_path: Path, states: list[str], says: str):
    with pytest.raises(LvsweepError) as info:
        load_series(csv_path(tmp_path / "obs.csv", GOOD), "t", states, 2, n_states=2)
    assert info.value.field == "data.states" and says in info.value.problem


def test_a_path_through_a_file_is_no_such_file(tmp_path: Path):
    err = refused(csv_path(tmp_path / "obs.csv", GOOD) / "more.csv")
    assert err.field == "data.path" and "no such file" in err.problem


def read(path: Path, **kw) -> object:
    return load_series(path, "t", ["prey", "predator"], 2, n_states=2, **kw)


def refused(path: Path) -> LvsweepError:
    with pytest.raises(LvsweepError) as info:
        read(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    return info.value


@pytest.mark.parametrize("line_end", ["\n", "\r\n", "\r"])
def test_a_byte_order_mark_and_any_line_end_read_as_plain_utf8(tmp_path: Path, line_end: str):
    plain = read(csv_path(tmp_path / "plain.csv", GOOD))
    other = read(csv_path(tmp_path / "other.csv", "\ufeff" + GOOD.replace("\n", line_end)))
    assert other.names == ("prey", "predator") and other.n_times == 30
    assert np.array_equal(other.t, plain.t) and np.array_equal(other.y, plain.y)


def csv_path(path: Path, content: str | bytes) -> Path:
    csv_file(content, path.name)(path.parent)
    return path


def test_the_row_limit_is_exact(tmp_path: Path):
    rows = "".join(f"{i},1,1\n" for i in range(MAX_ROWS))
    assert read(csv_path(tmp_path / "full.csv", f"# a comment\n{HEADER}\n{rows}")).n_times == MAX_ROWS
    err = refused(csv_path(tmp_path / "over.csv", f"{HEADER}\n{rows}{MAX_ROWS},1,1\n"))
    assert err.field == "data.path" and f"line {MAX_ROWS + 2} is row {MAX_ROWS + 1}" in err.problem


def test_comment_lines_count_towards_a_bound_of_their_own(tmp_path: Path):
    start = time.monotonic()
    err = refused(csv_path(tmp_path / "notes.csv", "#\n" * (MAX_LINES + 1) + GOOD))
    assert f"more than {MAX_LINES} lines" in err.problem and time.monotonic() - start < 5


def test_a_bad_byte_is_placed_on_its_own_line_past_the_first_block(tmp_path: Path):
    """The text reader decodes ahead in blocks; the line named is the byte's own, here past the
    first megabyte, with two-byte characters on every line (some cut by a block's end)."""
    note = "\u00e9" * 150
    lines = [f"{line},note" for line in GOOD.splitlines()] + [f"{i},1,1,{note}" for i in range(30, 9000)]
    data = ("#.\n" + "\n".join(lines) + "\n").encode().replace(b"\n8000,", b"\n8000\xff,")
    assert data.index(b"\xff") > 2 << 20 and data[(1 << 20) - 1] == 0xC3  # a character cut at 1 MiB
    err = refused(csv_path(tmp_path / "bad.csv", data))
    assert err.field == "data.path" and "line 8003: byte 0xff" in err.problem, err.problem


def test_a_line_at_the_limit_reads_and_one_past_it_is_refused(tmp_path: Path):
    pad = "x" * (MAX_LINE_CHARS - len(HEADER) - 1)
    assert read(csv_path(tmp_path / "wide.csv", GOOD.replace(HEADER, f"{HEADER},{pad}"))).n_times == 30
    err = refused(csv_path(tmp_path / "wider.csv", GOOD.replace(HEADER, f"{HEADER},{pad}x")))
    assert f"line 1 is longer than {MAX_LINE_CHARS}" in err.problem


def test_a_stray_quote_is_refused_on_its_line_without_reading_on(tmp_path: Path):
    body = "".join(f"{i},1,1\n" for i in range(1, 9000))
    start = time.monotonic()
    err = refused(csv_path(tmp_path / "q.csv", f'{HEADER}\n0,"1,1\n{body}'))
    assert "line 2:" in err.problem and time.monotonic() - start < 5


def test_unused_empty_header_cells_may_repeat(tmp_path: Path):
    """A spreadsheet's trailing commas give empty names, which are not a duplicated column."""
    text = "\n".join(line + ",," for line in GOOD.splitlines()) + "\n"
    assert read(csv_path(tmp_path / "commas.csv", text)).n_times == 30


# ---------------------------------------------------------------- priors inside the sampler's range

PRIORS_REFUSED = [
    ({"kind": "lognormal", "median": 1.0, "sigma": 1e308}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "lognormal", "median": 1e12, "sigma": 0.1}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "lognormal", "median": 1.0, "sigma": 40.0}, "estimate.priors.alpha", "puts 47% of its mass"),
    ({"kind": "halfnormal", "scale": 1e300}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "truncnormal", "loc": -1e10, "scale": 1.0}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "lognormal", "median": float("inf"), "sigma": 1.0}, "estimate.priors.alpha.median", "got inf"),
    ({"kind": "halfnormal", "scale": 1e-300}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "loguniform", "low": 1e-20, "high": 1e20}, "estimate.priors.alpha", "puts 54%"),
    ({"kind": "truncnormal", "loc": 1e300, "scale": 1e300}, "estimate.priors.alpha", "of its mass"),
    ({"kind": "lognormal", "median": "abc", "sigma": 1.0}, "estimate.priors.alpha.median", "got 'abc'"),
    ({"kind": "lognormal", "median": True, "sigma": 1.0}, "estimate.priors.alpha.median", "got True"),
    ({"kind": "lognormal", "median": [1.0], "sigma": 1.0}, "estimate.priors.alpha.median", "got [1.0]"),
    ({"kind": "lognormal", "median": 1.0, "sigma": 0.0}, "estimate.priors.alpha.sigma", "> 0, got 0.0"),
    ({"kind": "truncnormal", "loc": float("nan"), "scale": 1.0}, "estimate.priors.alpha.loc", "finite number, got nan"),
    ({"kind": "halfnormal", "scale": float("inf")}, "estimate.priors.alpha.scale", "got inf"),
    ({"kind": "loguniform", "low": 1.0, "high": 1.0}, "estimate.priors.alpha.high", "must be > low"),
    ({"kind": ["lognormal"]}, "estimate.priors.alpha.kind", "is not one of"),
]


@pytest.mark.parametrize("spec, field, says", PRIORS_REFUSED)
def test_every_prior_field_is_checked_and_named(spec: dict, field: str, says: str):
    from lvsweep.estimation.priors import parse_prior

    with pytest.raises(LvsweepError) as info:
        parse_prior("alpha", spec)
    assert info.value.field == field and says in info.value.problem, str(info.value)


def test_a_wide_prior_inside_the_range_is_accepted():
    from lvsweep.estimation.priors import parse_prior

    assert parse_prior("alpha", {"kind": "lognormal", "median": 1.0, "sigma": 15.0}) == Prior("lognormal", 1.0, 15.0)
    assert parse_prior("alpha", {"kind": "loguniform", "low": "1e-11", "high": 1e10}).b == 1e10


@pytest.mark.parametrize("prior", [Prior("lognormal", 1.0, 1.0), Prior("lognormal", 1e-9, 3.0),
                                   Prior("halfnormal", 1e10), Prior("truncnormal", -2.0, 1.0),
                                   Prior("truncnormal", 1e10, 3e10), Prior("loguniform", 1e-20, 1e5)])
def test_the_mass_inside_the_sampler_box_is_the_density_integrated(prior: Prior):
    theta = np.linspace(-25.0, 25.0, 2_000_001)
    density = np.exp(prior.logpdf(theta))
    assert mass_inside(prior, 25.0) == pytest.approx(float(np.trapezoid(density, theta)), abs=2e-4)
    assert 0.0 <= mass_inside(prior, 25.0) <= 1.0 + 1e-12 and not math.isnan(mass_inside(prior, 25.0))
