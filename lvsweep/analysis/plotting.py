"""What every figure shares: one style (fonts, resolution), figures built with matplotlib's object
API (`Figure` on its own Agg canvas, no pyplot: nothing here selects a backend or keeps global
figure state), legends kept off the data, files written the same way, and the worker process that
draws a run's figures while the run goes on.

matplotlib is imported where a figure is made, not with this module: a job whose figures the worker
draws never imports it.
"""
from __future__ import annotations

import atexit
import functools
import os
import pickle
import signal
import struct
import subprocess
import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One style for every figure: the same font sizes everywhere, and a resolution at which 8-point
# text stays legible when the MLflow UI scales the PNG down to its preview width.
DPI = 150
STYLE = {"font.size": 10, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11.5}
# zlib level of the PNG files: the pixels are the same at every level; 1 encodes about three times
# faster than PIL's default 6, for files about 15 % larger.
PNG_COMPRESSION = 1
F = TypeVar("F", bound=Callable[..., Path])


def styled(draw: F) -> F:
    """Draw under the common STYLE: fonts are fixed as each artist is made, so the whole drawing
    (not only the save) runs inside the style."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Path:
        import matplotlib

        with matplotlib.rc_context(STYLE):
            return draw(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A new figure owned by no global state (no pyplot), with its Agg canvas and the file's
    resolution from the start, so that its layout (`tight_layout`), its bounding box and its
    drawing all measure text with one renderer: each text's size and each formula's layout is
    worked out once, not once per pass."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    renderer = FigureCanvasAgg(fig).get_renderer()
    renderer.mathtext_parser = _shared_math_parser(renderer.mathtext_parser)
    return fig


def subplots(*shape: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """A new figure (`new_figure`) and its axes, like `pyplot.subplots`."""
    fig = new_figure(figsize)
    return fig, fig.subplots(*shape, **kwargs)


_MATH_PARSER: list[Any] = []


def _shared_math_parser(own: Any) -> Any:
    """One formula parser for every figure of the process: the first Agg renderer's own. Each
    renderer makes its own, whose cache of laid-out formulas (log-axis tick labels are formulas)
    then dies with the figure: a fresh parse of each label costs tens of milliseconds, a cached one
    nothing, and the result is the same. The first renderer's parser, not a new one, because its
    kind differs across Matplotlib versions (3.8's Agg renderer expects raster output, later ones
    vector paths)."""
    if not _MATH_PARSER:
        _MATH_PARSER.append(own)
    return _MATH_PARSER[0]


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend in the margin right of the axes, never over the data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def save(fig: Figure, path: Path) -> Path:
    """The figure cropped to what is drawn plus `savefig.pad_inches`: the file
    `savefig(bbox_inches="tight")` writes, legends outside the axes included.

    That tight box is measured once, on the figure's own canvas, and the figure drawn once onto
    it and cropped (savefig draws it twice more, each time on a new renderer). Where something
    lies off the canvas (beyond half a pixel), cropping cannot show it, and savefig's own tight
    path writes the file."""
    import matplotlib
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba
    from matplotlib.image import imsave

    path.parent.mkdir(parents=True, exist_ok=True)
    png = {"compress_level": PNG_COMPRESSION}
    title = fig.get_suptitle()
    meta = {"Title": " ".join(title.split())} if title else None  # which run it shows (`captions`)
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    dpi = fig.dpi
    tight = fig.get_tightbbox(canvas.get_renderer())
    width, height = fig.get_size_inches()
    slack = 0.5 / dpi
    if tight.x0 < -slack or tight.y0 < -slack or tight.x1 > width + slack or tight.y1 > height + slack:
        fig.savefig(path, dpi=DPI, bbox_inches="tight", pil_kwargs=png, metadata=meta)
        return path
    canvas.draw()
    drawn = np.asarray(canvas.buffer_rgba())
    box = tight.padded(matplotlib.rcParams["savefig.pad_inches"])
    c0, c1 = round(box.x0 * dpi), round(box.x1 * dpi)
    r0, r1 = round((height - box.y1) * dpi), round((height - box.y0) * dpi)
    # The pad may reach past the canvas: there it is the figure's background, as in savefig's file.
    out = np.empty((r1 - r0, c1 - c0, 4), dtype=np.uint8)
    out[...] = np.round(np.asarray(to_rgba(fig.get_facecolor())) * 255)
    rows, cols = drawn.shape[:2]
    top, bottom, left, right = max(r0, 0), min(r1, rows), max(c0, 0), min(c1, cols)
    out[top - r0:bottom - r0, left - c0:right - c0] = drawn[top:bottom, left:right]
    imsave(path, out, format="png", dpi=dpi, pil_kwargs=png, metadata=meta)
    return path


# --- The figure worker -------------------------------------------------------------------------
#
# Two processes per job process (one where the job has a single CPU), started when the first run
# with figures begins (while the job still imports torch and trains) and kept for the jobs that
# follow. The job shares a run's figure calls between them once their inputs exist and goes on
# (writing CSVs, logging the model); before the run is closed it waits for them: a figure that
# fails fails the run, with the worker's traceback as the cause. A worker ignores Ctrl-C (the job
# decides), and ends when the job closes its input or ends in any way (it then reads end of file);
# a job interrupted while it waits kills and reaps its workers, and a job process that exits
# closes and reaps them (killing those still drawing), so none is left behind.

FIGURE_MODULES = ("lvsweep.analysis.figures", "lvsweep.analysis.cycle_figures")  # what the worker may be asked to run
_HEADER = struct.Struct(">Q")
WORKER_NICENESS = 10  # added to the job's niceness (capped at 19, the lowest priority)
# What a run's figure calls unpickle into, imported while the job trains: neither SciPy's solvers nor
# its statistics, nor Hydra (a PRC's result brings its own module, and SciPy, only for oscillators).
_WARM = ("lvsweep.analysis.figures", "lvsweep.analysis.cycle_figures", "lvsweep.analysis.perturbation",
         "lvsweep.systems")


class FigureError(RuntimeError):
    """A figure the worker could not draw, or the worker itself ending while it drew."""


class RemoteTraceback(Exception):
    """The worker's traceback of a drawing error, as the cause of the error re-raised in the job."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class FigureCall:
    """`module.name(*args, **kwargs)`, a figure function that writes `path` (its first argument)."""

    name: str
    path: Path
    args: tuple
    kwargs: dict = field(default_factory=dict)
    module: str = "lvsweep.analysis.figures"

    def run(self) -> Path:
        import importlib

        if self.module not in FIGURE_MODULES:
            raise FigureError(f"{self.module} is not a figure module")
        return getattr(importlib.import_module(self.module), self.name)(self.path, *self.args, **self.kwargs)


