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

# Schema class names (LvsweepConfig, TrainerConfig, ...) mean nothing to a user.
INTERNAL_CLASS = re.compile(r"'?\b[A-Z][A-Za-z]*Config\b'?")

# `noise=<number or numeric sweep>` sets the level; `noise=<name>` still selects the noise kind.
SHORTHANDS = {"noise": "noise.level"}


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
                numeric = _is_numeric(parser.parse_override(arg).value())
            except OverrideParseException:
                numeric = False
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
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) and parent is not None and hasattr(parent, "keys"):
        from lvsweep.config.keys import unknown_key_problem

        return f"{key}: {unknown_key_problem(key, [str(k) for k in parent.keys() if k != 'hydra' and not str(k).startswith('_')])}"
    msg = " ".join(str(error).splitlines()[0].split())
    return f"{key}: {INTERNAL_CLASS.sub('the config', msg)}"


def close_open_sweep(status: str, error: BaseException | None = None) -> None:
    """A multirun stopped before Hydra's end-of-sweep hook: close its parent run, and the runs of
    jobs whose processes are gone, instead of leaving them RUNNING forever."""
    from lvsweep.tracking.sweeps import ACTIVE

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

    interrupts.install()
    try:
        run_command()
    except KeyboardInterrupt as exc:  # outside the task: nothing of ours is open
        interrupts.note(exc)
        print(f"lvsweep: {interrupts.stop_reason()}", file=sys.stderr)
        sys.exit(interrupts.exit_status())


def run_command() -> None:
    """The command itself: Hydra's task, with every way it can end turned into an exit status,
    and a sweep that ends early closed in the store."""
    from lvsweep import interrupts

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    sys.argv = [sys.argv[0], *expand_shorthands(sys.argv[1:])]
    from lvsweep.app import task  # heavy imports after argument handling
    from lvsweep.tracking.sweeps import ACTIVE, FAILED_JOBS, SweepAborted

    try:
        task()
    except (LvsweepError, HydraException, OmegaConfBaseException) as exc:
        close_open_sweep("FAILED")
        exit_with_error(one_line(exc))
    except SweepAborted as exc:  # nothing was opened yet
        exit_with_error(one_line(exc.error))
    except (KeyboardInterrupt, SystemExit) as exc:
        interrupts.note(exc)
        stopped = isinstance(exc, KeyboardInterrupt) or interrupts.terminated()
        if not stopped and exc.code in (0, None):
            raise
        close_open_sweep("KILLED", interrupts.stop_exception() if stopped else None)
        if not stopped:
            raise
        print(f"lvsweep: {interrupts.stop_reason()}", file=sys.stderr)
        sys.exit(interrupts.exit_status())
    except Exception as exc:  # the launcher itself failed (a worker process was killed, ...)
        if not ACTIVE:
            raise
        reason = f"the launcher stopped: {type(exc).__name__}: {one_line(exc)}"
        close_open_sweep("FAILED", RuntimeError(reason))
        exit_with_error(f"sweep: {reason}", status=1)
    if FAILED_JOBS:
        print(f"lvsweep: {len(FAILED_JOBS)} job(s) failed: {', '.join(FAILED_JOBS)}", file=sys.stderr)
        sys.exit(1)
