"""The real CLI in a temp dir, in the foreground or in the background.

Waits end on events (the process exiting, a status in the store), never on a budget tuned on a
quiet machine: on a loaded one (load average 5 on 2 cores) a CLI takes tens of seconds to import
torch and Lightning, and as long again to shut its interpreter down after it has closed its run.
`HANG_S` only stops a test that would otherwise wait forever.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

HANG_S = 600.0  # a limit against true hangs only; nothing is expected to come near it


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without tracking settings that would leak into the run, nor the
    command line an entry function called in this process marked (a command records its own)."""
    from lvsweep.tracking.provenance import COMMAND_ENV

    leaks = ("MLFLOW_TRACKING_URI", "LVSWEEP_PARENT_RUN_ID", COMMAND_ENV)
    env = {k: v for k, v in os.environ.items() if k not in leaks}
    return {**env, **extra}


def run_cli(cwd: Path, *args: str, module: str = "lvsweep", timeout: float = HANG_S,
            env: dict[str, str] | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` in `cwd` to its end (`module="lvsweep.report"` for the report),
    in a process of its own forked from one that has imported the CLI already
    (`helpers.forked`), or, with `fresh` (what a command does as it imports), a `LOAD_TIME_ENV`
    variable set otherwise, or `LVSWEEP_TESTS_FRESH=1` in the suite's environment, a fresh interpreter."""
    from helpers import forked

    env = env or cli_env()
    if not fresh and os.environ.get("LVSWEEP_TESTS_FRESH") != "1":
        server = forked.server()
        if server.forks(env):
            return server.run(cwd, args, module, env, timeout)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _as_from_a_terminal() -> None:
    """SIGINT and SIGQUIT as a shell gives a foreground command: a test suite started in the
    background (`cmd &` in a script) passes them on ignored, and Python then never raises
    KeyboardInterrupt, so a Ctrl-C test would wait on a run that cannot be interrupted."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """The CLI in the background, for concurrent workers and for signals (delivered to it as they
    would be to a command a user started in a terminal)."""
    return subprocess.Popen([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=env or cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_as_from_a_terminal)


def finish_cli(proc: subprocess.Popen) -> tuple[str, str]:
    """Wait for a background CLI to exit (however slowly a loaded machine shuts it down): its output."""
    return proc.communicate(timeout=HANG_S)


def finish_all(procs: list[subprocess.Popen]) -> None:
    """Wait for background CLIs (workers started together) to exit, each with status 0."""
    for proc in procs:
        _, err = finish_cli(proc)
        assert proc.returncode == 0, err


def error_line(proc: subprocess.CompletedProcess, status: int = 2) -> str:
    """The one stderr line of a CLI that failed as promised: with `status` and nothing else said."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == status and len(lines) == 1, f"exit {proc.returncode}, stderr: {proc.stderr[-3000:]}"
    return lines[0]


class Outcomes(dict):
    """name -> what a job returned; reading the name of a job that raised raises its exception
    (so a test reads only its own job's failure)."""

    def __init__(self, results: dict, failures: dict[str, BaseException]) -> None:
        super().__init__(results)
        self.failures = failures

    def __getitem__(self, name):
        if name in self.failures:
            raise self.failures[name]
        return super().__getitem__(name)


def together(jobs: dict[str, Callable[[], T]], workers: int = 3) -> Outcomes:
    """Independent jobs at once, each running CLIs in a directory of its own (every run is single-
    threaded, so two cores do two at a time): name -> result, once all have ended."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
    results, failures = {}, {}
    for name, future in futures.items():
        if future.exception() is not None:
            failures[name] = future.exception()
        else:
            results[name] = future.result()
    return Outcomes(results, failures)
