"""The report's header: which code, command and day a sweep's numbers come from, read from the tags
the sweep's parent run was recorded with (see `lvsweep.tracking.provenance`), so that a report
read on its own, away from the store, still says what made it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from lvsweep.tracking.provenance import COMMAND_TAG, COMMIT_TAG, DIFF_FILE, DIRTY_TAG, VERSION_TAG, origin

NOT_RECORDED = "not recorded"


def started(run: Any) -> str:
    """The run's start, in UTC to the minute."""
    return datetime.fromtimestamp(run.info.start_time / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def commit_text(tags: dict[str, str]) -> str:
    """The full commit, with a word where the tree had uncommitted changes or was not a checkout."""
    commit = tags.get(COMMIT_TAG)
    if commit is None:
        return "none (an installed lvsweep, not a git checkout)" if VERSION_TAG in tags else NOT_RECORDED
    dirty = f" with uncommitted changes (the parent run's {DIFF_FILE})" if tags.get(DIRTY_TAG) == "true" else ""
    return commit + dirty


def header_rows(parent: Any, runs: Sequence[Any]) -> list[tuple[str, str]]:
    """(label, value) pairs shown above the table: the parent run, the lvsweep version and commit,
    the command, the start, and the other code some child runs were recorded with, if any (a
    sweep resumed after a checkout)."""
    tags = parent.data.tags
    rows = [("sweep parent run", parent.info.run_id),
            ("lvsweep version", tags.get(VERSION_TAG, NOT_RECORDED)),
            ("git commit", commit_text(tags)),
            ("command", tags.get(COMMAND_TAG, NOT_RECORDED)),
            ("started", started(parent))]
    others = sorted({origin(r.data.tags) for r in runs} - {origin(tags)})
    if others:
        rows.append(("some runs recorded with", "; ".join(others)))
    return rows
