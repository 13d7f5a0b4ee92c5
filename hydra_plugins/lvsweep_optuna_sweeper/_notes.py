"""optuna-dashboard's Markdown notes: each trial's says which MLflow run it is, at what point and how
it ended; the study's links the sweep's MLflow parent run and holds the study's summary.

optuna-dashboard is an optional extra (`dashboard`); without it no note is written. Its
`save_note` keeps a note in the study's system attributes, one key per chunk of the body, keyed
by the trial's id, so every storage the sweeper opens (a database, or memory) takes notes, and
workers sharing a study never write each other's trial notes: each trial's is written once, by
the worker that tells the trial. The study's note is rewritten by each worker as its sweep ends
(the last one's stays); a race of two workers on one key leaves one of them, never an error.
A note that cannot be written is one line on stderr: a note is never worth a trial.
"""
from __future__ import annotations

import logging
import re
import sys
from typing import Any, Callable, Optional

import optuna

from hydra_plugins.lvsweep_optuna_sweeper._study import compact
from hydra_plugins.lvsweep_optuna_sweeper._tracking import RUN_ID_ATTR, RUN_URL_ATTR
from lvsweep.tracking.runs import first_line

log = logging.getLogger(__name__)
NOTE_CHUNK = 2045  # optuna-dashboard's longest system attribute: a note this long is one key, written at once
MARKDOWN = re.compile(r"([\\`*_\[\]<>|~#])")  # what Markdown would read as markup in plain text
_said_absent = False  # the missing optuna-dashboard is logged once per process


def plain(text: str) -> str:
    """Text shown as it is: a reason or a param name with `_`, `*` or `<` is not Markdown markup."""
    return MARKDOWN.sub(r"\\\1", text)


def trial_note(trial: optuna.Trial, outcome: str) -> str:
    """The trial's note: a link to its MLflow run (when its job recorded one), its sampled values
    in a few characters each, and `outcome`, the result as the progress line says it."""
    attrs = trial.user_attrs
    run_id, url = attrs.get(RUN_ID_ATTR), attrs.get(RUN_URL_ATTR)
    run = f"[run {run_id[:8]}]({url})" if run_id and url else "no run recorded"
    values = ", ".join(f"{k}={compact(v)}" for k, v in trial.params.items()) or "no searched values"
    return f"MLflow: {run}\n\n{plain(values)}\n\n**outcome:** {plain(outcome)}\n"


def study_note(summary_text: str, parent_url: Optional[str]) -> str:
    """The study's note: a link to the sweep's MLflow parent run (when there is one), then the
    study's summary, its first line as a paragraph and each line under it as an item. A long
    summary (a wide Pareto front) loses its last items to stay one chunk: two workers ending at
    once then each write the whole note in one key, and the note is one of theirs, not a mix."""
    head, *lines = summary_text.splitlines() or [""]
    link = f"[MLflow parent run of the sweep]({parent_url})" if parent_url else "no MLflow parent run"
    top = f"{link}\n\n{plain(head)}\n\n"
    items = [f"- {plain(line.strip())}\n" for line in lines if line.strip()]
    kept = len(items)
    while kept and len(top) + sum(map(len, items[:kept])) + len(_more(len(items) - kept)) > NOTE_CHUNK:
        kept -= 1
    return (top + "".join(items[:kept]) + _more(len(items) - kept))[:NOTE_CHUNK]


def _more(dropped: int) -> str:
    return f"- … {dropped} more line(s): the sweep's closing lines have them all\n" if dropped else ""


def write_trial_note(trial: optuna.Trial, outcome: str) -> None:
    _write(trial, lambda: trial_note(trial, outcome), f"trial {trial.number}")


def write_study_note(study: optuna.Study, summary_text: str, parent_url: Optional[str]) -> None:
    _write(study, lambda: study_note(summary_text, parent_url), f"study '{study.study_name}'")


def _write(target: optuna.Study | optuna.Trial, body: Callable[[], str], what: str) -> None:
    save = _save_note()
    if save is None:
        return
    try:
        save(target, body())
    except Exception as exc:  # the storage refused (locked past its timeout, gone, read-only, ...)
        print(f"  optuna-dashboard note of {what} not written: {type(exc).__name__}: {first_line(exc)}",
              file=sys.stderr)


def _save_note() -> Optional[Callable[[Any, str], None]]:
    """optuna-dashboard's `save_note`, or None where it is not installed."""
    global _said_absent
    try:
        from optuna_dashboard import save_note
    except ImportError:
        if not _said_absent:
            log.debug("optuna-dashboard is not installed: no study or trial notes are written")
            _said_absent = True
        return None
    return save_note