def draw_inline(calls: list[FigureCall]) -> list[Path]:
    """The calls in this process, in order: what a run without the worker does."""
    return [call.run() for call in calls]


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, size))


def _write_message(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


def _outcome(call: FigureCall) -> tuple[bool, Any]:
    try:
        call.run()
        return True, None
    except Exception as exc:  # sent back, raised in the job
        text = "".join(traceback.format_exception(exc))
        try:
            pickle.loads(pickle.dumps(exc))  # the job must be able to raise it
            error: BaseException = exc
        except Exception:
            error = FigureError(f"{type(exc).__name__}: {exc}")
        return False, (error, text)


def _warm_up() -> None:
    """What a first figure would otherwise pay, paid while the job still imports and trains: the
    modules a run's figure calls unpickle into, the fonts, the formula parser (log-axis tick labels
    are formulas)."""
    import importlib

    import matplotlib

    for name in _WARM:
        importlib.import_module(name)
    with matplotlib.rc_context(STYLE):
        fig, ax = subplots(figsize=(2, 1.5))
        ax.plot([1, 10, 100], [1, 2, 3], label="x")
        ax.set_xscale("log")
        ax.set_ylabel(r"$\nabla V\cdot\hat{n}$")
        ax.legend()
        fig.tight_layout()
        fig.get_tightbbox(fig.canvas.get_renderer())
        fig.canvas.draw()


def serve() -> None:
    """The worker's loop: read a list of figure calls, draw them, answer [(ok, error)] per call; end
    at end of input or when the job can no longer be answered."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the job decides
    # The job's core comes first: two workers start while the job still imports and trains, and on a
    # 2-core machine three busy processes slow the job's own imports. Niced, a worker still has every
    # cycle the job leaves idle, and all of them while the job waits for its figures.
    os.nice(WORKER_NICENESS)
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the answers
    try:
        _warm_up()
    except Exception:  # drawing will fail again, and be reported where it is asked for
        pass
    while True:
        try:
            ticket, calls = _read_message(0)
        except (EOFError, OSError):
            return
        outcomes = [_outcome(call) for call in calls]
        try:
            _write_message(answer_fd, (ticket, outcomes))
        except OSError:  # the job is gone
            return


class FigureWorker:
    """The job's side of one worker process."""

    def __init__(self) -> None:
        import lvsweep

        root = str(Path(lvsweep.__file__).resolve().parent.parent)  # the lvsweep this job runs
        # Ended as the command is (`lvsweep.exiting`): the job waits for its workers to end.
        code = (f"import sys; sys.path.insert(0, {root!r}); from lvsweep.exiting import run_to_exit; "
                "from lvsweep.analysis.plotting import serve; run_to_exit(serve)")
        env = dict(os.environ)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, "1")  # one core for drawing; the job trains on the others
        self.owner = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, close_fds=True)
        self.results: dict[int, list[tuple[bool, Any]]] = {}
        self.sent = 0  # tickets sent
        self.answered = 0  # answers read

    def busy(self) -> bool:
        """Whether it still draws (or has answers not read yet)."""
        return self.answered < self.sent

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.proc.poll() is None

    def submit(self, calls: list[FigureCall]) -> int:
        self.sent += 1
        assert self.proc.stdin is not None
        try:
            _write_message(self.proc.stdin.fileno(), (self.sent, calls))
        except BaseException as exc:
            self.stop(kill=True)
            if isinstance(exc, OSError):
                raise self._died("was sent figures") from exc
            raise
        return self.sent

    def outcomes(self, ticket: int) -> list[tuple[bool, Any]]:
        """The answers for `ticket`, reading (and keeping) the answers before it."""
        assert self.proc.stdout is not None
        while ticket not in self.results:
            try:
                got, outcomes = _read_message(self.proc.stdout.fileno())
            except (EOFError, OSError, pickle.UnpicklingError) as exc:
                self.stop(kill=True)
                raise self._died("drew") from exc
            except BaseException:  # a stop signal in the middle of an answer: the stream is lost
                stop_workers(kill=True)
                raise
            self.results[got] = outcomes
            self.answered += 1
        return self.results.pop(ticket)

    def _died(self, doing: str) -> FigureError:
        code = self.proc.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        return FigureError(f"the figure worker (pid {self.proc.pid}) {how} while it {doing}")

    def stop(self, kill: bool = False) -> None:
        """End the worker and reap it: at once (`kill`), or once it has read its end of input."""
        if self.owner != os.getpid():  # a forked copy of the job: the worker is its parent's
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if not kill:
            try:
                self.proc.wait(timeout=10)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait()


