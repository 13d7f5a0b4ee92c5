"""Entry point: shorthand overrides in, one-line errors and an honest exit status out.

`HYDRA_FULL_ERROR=1` makes Hydra hand its exceptions to us instead of printing multi-line
reports, so every user error (a typo in an override, an unknown option, a bad value) becomes
one line that names the field and the allowed values.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

from lvsweep.errors import LvsweepError, exit_with_error

# Schema class names (LvsweepConfig, TrainerConfig, OptunaSweeperConf, ...) mean nothing to a user.
INTERNAL_CLASS = re.compile(r"'?\b[A-Z][A-Za-z]*Conf(?:ig)?\b'?")
SWEEPER = "hydra.sweeper"
SEARCH_SPACE = "hydra.sweeper.params"
# What `hydra.sweeper.params` may be, and how to edit it, for errors Hydra raises on it.
SEARCH_SPACE_EDITS = ("the search space is a mapping of config keys to sweep expressions: "
                      "hydra.sweeper.params.KEY=SPEC sets one, ~hydra.sweeper.params.KEY removes one, "
                      "hydra.sweeper.params={KEY: SPEC, ...} replaces all, ~hydra.sweeper.params removes all")
# Hydra's refusal of a sweep over one of its own settings; group 1 is the override as given.
HYDRA_SWEEP = re.compile(r"Sweeping over Hydra's configuration is not supported\s*:\s*'(.*)'")

# `noise=<number or numeric sweep>` sets the level; `noise=<name>` still selects the noise kind.
SHORTHANDS = {"noise": "noise.level"}
# conf/config.yaml's run and sweep directories end in `${lvsweep.pid:}`, the id of the process.
PID_RESOLVER = "lvsweep.pid"


def register_resolvers() -> None:
    """The resolvers conf/config.yaml's paths use, registered before Hydra composes it. Run and
    sweep directories are named by the time to the microsecond and the process id, so commands
    started in the same second in one directory never write into one directory (Hydra's own
    `${now:}` alone names them to the second). Cached like `${now:}`: the jobs of a sweep, which
    launchers resolve in worker processes from the sweep's config, keep the sweep's directory."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(PID_RESOLVER):
        OmegaConf.register_new_resolver(PID_RESOLVER, os.getpid, use_cache=True)


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, (RangeSweep, IntervalSweep)):
        return True
    if isinstance(value, ChoiceSweep):
        return all(_is_numeric(v) for v in value.list)
    return False


def expand_shorthands(args: Sequence[str]) -> list[str]:
    parser = OverridesParser.create()
    out = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        if sep and key in SHORTHANDS:
            try:
                value = parser.parse_override(arg).value()
            except OverrideParseException:
                value = None
            numeric = _is_numeric(value)
            if isinstance(value, ChoiceSweep) and not numeric and any(_is_numeric(v) for v in value.list):
                raise LvsweepError(key, f"a sweep takes levels (numbers, which set {SHORTHANDS[key]}) or "
                                        f"kinds (names of the {key} group), not both; got {arg[len(key) + 1:]}")
            if numeric:
                arg = SHORTHANDS[key] + arg[len(key):]
        out.append(arg)
    return out


def _options(options: Sequence[str] | None) -> str:
    return ", ".join(o for o in (options or []) if not o.startswith("base_")) or "(none)"


def one_line(exc: BaseException) -> str:
    """A user-facing one-line description of a configuration or input error."""
    inner: BaseException | None = exc
    while inner is not None:  # Hydra wraps an error raised while it instantiates a plugin
        if isinstance(inner, LvsweepError):
            return str(inner)
        inner = inner.__cause__
    swept = HYDRA_SWEEP.search(str(exc))
    if swept:
        return hydra_sweep_line(swept.group(1))
    if isinstance(exc, MissingConfigException):
        group, _, name = (exc.missing_cfg_file or "").rpartition("/")
        return f"{group or 'config'}: unknown option '{name}'; allowed: {_options(exc.options)}"
    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else exc
    if isinstance(cause, OmegaConfBaseException):
        return omegaconf_line(cause)
    return " ".join(str(exc).split())


