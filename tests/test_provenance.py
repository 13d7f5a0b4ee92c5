"""Every run says where it came from, and `python -m lvsweep.replay` re-runs it and checks it.

Three recorded commands (a single run, a 2-job sweep, a 2-trial study) are shared by every test
here: their runs are read for provenance, then replayed, some after an edit made on purpose (a
metric changed in the store, a config.yaml edited, a commit that is not this one), which a replay
must name."""
from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from helpers.cli import error_line, run_cli
from helpers.overrides import QUICK_SWEEP
from helpers.store import all_runs, child_runs, client_for, sweep_parents

from lvsweep import __version__
from lvsweep.tracking import provenance
from lvsweep.tracking.replay import main as replay_main

NO_MODEL = [*QUICK_SWEEP, "analysis.log_model=false"]
CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """One directory whose store holds a single run, a sweep and a study, as a user records them."""
    cwd = tmp_path_factory.mktemp("recorded")
    for args in ([*NO_MODEL, "tracking.run_name=single"],
                 ["-m", *NO_MODEL, "noise.level=0,1"],
                 ["-m", "search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.study_name=s", *NO_MODEL]):
        proc = run_cli(cwd, *args)
        assert proc.returncode == 0, proc.stderr
    return cwd


def runs_by_kind(cwd: Path) -> dict[str, list]:
    parents = sweep_parents(cwd)
    study = [p for p in parents if "search=optuna" in p.info.run_name and provenance.REPLAY_TAG not in p.data.tags]
    sweep = [p for p in parents if "noise.level" in p.info.run_name and provenance.REPLAY_TAG not in p.data.tags]
    return {"single": all_runs(cwd, "tags.`mlflow.runName` = 'single'"), "sweep": sweep,
            "sweep child": child_runs(cwd, sweep[0].info.run_id), "study": study,
            "study trial": child_runs(cwd, study[0].info.run_id)}


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=True).stdout


def test_every_kind_of_run_carries_its_version_commit_command_and_environment(recorded):
    client = client_for(recorded)
    kinds = runs_by_kind(recorded)
    assert [len(kinds[k]) for k in kinds] == [1, 1, 2, 1, 2]
    commit = git("rev-parse", "HEAD").strip()
    dirty = bool(git("diff", "HEAD"))
    for kind, runs in kinds.items():
        for run in runs:
            tags = run.data.tags
            assert tags[provenance.VERSION_TAG] == __version__, kind
            assert tags[provenance.COMMIT_TAG] == commit, kind
            assert tags[provenance.DIRTY_TAG] == str(dirty).lower(), kind
            assert tags[provenance.SOURCE_NAME_TAG] == "python -m lvsweep", kind
            assert tags["mlflow.user"], kind
            # the command the user typed, also in a sweep's jobs and a study's trials
            assert tags[provenance.COMMAND_TAG].startswith("python -m lvsweep "), kind
            assert ("noise.level=0,1" in tags[provenance.COMMAND_TAG]) == kind.startswith("sweep"), kind
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert provenance.ENVIRONMENT_FILE in artifacts, kind
            assert (provenance.DIFF_FILE in artifacts) == dirty, kind
            env = json.loads(Path(client.download_artifacts(run.info.run_id, provenance.ENVIRONMENT_FILE,
                                                            str(recorded / "env" / run.info.run_id))).read_text())
            assert env["python"] == platform.python_version() and env["lvsweep"] == __version__
            assert env["packages"]["optuna"] and env["packages"]["mlflow"] and env["packages"]["torch"]
            assert any(lib["user_api"] == "blas" and lib.get("architecture") for lib in env["blas"].values()), env["blas"]
            if kind in ("single", "sweep child", "study trial"):  # a job that trained: torch was loaded
                assert env["torch"]["threads"] >= 1 and env["torch"]["cpu_capability"], env["torch"]


def test_a_wheel_install_records_its_version_alone(tmp_path, monkeypatch):
    """Outside a git checkout there is no commit to record, and none is made up."""
    monkeypatch.setattr(provenance, "source_root", lambda: tmp_path)
    provenance.source_state.cache_clear()
    try:
        tags = provenance.run_tags()
    finally:
        provenance.source_state.cache_clear()
    assert tags[provenance.VERSION_TAG] == __version__
    assert provenance.COMMIT_TAG not in tags and provenance.DIRTY_TAG not in tags


