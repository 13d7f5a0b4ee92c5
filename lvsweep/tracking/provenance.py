"""Where a run came from: the code, the command, the machine and the packages that made its numbers.

Every run lvsweep opens (a single run, a sweep's parent and children, a study's parent and trials)
carries the tags of `run_tags`, and every run it closes the files of `write_files`, so that a reader
of the store can tell which code produced a number and `lvsweep.replay` can tell whether a re-run
should match it bit for bit (same code, same machine, same packages) or only within a tolerance.
"""
from __future__ import annotations

import functools
import getpass
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Optional

import lvsweep

VERSION_TAG = "lvsweep.version"
COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: the UI shows it beside the source
DIRTY_TAG = "lvsweep.git_dirty"  # "true" when the source tree had uncommitted changes (see code.diff)
COMMAND_TAG = "lvsweep.command"
SOURCE_NAME_TAG, SOURCE_TYPE_TAG, USER_TAG = "mlflow.source.name", "mlflow.source.type", "mlflow.user"
DATA_FILE_TAG = "lvsweep.data_file"  # the observed-data file a run read, as an absolute path
DATA_SHA_TAG = "lvsweep.data_sha256"  # and its checksum when the run started
REPLAY_TAG = "lvsweep.replay_of"  # the run a replay re-ran
ENVIRONMENT_FILE, DIFF_FILE = "environment.json", "code.diff"
# Set by the entry point and inherited by every worker and scheduler job of the command, whose own
# argv is the launcher's.
COMMAND_ENV = "LVSWEEP_COMMAND"
# The direct dependencies, for a source tree run without an installed distribution to read them from.
DIRECT_DEPENDENCIES = ("torch", "pytorch-lightning", "hydra-core", "scipy", "numpy", "mlflow", "optuna", "emcee",
                       "matplotlib", "hydra-joblib-launcher", "hydra-submitit-launcher", "psycopg", "threadpoolctl")
# What sets the numbers a run computes: when these agree the same config gives the same bits.
NUMERIC_ENVIRONMENT = ("python", "machine", "cpu", "blas", "torch", "packages")


@dataclass(frozen=True)
class SourceState:
    """The git state of the source tree lvsweep was imported from."""

    commit: str
    diff: str  # `git diff HEAD` of tracked files; empty when the tree is clean

    @property
    def dirty(self) -> bool:
        return bool(self.diff)


def source_root() -> Path:
    """The folder that holds the imported `lvsweep` package: a checkout's root, or site-packages."""
    return Path(lvsweep.__file__).resolve().parent.parent


@functools.cache
def source_state() -> Optional[SourceState]:
    """The commit and uncommitted changes of the checkout lvsweep runs from, read once per process;
    None for an installed wheel (its version says what it is) or where git is missing."""
    root = source_root()
    try:
        top = _git(root, "rev-parse", "--show-toplevel")
        if Path(top).resolve() != root:  # site-packages inside some other repository
            return None
        return SourceState(commit=_git(root, "rev-parse", "HEAD"), diff=_git(root, "diff", "HEAD", strip=False))
    except (OSError, subprocess.SubprocessError):
        return None


def _git(root: Path, *args: str, strip: bool = True) -> str:
    out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=30,
                         env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"}).stdout  # a read must not lock the index
    return out.strip() if strip else out


def command_line() -> str:
    """The command the user typed, as one shell line (the one that started this process's command)."""
    return os.environ.get(COMMAND_ENV) or shlex.join(_argv())