def omegaconf_line(error: OmegaConfBaseException) -> str:
    """OmegaConf's first line names its schema classes ("Key 'x' not in 'TrainerConfig'"); an
    unknown key is said in the user's terms instead, with the nearest known key."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = getattr(error, "full_key", None) or "config"
    parent = getattr(error, "parent_node", None)
    if key == SEARCH_SPACE or key.startswith(f"{SEARCH_SPACE}."):
        return search_space_line(key, error)
    if "does not support deletion" in str(error):
        return f"{key}: cannot be removed, only set to another value" + (
            " (null where the setting allows it)" if key.startswith(f"{SWEEPER}.") else "")
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) and parent is not None and hasattr(parent, "keys"):
        from lvsweep.config.keys import unknown_key_problem

        return f"{key}: {unknown_key_problem(key, [str(k) for k in parent.keys() if k != 'hydra' and not str(k).startswith('_')])}"
    msg = " ".join(str(error).splitlines()[0].split())
    return f"{key}: {INTERNAL_CLASS.sub('the config', msg)}"


def search_space_line(key: str, error: OmegaConfBaseException) -> str:
    """An error Hydra raised on the search space, said with what the search space may be: the
    generic unknown-key hint would offer `hydra.sweeper.params.trainer.model.lr` for a new
    `trainer.epochs`, the type error names the schema's type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    first = " ".join(str(error).splitlines()[0].split())
    if "does not support deletion" in first:
        problem = "cannot be removed this way"
    elif "'None'" in first:  # Hydra's basic sweeper: its params are strings, a removed one is null
        return (f"{key}: the basic sweeper's params cannot be removed one at a time; "
                f"replace all with hydra.sweeper.params={{KEY: SPEC, ...}}")
    elif isinstance(error, (ConfigKeyError, ConfigAttributeError)):
        problem = "cannot be set this way"
    else:
        problem = INTERNAL_CLASS.sub("the config", first).replace("Dict[str, Any]", "a mapping")
    return f"{key}: {problem}; {SEARCH_SPACE_EDITS}"


def hydra_sweep_line(line: str) -> str:
    """Hydra refuses a sweep as the value of any of its own settings: say which one, and how the
    search space takes a sweep."""
    key = line.partition("=")[0].lstrip("~+")
    if key == SEARCH_SPACE or key.startswith(f"{SEARCH_SPACE}."):
        return f"{key}: cannot take '{line.partition('=')[2]}' here; {SEARCH_SPACE_EDITS}"
    where = " (a sweep goes in the search space: hydra.sweeper.params, or as an override of the task)" \
        if key.startswith(f"{SWEEPER}.") else ""
    return f"{key}: Hydra's own settings take one value, not a sweep{where}"


def close_open_sweep(status: str, error: BaseException | None = None) -> None:
    """A multirun stopped before Hydra's end-of-sweep hook: close its parent run, with `error` as
    its reason (the `lvsweep.error` tag), and the runs of jobs whose processes are gone, instead of
    leaving them RUNNING forever."""
    from lvsweep.tracking import closing
    from lvsweep.tracking.sweeps import ACTIVE

    try:
        closing.settle()  # earlier jobs' runs, whose figures the workers were still drawing
    except BaseException:  # a second stop while it waits: those runs are closed KILLED, the sweep goes on closing
        pass
    if ACTIVE:
        # A job of this very process that a signal caught before it could close its run stopped for
        # the same reason as the sweep; a job whose process is gone is lost.
        ACTIVE[0].close_lost(status, all_jobs_returned=False,
                             own_reason=str(error) if status == "KILLED" and error is not None else None)
        ACTIVE[0].parent.finish(error=error, status=status)
        ACTIVE.clear()