def test_environments_differ_by_what_sets_the_numbers():
    """A replay under other threads or another BLAS kernel is judged within a tolerance, and says
    which leaf differs; another host name or CPU count alone does not make bits differ."""
    here = provenance.environment()
    assert provenance.numerically_same(here, json.loads(json.dumps(here)))
    other = json.loads(json.dumps(here))
    other["cpu_count"], other["platform"] = 64, "elsewhere"
    assert provenance.numerically_same(here, other)
    (name, lib), *_ = here["blas"].items()
    other["blas"][name] = {**lib, "num_threads": lib["num_threads"] + 1}
    assert not provenance.numerically_same(here, other)
    assert f"blas.{name}.num_threads: {lib['num_threads']} → {lib['num_threads'] + 1}" in \
        provenance.environment_differences(here, other)


def test_a_single_run_replays_bit_for_bit(recorded):
    (single,) = runs_by_kind(recorded)["single"]
    proc = run_cli(recorded, single.info.run_id, module="lvsweep.replay")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tolerance: bitwise" in proc.stdout and "reproduces" in proc.stdout
    (replay,) = all_runs(recorded, f"tags.`{provenance.REPLAY_TAG}` = '{single.info.run_id}'")
    assert replay.info.experiment_id == single.info.experiment_id and replay.info.run_name == "replay of single"
    assert replay.data.metrics == single.data.metrics
    # the replay ran the recorded config: the same params but where it was recorded
    same = {k: v for k, v in single.data.params.items() if not k.startswith("tracking.")}
    assert {k: v for k, v in replay.data.params.items() if not k.startswith("tracking.")} == same


def test_a_study_trial_reproduces_and_a_changed_metric_is_named(recorded):
    client = client_for(recorded)
    (study,) = runs_by_kind(recorded)["study"]
    first, second = runs_by_kind(recorded)["study trial"]
    client.log_metric(second.info.run_id, "val/loss", second.data.metrics["val/loss"] * 1.01, step=10**6)
    proc = run_cli(recorded, "--all", study.info.run_id, module="lvsweep.replay")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "replayed 2 of 2 runs: 1 reproduce, 1 do not" in proc.stdout
    complaint = [line for line in proc.stderr.splitlines() if "does not reproduce" in line]
    assert len(complaint) == 1 and second.info.run_name in complaint[0] and "val/loss" in complaint[0], proc.stderr
    assert first.info.run_name not in complaint[0]
    replays = child_runs(recorded, [p for p in sweep_parents(recorded)
                                    if p.data.tags.get(provenance.REPLAY_TAG) == study.info.run_id][0].info.run_id)
    assert sorted(r.data.tags[provenance.REPLAY_TAG] for r in replays) == sorted([first.info.run_id,
                                                                                  second.info.run_id])


def test_a_sweep_child_reproduces_and_an_edited_config_or_another_commit_is_named(recorded, tmp_path):
    client = client_for(recorded)
    (sweep,) = runs_by_kind(recorded)["sweep"]
    first, second = runs_by_kind(recorded)["sweep child"]
    client.set_tag(first.info.run_id, provenance.COMMIT_TAG, "0" * 40)  # as if recorded at another commit
    config = Path(client.download_artifacts(second.info.run_id, "config.yaml", str(tmp_path)))
    edited = yaml.safe_load(config.read_text())
    edited["seed"] = edited["seed"] + 1
    config.write_text(yaml.safe_dump(edited))
    client.log_artifact(second.info.run_id, str(config))
    proc = run_cli(recorded, "--all", sweep.info.run_id, module="lvsweep.replay")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    tables = proc.stdout.split("replay of run ")
    (mine,) = [t for t in tables if t.startswith(first.info.run_id)]
    assert f"commit: recorded at {'0' * 40}, replayed at {git('rev-parse', 'HEAD').strip()}" in mine
    assert "tolerance: relative" in mine and "reproduces" in mine
    (edit,) = [t for t in tables if t.startswith(second.info.run_id)]
    assert "config.yaml was edited after the run: seed: logged '0', config.yaml '1'" in edit
    complaint = [line for line in proc.stderr.splitlines() if "does not reproduce" in line]
    assert len(complaint) == 1 and "config seed" in complaint[0], proc.stderr


