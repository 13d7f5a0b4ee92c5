"""SIGTERM handled like Ctrl-C: the run that was going on is closed KILLED, not left RUNNING.

SLURM sends SIGTERM at a time limit, on `scancel` and on preemption, and so do container stops
and a plain `kill <pid>`; inside a SLURM job the reason recorded says which of those it was
(`lvsweep.slurm`), and a job that submitit is about to requeue stops the same way on USR2. Python's default for SIGTERM ends the process on the spot, with no `finally` and
no chance to close the MLflow run. The handler installed here raises `Terminated`, a subclass of
`KeyboardInterrupt`, so every path that already closes runs on Ctrl-C (the job in `app.py`, the
sweep's parent run in `cli.py`, the Optuna trial in the sweeper) closes them on SIGTERM too.

Lightning installs its own SIGTERM handler for the length of each `fit` unless told not to
(`keep_sigterm`): it swaps every signal handler of the process at the start and again at the
end, sets a flag on SIGTERM and raises its own `SIGTERMException` (a `SystemExit`) from the
training loop at the next step. A SIGTERM seen only that way never reached `_on_sigterm`, and the
run was closed as "interrupted" with exit 130. Our trainers therefore keep this module's handler
throughout, and `note(exc)` still reads a SIGTERM off whatever exception stops the process (our
`Terminated`, Lightning's `SIGTERMException`, or the `SystemExit(1)` Lightning raises after
either), so `stop_reason()` says which signal it was on every path.
"""
from __future__ import annotations

import _thread
import signal
import sys
import time
from types import FrameType
from typing import Optional

INTERRUPTED, TERMINATED = "interrupted", "terminated"
EXIT_STATUS = {INTERRUPTED: 128 + signal.SIGINT, TERMINATED: 128 + signal.SIGTERM}  # the shell's convention

_received: list[int] = []  # signals received by this process, in order
_acting = False  # a stop has reached code that closes what is open (`note`): repeats are ignored
_python_unraisable = sys.unraisablehook
AGAIN_AFTER_S = 0.01  # a swallowed stop is sent again this long after (swallowed again, sent again)


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)  # USR2: a SLURM job that submitit requeues (`lvsweep.slurm`)
_explained: dict[int, str] = {}  # what a stop signal meant, once asked (inside SLURM: the job's state)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process is told to stop (SIGTERM, or a SLURM requeue)."""

    def __init__(self, reason: str = TERMINATED) -> None:
        super().__init__(reason)


def stop_on(signum: int) -> None:
    """Record a stop signal and raise `Terminated`, until the stop reaches code that acts on it
    (`note`). From then on a repeat (a scheduler repeating itself, a requeue's own SIGTERM) must
    not cut short the cleanup that the first one started; a SIGKILL follows anyway if the sender
    loses patience. Until then each signal raises again: a `Terminated` raised while Python ran a
    garbage-collection or weakref callback is swallowed there (see `_unraisable`), and the next
    signal must not be ignored as a repeat of one that nothing acted on."""
    _received.append(signum)
    if not _acting:
        raise Terminated()


def check() -> None:
    """Raise `Terminated` if a stop signal was received and nothing acted on it yet: for the points
    a job passes often (each metric it logs), so a stop lost on the way is still a stop."""
    if terminated() and not _acting:
        raise Terminated()


def _unraisable(info: "sys.UnraisableHookArgs") -> None:
    """Python cannot raise an exception out of a garbage-collection or weakref callback: it prints
    "Exception ignored in ..." and goes on. A Ctrl-C or SIGTERM that landed there is sent again,
    so its handler raises it where it can stop the command; anything else is Python's to print."""
    if isinstance(info.exc_value, KeyboardInterrupt) and not _acting:
        _thread.start_new_thread(_send_again, (signal.SIGTERM if terminated() else signal.SIGINT,))
        return
    _python_unraisable(info)


def _send_again(signum: int) -> None:
    """From a thread of its own, once the callback that swallowed the stop has returned: a signal
    sent from the hook itself would be handled inside the hook, whose exceptions are swallowed too
    (and a thread that the hook waited for could send it before the hook returned)."""
    time.sleep(AGAIN_AFTER_S)
    signal.raise_signal(signum)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    stop_on(signum)


def _says_sigterm(exc: BaseException) -> bool:
    """Our `Terminated`, or Lightning's `SIGTERMException` (told by name: Lightning is not imported here)."""
    return isinstance(exc, Terminated) or any(c.__name__ == "SIGTERMException" for c in type(exc).__mro__)


def note(exc: BaseException) -> None:
    """Record a SIGTERM that `exc`, or an exception it was raised from or while handling, stands for:
    a SIGTERM that some other handler saw first still ends the process as "terminated". Called by
    the code that acts on a stop (closes runs, fails trials): from here on repeats are ignored."""
    global _acting
    _acting = True
    seen: set[int] = set()
    inner: Optional[BaseException] = exc
    while inner is not None and id(inner) not in seen:
        seen.add(id(inner))
        if _says_sigterm(inner):
            if not terminated():
                _received.append(signal.SIGTERM)
            return
        inner = inner.__cause__ or inner.__context__


def keep_sigterm(trainer: object) -> None:
    """Keep this module's SIGTERM handler installed while `trainer` fits. Lightning's signal
    connector would replace every handler of the process at the start of `fit` (CPython runs a
    pending signal's handler inside that very call) and restore them at its end, and in between
    handle a SIGTERM its own way: a flag, then a `SystemExit` from the loop. lvsweep needs none of
    it (no checkpoints, no Lightning-driven requeue), so the connector installs nothing; its
    teardown then has nothing to restore."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is not None:
        connector.register_signal_handlers = lambda: None


def install() -> None:
    """Handle SIGTERM from now on in this process (call it from the main thread), and let no stop
    be swallowed by a callback that cannot raise."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _unraisable


def install_in_worker() -> None:
    """In a launcher's worker process (joblib's), where SIGTERM still has Python's default and
    would end the job with its run left RUNNING: handle it as the entry point does. Only from the
    main thread, and never over a handler someone else installed."""
    import threading

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        install()


def terminated() -> bool:
    """True once this process has received SIGTERM (or stopped for a SLURM requeue)."""
    return any(s in _received for s in _STOP_SIGNALS)


def stop_detail() -> str:
    """The reason a run records for this stop: "interrupted", "terminated", or inside a SLURM job
    what the scheduler meant by it ("cancelled: ...", "preempted: ...", "time limit: ...")."""
    if not terminated():
        return INTERRUPTED
    signum = next(s for s in _received if s in _STOP_SIGNALS)
    if signum not in _explained:
        from lvsweep.slurm import explain

        _explained[signum] = explain(signum) or TERMINATED
    return _explained[signum]


def stop_reason() -> str:
    """Why the process is stopping early: "terminated" after SIGTERM, else "interrupted" (Ctrl-C)."""
    return TERMINATED if terminated() else INTERRUPTED


def stop_exception() -> KeyboardInterrupt:
    """The exception that says why the process is stopping, for recording and re-raising."""
    return Terminated(stop_detail()) if terminated() else KeyboardInterrupt(INTERRUPTED)


def exit_status() -> int:
    """128 + the signal's number, as a shell reports a process ended by that signal: 143 or 130."""
    return EXIT_STATUS[stop_reason()]
