"""SIGTERM handled like Ctrl-C: the run that was going on is closed KILLED, not left RUNNING.

SLURM sends SIGTERM at a time limit or on preemption, and so do container stops and a plain
`kill <pid>`. Python's default for SIGTERM ends the process on the spot, with no `finally` and
no chance to close the MLflow run. The handler installed here raises `Terminated`, a subclass of
`KeyboardInterrupt`, so every path that already closes runs on Ctrl-C (the job in `app.py`, the
sweep's parent run in `cli.py`, the Optuna trial in the sweeper) closes them on SIGTERM too.

Lightning installs its own SIGTERM handler while it trains. It keeps the handler it found and
calls it after its own (which only sets a flag), so ours still raises; Lightning then turns the
`KeyboardInterrupt` into `SystemExit(1)` as it does for Ctrl-C. Whatever shape the exception
takes on its way out, `stop_reason()` says which signal it was, from the record kept here.
"""
from __future__ import annotations

import signal
from types import FrameType
from typing import Optional

INTERRUPTED, TERMINATED = "interrupted", "terminated"
EXIT_STATUS = {INTERRUPTED: 128 + signal.SIGINT, TERMINATED: 128 + signal.SIGTERM}  # the shell's convention

_received: list[int] = []  # signals received by this process, in order


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""

    def __init__(self) -> None:
        super().__init__(TERMINATED)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    """Raise once. A second SIGTERM (a scheduler repeating itself) must not cut short the
    cleanup that the first one started; a SIGKILL follows anyway if the sender loses patience."""
    first = not _received
    _received.append(signum)
    if first:
        raise Terminated()


def install() -> None:
    """Handle SIGTERM from now on in this process (call it from the main thread)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def terminated() -> bool:
    """True once this process has received SIGTERM."""
    return signal.SIGTERM in _received


def stop_reason() -> str:
    """Why the process is stopping early: "terminated" after SIGTERM, else "interrupted" (Ctrl-C)."""
    return TERMINATED if terminated() else INTERRUPTED


def stop_exception() -> KeyboardInterrupt:
    """The exception that says why the process is stopping, for recording and re-raising."""
    return Terminated() if terminated() else KeyboardInterrupt(INTERRUPTED)


def exit_status() -> int:
    """128 + the signal's number, as a shell reports a process ended by that signal: 143 or 130."""
    return EXIT_STATUS[stop_reason()]
