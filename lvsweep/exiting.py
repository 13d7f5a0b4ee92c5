"""How the command's process ends: as any Python process ends (its exit handlers run, its output
is flushed, its status is the one `sys.exit` gave) but without the interpreter's teardown.

That teardown frees, one by one, the modules and objects that torch, Lightning and MLflow made,
and writes nothing: it took 1.7 s of the 9.2 s of `python -m lvsweep` here (docs/performance.md).
What the command writes at exit is written by then, before the exit handlers or by them (the
figure workers are reaped, logging and MLflow flush). Only the process's entry uses this
(`python -m lvsweep`, the `lvsweep` script): code that calls `lvsweep.cli.main` in a process of
its own keeps its own ending.
"""
from __future__ import annotations

import atexit
import os
import sys
from typing import Callable


def run_to_exit(main: Callable[[], None]) -> None:
    """Run `main`; once every exit handler has run, end the process with its status. After an
    uncaught exception other than `SystemExit` the process ends as Python ends it (traceback,
    status 1, teardown), as it does for a status this cannot know."""
    status: list[int] = []

    def end() -> None:
        if not status:
            return
        if "logging" in sys.modules:  # its own exit handler may have been registered before this one
            sys.modules["logging"].shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: there is nothing more to write
                pass
        os._exit(status[0])

    atexit.register(end)  # handlers run last registered first: this one after all that follow
    try:
        main()
    except SystemExit as exc:
        status.append(_status_of(exc.code))
        raise
    status.append(0)


def _status_of(code: object) -> int:
    """The status Python gives `sys.exit(code)`: 0 for None, the number for an int, else 1 (the
    code itself is printed on stderr, by Python, before the exit handlers run)."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
