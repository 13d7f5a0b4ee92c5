"""One exception type for every problem a user can fix by changing input.

Anything raised as `LvsweepError` is reported as a single line naming the field at fault,
never as a traceback; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class LvsweepError(Exception):
    """A problem with the user's input or with what that input made the numerics do."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def require(ok: bool, field: str, problem: str) -> None:
    """Raise `LvsweepError(field, problem)` unless `ok`: one line per check in the validators."""
    if not ok:
        raise LvsweepError(field, problem)


def exit_with_error(message: str, status: int = 2) -> None:
    """Report a user error as one line on stderr and leave with a non-zero status."""
    import sys

    print(f"lvsweep: error: {message}", file=sys.stderr)
    raise SystemExit(status)
