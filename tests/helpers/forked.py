"""The real CLI in a process of its own, forked from an interpreter that has already imported it.

A fresh `python -m lvsweep` spends most of a quick test run importing torch, Lightning, MLflow and
Hydra. Here one server process per test session imports them once (nothing else: no torch op, no
store, no Hydra call, no thread), then forks a child for each command. The child is a process of
its own with the command's working directory, environment, argv, stdin (/dev/null), stdout and
stderr (files read back as `CompletedProcess` text), and exit status: the real entry point
(`python -m <module>` through `runpy`) runs in it from the start, on the real store, and exits
through Python's own shutdown (atexit handlers, non-daemon threads). Its state dies with it, so no
command sees what another did.

What only a fresh interpreter shows is not run here: import-time behaviour (`helpers.cli.run_cli`
takes `fresh=True`), commands whose environment changes what is read when a library loads
(thread counts, `PYTHON*`, `LD_*`: `run_cli` starts those fresh itself), and signals to the
command's process group (`helpers.cli.start_cli`).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

# What the server imports before it forks: the CLI and what a run imports as it goes.
PRELOAD = ("torch", "pytorch_lightning", "lightning_fabric.plugins.environments", "mlflow", "mlflow.pytorch", "mlflow.pyfunc",
           "mlflow.store.tracking.sqlalchemy_store", "hydra", "scipy.integrate", "scipy.stats", "sqlalchemy",
           "alembic", "optuna", "lvsweep.cli", "lvsweep.app", "lvsweep.pipeline", "lvsweep.training.trainer")
# Not a module a command runs with `-m` (`lvsweep.report`'s `__main__`, say): runpy would warn that
# it was imported before it ran.
# Environment variables read when a library loads (so at the server's start, not the child's):
# a command that sets them otherwise runs in a fresh interpreter.
LOAD_TIME_ENV = re.compile(r"THREADS|^OMP_|^MKL_|^OPENBLAS|^PYTHON|^LD_|^MALLOC|^KMP_")


def _child(request: dict) -> None:
    """In the forked child: become the command, run it, exit with its status."""
    os.setpgid(0, 0)  # a group of its own, as a command started from a shell has
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY)):
        target = os.open(path, flags)
        os.dup2(target, fd)
        os.close(target)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import runpy

    module = request["module"]
    sys.argv = [module, *request["args"]]
    code: object = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    except BaseException:  # what the interpreter would print for an uncaught exception, then 1
        import traceback

        traceback.print_exc()
        code = 1
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if not isinstance(code, (int, type(None))):
        print(code, file=sys.stderr)
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # join non-daemon threads, as exit does
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def serve(path: str) -> None:
    """Import, then fork one child per request on the socket at `path`, and answer each request
    with the child's pid at once and its exit status (negative: the signal) once it has ended."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    print("ready", flush=True)
    waiting: dict[int, socket.socket] = {}
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while True:
        for _key, _ in selector.select(timeout=0.05):
            conn, _ = listener.accept()
            request = json.loads(conn.makefile().readline())
            pid = os.fork()
            if pid == 0:  # nothing of the server's, nor of the other commands, stays open in the child
                selector.close()
                for sock in (listener, conn, *waiting.values()):
                    sock.close()
                _child(request)
            conn.sendall(f"{pid}\n".encode())
            waiting[pid] = conn
        while waiting:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = waiting.pop(pid, None)
            if conn is not None:
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall(f"{code}\n".encode())
                finally:
                    conn.close()


class ForkServer:
    """The server process of this test session (started on first use, stopped at exit)."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="lvsweep-fork-")
        self.path = os.path.join(self.dir, "socket")
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LVSWEEP_PARENT_RUN_ID")}
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-c", f"from helpers.forked import serve; serve({self.path!r})"],
                                     cwd=self.dir, env={**env, "PYTHONPATH": _tests_path(env)},
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()  # waits for the imports, however long a loaded machine takes
        if line.strip() != "ready":
            raise RuntimeError(f"the CLI fork server did not start (exit {self.proc.wait()})")
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def forks(self, env: dict[str, str]) -> bool:
        """Whether a command with `env` can run forked: no variable read at load time differs."""
        keys = {k for k in set(env) | set(self.env) if LOAD_TIME_ENV.search(k)} - {"PYTHONPATH"}
        return all(env.get(k) == self.env.get(k) for k in keys)

    def run(self, cwd: Path, args: tuple[str, ...], module: str, env: dict[str, str],
            timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory(dir=self.dir) as tmp:
            out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
            Path(out).touch()
            Path(err).touch()
            request = {"cwd": str(cwd), "args": list(args), "module": module, "env": env, "stdout": out,
                       "stderr": err}
            with socket.socket(socket.AF_UNIX) as conn:
                conn.connect(self.path)
                conn.sendall((json.dumps(request) + "\n").encode())
                reader = conn.makefile()
                pid = int(reader.readline())
                conn.settimeout(timeout)
                try:
                    line = reader.readline()
                except socket.timeout:
                    _kill_group(pid)
                    raise subprocess.TimeoutExpired([module, *args], timeout)
            if not line:
                raise RuntimeError("the CLI fork server ended while a command ran")
            return subprocess.CompletedProcess([sys.executable, "-m", module, *args], int(line),
                                               Path(out).read_text(errors="replace"),
                                               Path(err).read_text(errors="replace"))


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


def _tests_path(env: dict[str, str]) -> str:
    """PYTHONPATH for the server: the tests folder first (for `helpers.forked`), then the caller's."""
    here = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])


_SERVER: Optional[ForkServer] = None
_START = threading.Lock()


def server() -> ForkServer:
    global _SERVER
    with _START:
        if _SERVER is None or _SERVER.proc.poll() is not None:
            _SERVER = ForkServer()
        return _SERVER
