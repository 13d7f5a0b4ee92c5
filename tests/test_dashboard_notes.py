"""optuna-dashboard's notes on the storages the sweeper opens: in memory and a SQLite file, several
workers at once, a storage that refuses the write, and optuna-dashboard not installed.

The notes a real sweep writes through the CLI are checked in tests/test_optuna_sweeper.py; here
the sweeper's own `_tell` and `ParentRun`-free note writers run on real storages, in this process.
"""
from __future__ import annotations

import sqlite3
import sys
import threading
from pathlib import Path
from typing import Optional

import optuna
import pytest
from optuna.trial import TrialState

from hydra_plugins.lvsweep_optuna_sweeper import _notes
from hydra_plugins.lvsweep_optuna_sweeper._notes import NOTE_CHUNK, write_study_note
from hydra_plugins.lvsweep_optuna_sweeper._storage import FaultSettings, open_storage
from hydra_plugins.lvsweep_optuna_sweeper._study import Outcome, StudySweeper, compact
from helpers.store import dashboard_notes

URL = "http://127.0.0.1:5000/#/experiments/1/runs/{}?workflowType=machine_learning"


def sweeper(storage: Optional[str]) -> StudySweeper:
    return StudySweeper(direction="maximize", storage=storage, study_name="notes", n_trials=1, n_jobs=1,
                        sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 0}, params={})


def linked_trial(study: optuna.Study, run_id: str) -> optuna.Trial:
    """A trial asked at a point and linked to a run, as the sweeper leaves it before it tells it."""
    trial = study.ask()
    trial.suggest_float("model.lr", 1e-5, 1e-1, log=True)
    trial.suggest_categorical("model.kind", ["my_model"])
    trial.set_user_attr("mlflow_run_id", run_id)
    trial.set_user_attr("mlflow_url", URL.format(run_id))
    return trial


def sqlite_study(path: Path) -> optuna.Study:
    return optuna.create_study(storage=open_storage(f"sqlite:///{path}", FaultSettings()), study_name="notes",
                               direction="maximize", load_if_exists=True)


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_told_trials_and_the_ended_study_carry_their_notes(where, tmp_path, capsys):
    study = optuna.create_study(direction="maximize") if where == "memory" else sqlite_study(tmp_path / "o.db")
    told = sweeper(None if where == "memory" else f"sqlite:///{tmp_path / 'o.db'}")
    told.objectives = ["align/anticorrelation"]
    complete, failed = linked_trial(study, "a" * 32), linked_trial(study, "b" * 32)
    told._tell(study, complete, Outcome(TrialState.COMPLETE, [0.25]), None)
    told._tell(study, failed, Outcome(TrialState.FAIL, reason="ValueError: x_1 is *not* <finite>"), None)
    write_study_note(study, "optuna study 'notes': 2 trial(s)\n  best align/anticorrelation = 0.25 (trial 0)",
                     URL.format("p" * 32))

    study_note, trial_notes = dashboard_notes(study)
    assert trial_notes[0] == (f"MLflow: [run aaaaaaaa]({URL.format('a' * 32)})\n\nmodel.lr={compact(complete.params['model.lr'])}"
                              ", model.kind=my\\_model\n\n**outcome:** align/anticorrelation 0.25\n")
    assert trial_notes[1].endswith("**outcome:** FAIL (ValueError: x\\_1 is \\*not\\* \\<finite\\>)\n")
    assert study_note == (f"[MLflow parent run of the sweep]({URL.format('p' * 32)})\n\n"
                          "optuna study 'notes': 2 trial(s)\n\n- best align/anticorrelation = 0.25 (trial 0)\n")
    assert "not written" not in capsys.readouterr().err


def test_a_note_the_storage_refuses_is_one_line_and_the_trial_is_still_told(tmp_path, capsys):
    db = tmp_path / "o.db"
    study = sqlite_study(db)
    trial = linked_trial(study, "c" * 32)
    with sqlite3.connect(db) as con:  # the notes' table is gone: every note write fails in the database
        con.execute("DROP TABLE study_system_attributes")
    told = sweeper(f"sqlite:///{db}")
    told.objectives = ["align/anticorrelation"]
    told._tell(study, trial, Outcome(TrialState.COMPLETE, [0.5]), None)
    write_study_note(study, "optuna study 'notes': 1 trial(s)", None)

    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 0.5
    err = capsys.readouterr().err.splitlines()
    assert err == ["  optuna-dashboard note of trial 0 not written: StorageInternalError: no such table: "
                   "study_system_attributes",
                   "  optuna-dashboard note of study 'notes' not written: StorageInternalError: no such table: "
                   "study_system_attributes"]


def test_without_optuna_dashboard_nothing_is_written_and_it_is_said_once_at_debug_level(monkeypatch, capsys, caplog):
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # `import optuna_dashboard` raises ImportError
    monkeypatch.setattr(_notes, "_said_absent", False)
    study = optuna.create_study(direction="maximize")
    told = sweeper(None)
    told.objectives = ["align/anticorrelation"]
    with caplog.at_level("DEBUG", logger=_notes.__name__):
        for run_id in ("d" * 32, "e" * 32):
            told._tell(study, linked_trial(study, run_id), Outcome(TrialState.COMPLETE, [1.0]), None)
        write_study_note(study, "optuna study 'notes': 2 trial(s)", None)

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert not [k for k in study._storage.get_study_system_attrs(study._study_id) if k.startswith("dashboard:")]
    assert [r.levelname for r in caplog.records if r.name == _notes.__name__] == ["DEBUG"]
    assert capsys.readouterr().err == ""


def test_workers_of_one_study_write_their_notes_at_once_without_failing_each_other(tmp_path, capsys):
    """Four workers, each with its own connection to one SQLite study, tell three trials each and
    then write the study's note, all at once; each study note is longer than one chunk."""
    db = tmp_path / "o.db"
    sqlite_study(db)
    start = threading.Barrier(4)
    summaries = {w: "optuna study 'notes': 12 trial(s)\n" + "\n".join(f"  trial {i}: worker {w}" for i in range(200))
                 for w in range(4)}

    def worker(w: int) -> None:
        study = sqlite_study(db)
        told = sweeper(f"sqlite:///{db}")
        told.objectives = ["align/anticorrelation"]
        start.wait()
        for i in range(3):
            told._tell(study, linked_trial(study, f"{w}{i}".ljust(32, "f")), Outcome(TrialState.COMPLETE, [w + i / 10]), None)
        write_study_note(study, summaries[w], URL.format(f"parent{w}"))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    study = sqlite_study(db)
    study_note, trial_notes = dashboard_notes(study)
    assert "not written" not in capsys.readouterr().err
    assert len(trial_notes) == 12 and all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert trial_notes[t.number].startswith(f"MLflow: [run {t.user_attrs['mlflow_run_id'][:8]}]"
                                                f"({t.user_attrs['mlflow_url']})\n")
    from optuna_dashboard._note import SYSTEM_ATTR_MAX_LENGTH

    assert NOTE_CHUNK == SYSTEM_ATTR_MAX_LENGTH  # one chunk: one key, written whole
    notes = {w: _notes.study_note(summaries[w], URL.format(f"parent{w}")) for w in range(4)}
    assert study_note in notes.values()  # one worker's note, whole, not pieces of several
    assert all(len(n) <= NOTE_CHUNK and "more line(s)" in n for n in notes.values())