def wants_help(args: Sequence[str]) -> bool:
    """`--help`/`-h` get lvsweep's own page; `--hydra-help` still reaches Hydra."""
    return any(a in ("--help", "-h") for a in args)


def main() -> None:
    """The entry point. SIGTERM (a SLURM time limit or preemption, a container stop, `kill`) is
    handled from the first moment like Ctrl-C: runs are closed KILLED and the exit status says
    which signal it was (143, or 130 for Ctrl-C), with one line on stderr instead of a traceback
    even when it lands before the task began (during the imports)."""
    if sys.argv[1:] in (["--version"], ["-V"]):
        from lvsweep import __version__

        print(f"lvsweep {__version__}")
        return
    if wants_help(sys.argv[1:]):
        from lvsweep.help import help_text

        print(help_text())
        return
    from lvsweep import interrupts
    from lvsweep.tracking.provenance import mark_command

    interrupts.install()
    mark_command()  # for every run of this command, in whatever worker or scheduler job it opens
    try:
        run_command()
    except KeyboardInterrupt as exc:  # outside the task: nothing of ours is open
        interrupts.note(exc)
        print(f"lvsweep: {interrupts.stop_reason()}", file=sys.stderr)
        sys.exit(interrupts.exit_status())


def command_line() -> None:
    """The process's entry (`python -m lvsweep`, the `lvsweep` script): `main`, and the process
    ended without the interpreter's teardown once its exit handlers ran (`lvsweep.exiting`)."""
    from lvsweep.exiting import run_to_exit

    run_to_exit(main)


def run_command() -> None:
    """The command itself: Hydra's task, with every way it can end turned into an exit status,
    and a sweep that ends early closed in the store."""
    from lvsweep import interrupts

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    from hydra_plugins.lvsweep_optuna_sweeper._edits import search_space_edits

    try:
        sys.argv = [sys.argv[0], *search_space_edits(expand_shorthands(sys.argv[1:]))]
    except LvsweepError as exc:  # before anything is recorded
        exit_with_error(str(exc))
    register_resolvers()
    from lvsweep.app import task  # heavy imports after argument handling
    from lvsweep.tracking.sweeps import ACTIVE, FAILED_JOBS, SweepAborted

    try:
        task()
    except (LvsweepError, HydraException, OmegaConfBaseException) as exc:
        line = one_line(exc)
        close_open_sweep("FAILED", RuntimeError(line))  # the parent says why, as a job's run does
        exit_with_error(line)
    except SweepAborted as exc:  # nothing was opened yet
        exit_with_error(one_line(exc.error))
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupts.note(exc)
        stopped = isinstance(exc, KeyboardInterrupt) or interrupts.terminated()
        if not stopped and exc.code in (0, None):
            raise
        close_open_sweep("KILLED", interrupts.stop_exception() if stopped
                         else RuntimeError(f"the sweep exited with status {exc.code}"))
        if not stopped:
            raise
        print(f"lvsweep: {interrupts.stop_reason()}", file=sys.stderr)
        sys.exit(interrupts.exit_status())
    except Exception as exc:  # the launcher itself failed (a worker process was killed, ...)
        if isinstance(exc, OSError) and exc.filename is not None:  # the outputs' folder cannot be made
            field = "hydra.sweep.dir" if ACTIVE else "hydra.run.dir"
            line = (f"{field}: cannot write {exc.filename} ({exc.strerror}), where this command keeps its "
                    "outputs; move what is in the way, free space, or set it to another folder")
            close_open_sweep("FAILED", RuntimeError(line))
            exit_with_error(line)
        if not ACTIVE:
            raise
        reason = f"the launcher stopped: {type(exc).__name__}: {one_line(exc)}"
        close_open_sweep("FAILED", RuntimeError(reason))
        exit_with_error(f"sweep: {reason}", status=1)
    if FAILED_JOBS:
        print(f"lvsweep: {len(FAILED_JOBS)} job(s) failed: {', '.join(FAILED_JOBS)}", file=sys.stderr)
        sys.exit(1)