def _argv() -> list[str]:
    first = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # python -m lvsweep...: name the module, not its __main__.py
        return ["python", "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    return [first, *sys.argv[1:]]


def mark_command() -> None:
    """Record the command for every process it starts: called once by each entry point."""
    os.environ.setdefault(COMMAND_ENV, shlex.join(_argv()))


def run_tags() -> dict[str, str]:
    """The tags every run gets when it opens."""
    argv = shlex.split(command_line()) or ["lvsweep"]
    tags = {VERSION_TAG: lvsweep.__version__, COMMAND_TAG: command_line()[:5000],
            SOURCE_NAME_TAG: " ".join(argv[:3]) if argv[:2] == ["python", "-m"] else argv[0],
            SOURCE_TYPE_TAG: "LOCAL", USER_TAG: _user()}
    state = source_state()
    if state is not None:
        tags[COMMIT_TAG] = state.commit
        tags[DIRTY_TAG] = str(state.dirty).lower()
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        return str(os.getuid())


def environment() -> dict[str, Any]:
    """What this process computes with: read when a run closes, so that the libraries its job
    loaded (torch's threads, the BLAS numpy and scipy use) are seen as they were used."""
    return {
        "lvsweep": lvsweep.__version__,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "blas": _blas(),
        "torch": _torch(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                       if k in os.environ},
        "packages": packages(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas() -> dict[str, dict[str, Any]]:
    """Each BLAS and OpenMP library loaded, by '<library> <version>', with the kernel it chose for
    this CPU and its threads (threadpoolctl). numpy and scipy may each bring their own OpenBLAS."""
    from threadpoolctl import threadpool_info

    keep = ("user_api", "architecture", "threading_layer", "num_threads")
    return {f"{lib['internal_api']} {lib.get('version') or ''}".strip(): {k: lib[k] for k in keep if k in lib}
            for lib in sorted(threadpool_info(), key=lambda lib: (lib["internal_api"], str(lib.get("version"))))}


def _torch() -> Optional[dict[str, Any]]:
    """torch's threads and the vector unit its kernels use; None when this process never loaded it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": torch.backends.mkl.is_available(), "cuda": torch.version.cuda}


def packages() -> dict[str, Optional[str]]:
    """The installed version of every direct dependency (None: not installed)."""
    try:
        names = [_requirement_name(r) for r in metadata.requires("lvsweep") or [] if "extra ==" not in r]
    except metadata.PackageNotFoundError:
        names = []
    out: dict[str, Optional[str]] = {}
    for name in sorted(set(names) | set(DIRECT_DEPENDENCIES)):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _requirement_name(requirement: str) -> str:
    for i, ch in enumerate(requirement):
        if not (ch.isalnum() or ch in "-_."):
            return requirement[:i].lower()
    return requirement.lower()


def write_files(folder: Path) -> list[Path]:
    """`environment.json`, and `code.diff` when the source tree has uncommitted changes."""
    folder.mkdir(parents=True, exist_ok=True)
    env = folder / ENVIRONMENT_FILE
    env.write_text(json.dumps(environment(), indent=2, sort_keys=True) + "\n")
    files = [env]
    state = source_state()
    if state is not None and state.dirty:
        diff = folder / DIFF_FILE
        diff.write_text(state.diff)
        files.append(diff)
    return files


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def environment_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: recorded → current' for each leaf that differs (`blas.openblas 0.3.30.num_threads: 2 → 1`)."""
    a, b = _leaves(recorded), _leaves(current)
    return [f"{key}: {json.dumps(a.get(key))} → {json.dumps(b.get(key))}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def numerically_same(recorded: dict[str, Any], current: dict[str, Any]) -> bool:
    """True when nothing that sets the numbers differs between two environments."""
    return all(recorded.get(k) == current.get(k) for k in NUMERIC_ENVIRONMENT)


def origin(tags: Mapping[str, str]) -> str:
    """The code a run was recorded with, in words: 'lvsweep 0.1.0 at commit 1a2b3c4d5e6f'."""
    version = tags.get(VERSION_TAG)
    if version is None:
        return "an lvsweep that did not record its version"
    commit = tags.get(COMMIT_TAG)
    if commit is None:
        return f"lvsweep {version} (installed, not a git checkout)"
    dirty = " with uncommitted changes (its code.diff)" if tags.get(DIRTY_TAG) == "true" else ""
    return f"lvsweep {version} at commit {commit[:12]}{dirty}"