# Relative drawing times of the figures (measured at the defaults), to share a run's figures evenly
# between the workers; a figure not listed counts as 0.5.
WEIGHTS = {"attention_vs_sensitivity": 1.0, "timeseries": 0.8, "perturbation": 0.6, "attention_heads": 0.6,
           "phase_response": 0.5, "phase_portrait": 0.45}
_WORKERS: list[FigureWorker] = []  # this process's workers, once started


def worker_count() -> int:
    """Two workers where the job may use two CPUs (a run's figures then take about half as long
    after training: the job itself only waits), else one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 else 1


def start_workers() -> list[FigureWorker]:
    """This process's workers, started where there are none (or they ended); none where no process
    can be started, and the figures are then drawn in the job."""
    _WORKERS[:] = [w for w in _WORKERS if w.alive()]
    try:
        while len(_WORKERS) < worker_count():
            _WORKERS.append(FigureWorker())
    except OSError:
        pass
    return list(_WORKERS)


def stop_workers(kill: bool = False) -> None:
    """End this process's workers: at once when told to, or when one is still drawing (figures no
    one will wait for: the job stopped), else once each has read its end of input."""
    while _WORKERS:
        worker = _WORKERS.pop()
        worker.stop(kill=kill or worker.busy())


atexit.register(stop_workers)


class Drawing:
    """A run's figures, drawn by the workers (or here, without them); `paths()` waits for them."""

    def __init__(self, before: Optional[Callable[[], None]] = None) -> None:
        """`before`: called once, before the first figure is handed to the workers or waited for."""
        self.before = before
        self.workers = start_workers()
        self.load = [0.0] * len(self.workers)
        self.tickets: list[tuple[FigureWorker, int, list[FigureCall]]] = []
        self.calls: list[FigureCall] = []  # every figure, in the order asked for

    def add(self, calls: list[FigureCall]) -> None:
        """Start drawing `calls`, shared between the workers (heaviest first, each to the one with
        least to draw), or draw them now where there is no worker."""
        self._before()
        self.calls += calls
        if not self.workers:
            draw_inline(calls)
            return
        shares: list[list[FigureCall]] = [[] for _ in self.workers]
        for call in sorted(calls, key=lambda c: -WEIGHTS.get(c.name, 0.5)):
            i = min(range(len(self.workers)), key=self.load.__getitem__)
            self.load[i] += WEIGHTS.get(call.name, 0.5)
            # An absolute path for the worker, which may have started in another job's directory.
            shares[i].append(replace(call, path=Path(os.path.abspath(call.path))))
        for worker, share in zip(self.workers, shares):
            if share:
                self.tickets.append((worker, worker.submit(share), share))

    def paths(self) -> list[Path]:
        """Every figure's path (in the order asked for) once all are written; the first figure that
        failed raises its error, with the worker's traceback as its cause."""
        self._before()
        failure = None
        while self.tickets:
            worker, ticket, share = self.tickets[0]
            outcomes = worker.outcomes(ticket)
            self.tickets.pop(0)
            for call, (ok, failed) in zip(share, outcomes):
                if not ok and failure is None:
                    failure = (call, *failed)
        if failure is not None:
            call, error, text = failure
            raise error from RemoteTraceback(f"in the figure worker, drawing {call.path.name}:\n{text}")
        return [call.path for call in self.calls]

    def _before(self) -> None:
        before, self.before = self.before, None
        if before is not None:
            before()