def test_a_run_that_cannot_be_replayed_is_one_line_and_exit_2(recorded, tmp_path, capsys, monkeypatch):
    """What can refuse a replay refuses it before anything runs, naming the field."""
    shutil.copytree(recorded / "mlruns", tmp_path / "mlruns")
    client = client_for(tmp_path)
    experiment = client.get_experiment_by_name("lvsweep").experiment_id
    bare = client.create_run(experiment, run_name="no config")
    client.set_terminated(bare.info.run_id, "FINISHED")
    failed = client.create_run(experiment, run_name="broke")
    client.set_tag(failed.info.run_id, "lvsweep.error", "lvsweep: error: system: blew up")
    client.set_terminated(failed.info.run_id, "FAILED")
    data = tmp_path / "obs.csv"
    data.write_text("t,prey,predator\n0,1,1\n")
    observed = client.create_run(experiment, run_name="observed", tags={
        provenance.DATA_FILE_TAG: str(data), provenance.DATA_SHA_TAG: provenance.sha256(data)})
    (single,) = runs_by_kind(recorded)["single"]
    client.log_artifact(observed.info.run_id, client.download_artifacts(single.info.run_id, "config.yaml",
                                                                       str(tmp_path / "cfg")))
    client.set_terminated(observed.info.run_id, "FINISHED")
    data.write_text("t,prey,predator\n0,1,2\n")
    uri = ["--tracking-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db"]
    rows = [([bare.info.run_id], "RUN_ID: ", "has no config.yaml artifact"),
            ([failed.info.run_id], "RUN_ID: ", "is FAILED: lvsweep: error: system: blew up"),
            (["0123"], "RUN_ID: ", "no run '0123' in this store"),
            ([observed.info.run_id], "data.path: ", "which has changed since"),
            (["--all", single.info.run_id], "--all: ", "has no child runs"),
            ([single.info.run_id, "--rtol", "-1"], "--rtol: ", "must be a finite number >= 0")]
    capsys.readouterr()  # the downloads above
    monkeypatch.delenv(provenance.COMMAND_ENV, raising=False)  # the entry function marks its command here
    for args, field, words in rows:
        with pytest.raises(SystemExit) as stop:
            replay_main([*args, *uri])
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and len(err.splitlines()) == 1, (args, err)
        assert err.startswith(f"lvsweep: error: {field}") and words in err, (args, err)
    data.unlink()
    proc = run_cli(tmp_path, observed.info.run_id, module="lvsweep.replay")  # the real command, once
    assert "which is gone" in error_line(proc)
    assert len(all_runs(tmp_path)) == len(all_runs(recorded)) + 3  # nothing was run


@pytest.mark.slow
def test_a_run_of_observed_data_replays_from_anywhere_and_refuses_a_changed_file(tmp_path):
    """The data file is found where the run read it (a relative data.path, replayed from another
    directory), and checked against the checksum recorded when the run started."""
    from test_estimation_cli import FAST_FIT, lv_csv

    cwd, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    cwd.mkdir(), elsewhere.mkdir()
    csv = lv_csv(cwd / "obs.csv")
    proc = run_cli(cwd, "data=csv", "data.path=obs.csv", "data.time=time", "data.states=[rabbits,foxes]", *QUICK_SWEEP, *FAST_FIT,
                   "analysis.figures=false", "tracking.run_name=observed")
    assert proc.returncode == 0, proc.stderr
    (run,) = all_runs(cwd)
    assert run.data.tags[provenance.DATA_FILE_TAG] == str(csv)
    assert run.data.tags[provenance.DATA_SHA_TAG] == provenance.sha256(csv)
    uri = f"sqlite:///{cwd}/mlruns/mlflow.db"
    proc = run_cli(elsewhere, run.info.run_id, "--tracking-uri", uri, module="lvsweep.replay")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "estimate/seconds" in proc.stdout and "not compared (wall time)" in proc.stdout
    assert "0 differ: reproduces" in proc.stdout
    csv.write_text(csv.read_text().replace("\n1,", "\n1.0,", 1))
    proc = run_cli(elsewhere, run.info.run_id, "--tracking-uri", uri, module="lvsweep.replay")
    assert "which has changed since" in error_line(proc)
