"""The CLI's entry functions called in this process, for rows of an input table that the real
process would refuse the same way: `lvsweep.cli.main` (or the report's `main`) with the row's
arguments, in the row's directory, its stdout and stderr captured and its exit status read from
the `SystemExit` it ends with.

What only a process of its own shows (warnings printed while the CLI imports, what the
interpreter prints as it shuts down, signals) is left to the rows of each kind that still run
through `helpers.cli.run_cli`; `helpers.table` says which. Everything the call changes in this
process is put back: the working directory, `sys.argv`, the environment, the signal handlers
`main` installs, the logging Hydra configures, Hydra's global state, the warnings filters.
Calls are made one at a time (they share this process's directory and streams).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from helpers.cli import cli_env

class InProcessError(AssertionError):
    """The call did what only a process of its own may do here (it opened a store in its directory)."""


_LOCK = threading.Lock()  # one call at a time: a call changes this process's directory and streams

# Python's own warning filters, as a fresh `python -m lvsweep` has them (pytest's are wider).
_PYTHON_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, None),
                   ("ignore", PendingDeprecationWarning, None), ("ignore", ImportWarning, None),
                   ("ignore", ResourceWarning, None)]


@contextlib.contextmanager
def _restored_process_state(cwd: Path, argv: list[str]):
    old_cwd, old_argv, old_env = os.getcwd(), sys.argv, dict(os.environ)
    old_signals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    old_hook = sys.unraisablehook
    root = logging.getLogger()
    loggers = {name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
               for name, lg in [("", root), *logging.root.manager.loggerDict.items()]
               if isinstance(lg, logging.Logger) or lg is root}
    os.chdir(cwd)
    sys.argv = argv
    for key in set(os.environ) - set(cli_env()):  # not cleared: threads running CLIs read it meanwhile
        del os.environ[key]
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv
        for key in set(os.environ) - set(old_env):
            del os.environ[key]
        os.environ.update(old_env)
        for s, handler in old_signals.items():
            signal.signal(s, handler)
        sys.unraisablehook = old_hook
        for name, (handlers, level, propagate, disabled) in loggers.items():
            lg = root if name == "" else logging.getLogger(name)
            for added in set(lg.handlers) - set(handlers):  # Hydra's log file of the job, its console
                added.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate, lg.disabled = propagate, disabled
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()


def _relative_stores() -> set[str]:
    """The SQLite stores MLflow holds engines for by a relative URI (the default,
    sqlite:///mlruns/mlflow.db, read from the working directory). MLflow caches them by URI for the
    life of the process, so a second call in another directory would be handed the first one's
    store: a call may not open one."""
    store = sys.modules.get("mlflow.store.tracking.sqlalchemy_store")
    if store is None:
        return set()
    return {uri for uri in list(store.SqlAlchemyStore._engine_map)  # a copy: other threads add to it
            if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")}


def _forget_relative_stores(uris: set[str]) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    for uri in uris:
        SqlAlchemyStore._engine_map.pop(uri).dispose()
    TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()


def call_cli(cwd: Path, *args: str, module: str = "lvsweep") -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in `cwd` as its entry function runs it here: the exit status,
    stdout and stderr it would give (warnings it raises printed to stderr as Python prints them).
    Raises `InProcessError` if the call opened a store in `cwd` by a relative URI (see
    `_relative_stores`): such a command must run in a process of its own."""
    before = _relative_stores()
    if before:
        _forget_relative_stores(before)
    out, err = io.StringIO(), io.StringIO()
    status: int | str | None = 0
    with _LOCK, _restored_process_state(cwd, [f"python -m {module}", *args]), \
            warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        warnings.resetwarnings()
        for action, category, module_re in reversed(_PYTHON_FILTERS):
            if module_re is None:
                warnings.simplefilter(action, category)
            else:
                warnings.filterwarnings(action, category=category, module=module_re)
        try:
            if module == "lvsweep":
                from lvsweep.cli import main

                main()
            elif module == "lvsweep.report":
                from lvsweep.tracking.report import main as report_main

                report_main(list(args))
            else:
                raise ValueError(f"no entry function known for {module}")
        except SystemExit as stop:
            status = stop.code
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    opened = _relative_stores()
    if opened:
        _forget_relative_stores(opened)
        raise InProcessError(f"opened the store {', '.join(sorted(opened))} in {cwd} in this process; a command "
                             f"that opens a store must run in a process of its own (stderr {err.getvalue()[-300:]!r})")
    code = 0 if status is None else status if isinstance(status, int) else 1
    if isinstance(status, str):
        err.write(status + "\n")
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, out.getvalue(), err.getvalue())
