"""What a job costs was cut (figures drawn by worker processes on one tight box and one drawing,
one Lightning epoch for the whole training, the model logged without MLflow's scan of the installed
packages; `docs/performance.md`) without changing what a run records.

The reference is the job as it was before: the real CLI, in a subprocess of its own, with those
three mechanisms put back as they were (figures drawn in the job with `savefig(bbox_inches="tight")`,
a Lightning epoch per step, MLflow's requirement check on). Everything else is the same code, so
the comparison holds whatever else changes in the project: the same seed and config must record the
same metric histories, bit for bit, the same params and artifact paths, the same bytes in every
artifact that is not a picture, and pictures of the same size (a legend cut off would shrink one).

The workers themselves: a figure that cannot be drawn fails its run, a stop signal while they draw
still closes the run KILLED, and none is left behind, running or as a zombie.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.cli import HANG_S, cli_env, run_cli
from helpers.overrides import QUICK
from helpers.store import all_runs, client_for

FIGURES = ["trainer.epochs=40", "system.n_steps=300", "analysis.perturb.k=5", "analysis.figures=true"]
CASES = {
    "sweep": ["-m", "replicates=1,2", *FIGURES, "analysis.prc=true"],  # workers reused; PRC figure; replicates
    "heads": [*FIGURES, "model=multihead", "model.dropout=0.2"],  # per-head figure; dropout draws
}
COMPARED_BYTES = (".csv", ".yaml", ".txt", ".json")  # and not MLmodel, which holds the run's ids and time
WORKER_MARK = "from lvsweep.analysis.plotting import serve"

# The job before the change, as a prologue to the ordinary entry point. The Trainer and the save
# are the code that was replaced, verbatim.
REFERENCE = r'''
import math, sys
sys.argv[0] = "lvsweep"

import lvsweep.analysis.plotting as plotting
import lvsweep.analysis.figures as figures
plotting.start_workers = lambda: []  # every figure drawn in the job


def subplots(*shape, figsize, **kwargs):
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*shape, **kwargs)


def save(fig, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=plotting.DPI, bbox_inches="tight")
    return path


figures.subplots, figures.save = subplots, save

import pytorch_lightning as pl
import torch
import lvsweep.training.trainer as trainer


def make_trainer(trainer_cfg, callbacks):
    from lightning_fabric.plugins.environments import LightningEnvironment
    from lvsweep.interrupts import keep_sigterm
    steps = math.ceil(trainer_cfg.epochs / trainer_cfg.log_every)
    t = pl.Trainer(
        accelerator=str(getattr(trainer_cfg, "accelerator", "cpu")),
        devices=int(getattr(trainer_cfg, "devices", 1)),
        max_epochs=steps,
        check_val_every_n_epoch=max(1, round(trainer_cfg.val_every / trainer_cfg.log_every)),
        callbacks=list(callbacks), logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, deterministic=False,
        plugins=[LightningEnvironment()])
    keep_sigterm(t)
    return t


def fit(model, datamodule, trainer_cfg, callbacks):
    trainer.quiet_lightning()
    torch.set_num_threads(trainer_cfg.threads)
    make_trainer(trainer_cfg, callbacks).fit(model, datamodule=datamodule)


trainer.make_trainer, trainer.fit = make_trainer, fit

import mlflow.pyfunc
import mlflow.pytorch
from mlflow.utils import environment
checks = (environment.warn_dependency_requirement_mismatches, mlflow.pyfunc.warn_dependency_requirement_mismatches)
log_model = mlflow.pytorch.log_model


def checked(*args, **kwargs):  # MLflow's own requirement checks, whatever lvsweep set aside
    environment.warn_dependency_requirement_mismatches, mlflow.pyfunc.warn_dependency_requirement_mismatches = checks
    return log_model(*args, **kwargs)


mlflow.pytorch.log_model = checked

from lvsweep.cli import main
main()
'''


def reference_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", REFERENCE, *args], cwd=cwd, env=cli_env(), capture_output=True,
                          text=True, timeout=HANG_S)


def artifact_files(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_files(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def recorded(cwd: Path) -> dict[str, dict]:
    """Per run name: status, params, every metric's history, artifact paths, bytes and picture sizes."""
    from PIL import Image

    client = client_for(cwd)
    out = {}
    for run in all_runs(cwd):
        root = Path(client.download_artifacts(run.info.run_id, "", str(cwd / "dl" / run.info.run_id)))
        files = sorted(artifact_files(client, run.info.run_id))
        out[run.info.run_name] = {
            "status": run.info.status,
            "params": run.data.params,
            "metrics": {key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key),
                                                                  key=lambda m: (m.step, m.timestamp))]
                        for key in run.data.metrics},
            "files": files,
            "bytes": {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in files
                      if f.endswith(COMPARED_BYTES) and not f.startswith("environment")},
            "pictures": {f: Image.open(root / f).size for f in files if f.endswith(".png")},
        }
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_config_records_what_the_job_recorded_before(tmp_path, case):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    old = reference_cli(before, *CASES[case])
    assert old.returncode == 0, old.stderr[-3000:]
    new = run_cli(after, *CASES[case])
    assert new.returncode == 0, new.stderr[-3000:]
    was, now = recorded(before), recorded(after)
    assert sorted(now) == sorted(was) and len(now) == (3 if case == "sweep" else 1)
    for name, run in now.items():
        ref = was[name]
        assert run["status"] == ref["status"] == "FINISHED", name
        assert run["params"] == ref["params"], name
        assert run["metrics"] == ref["metrics"], name  # every value at every step, exactly
        assert run["files"] == ref["files"], name
        assert run["bytes"] == ref["bytes"], name
        assert run["pictures"].keys() == ref["pictures"].keys()
        for picture, (w, h) in run["pictures"].items():  # laid out at the file's resolution: a few pixels
            w0, h0 = ref["pictures"][picture]
            assert abs(w - w0) <= 0.02 * w0 + 3 and abs(h - h0) <= 0.02 * h0 + 3, (name, picture, (w, h), (w0, h0))
    jobs = [r for n, r in now.items() if not n.startswith("sweep")]
    assert all(any(f.startswith("figures/") for f in r["files"]) for r in jobs)
    if case == "sweep":
        assert any("figures/prc.png" in r["files"] for r in jobs)
    else:
        assert "figures/attention_heads.png" in now["run"]["files"]


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry.name)] = (int(fields[1]), fields[0], cmdline)
    return out


def workers_of(pid: int) -> set[int]:
    return {p for p, (ppid, _, cmd) in _processes().items() if ppid == pid and WORKER_MARK in cmd}


def left_behind(pids: set[int]) -> list[str]:
    """Those of `pids` still there, running or as zombies, a few seconds after their job ended."""
    deadline = time.monotonic() + 10
    while True:
        there = {p: _processes().get(p) for p in pids}
        there = {p: info for p, info in there.items() if info is not None and WORKER_MARK in info[2]}
        if not there or time.monotonic() > deadline:
            return [f"worker {p} state {info[1]}" for p, info in there.items()]
        time.sleep(0.2)


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    """The CLI as a terminal starts a command: its own process group, signals at their defaults."""
    def terminal() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "lvsweep", *args], cwd=cwd, env=cli_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=terminal)


def _wait_for(condition, proc: subprocess.Popen, what: str):
    deadline = time.monotonic() + HANG_S
    while not (found := condition()):
        assert proc.poll() is None, f"the CLI ended ({proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.01)
    return found


@pytest.mark.parametrize("signum, to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_stop_while_the_figures_are_drawn_closes_the_run_and_leaves_no_worker(tmp_path, signum, to_group):
    """SIGTERM to the job alone (a scheduler, `kill`), Ctrl-C to the whole terminal group (the
    workers too, which leave it to the job)."""
    proc = _start(tmp_path, *QUICK, "analysis.figures=true", "system.n_steps=3000")
    workers = _wait_for(lambda: workers_of(proc.pid), proc, "figure workers")
    _wait_for(lambda: any(tmp_path.glob("outputs/runs/*/*/figures/*.png")), proc, "a figure")
    if to_group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, err = proc.communicate(timeout=HANG_S)
    (run,) = all_runs(tmp_path)
    if proc.returncode == 0:  # everything was logged before the signal came: nothing to stop
        assert run.info.status == "FINISHED"
    else:
        assert proc.returncode == 128 + signum, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert run.info.status == "KILLED"
    assert not left_behind(workers)


def test_a_figure_that_cannot_be_drawn_fails_its_run_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "figures").write_text("in the way\n")  # the folder the figures go to cannot be made
    proc = _start(tmp_path, *QUICK, "analysis.figures=true", f"hydra.run.dir={run_dir}")
    workers = _wait_for(lambda: workers_of(proc.pid), proc, "figure workers")
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 2, err
    line = err.strip().splitlines()[-1]  # after Hydra's own "Error executing job" line, as without workers
    assert "Traceback" not in err and line.startswith("lvsweep: error: hydra.run.dir") and "figures" in line, err
    (run,) = all_runs(tmp_path)
    assert run.info.status == "FAILED" and "figures" in run.data.tags["lvsweep.error"]
    assert not left_behind(workers)


def niceness(pid: int) -> int | None:
    """The process's nice value (None once it is gone)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, pid)
    except OSError:
        return None


def test_a_sweep_keeps_its_workers_from_job_to_job_and_reaps_them(tmp_path):
    """The workers also run niced below the job: on a 2-core machine the job and two workers are
    three busy processes, and the job's imports and training come first."""
    from lvsweep.analysis.plotting import WORKER_NICENESS

    proc = _start(tmp_path, "-m", "noise=0,1,2", *QUICK, "analysis.figures=true")
    job_nice = niceness(proc.pid)
    seen: list[set[int]] = []
    nice: dict[int, int] = {}
    while proc.poll() is None:
        now = workers_of(proc.pid)
        if now and (not seen or now != seen[-1]):
            seen.append(now)
        # A worker nices itself as it starts: its last value counts.
        nice.update({p: n for p in now if (n := niceness(p)) is not None})
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert job_nice is not None and set(nice.values()) == {min(job_nice + WORKER_NICENESS, 19)}, (job_nice, nice)
    # The workers of the first job drew every job's figures (they end one by one as the sweep ends).
    everyone = set().union(*seen)
    assert seen and seen[0] == everyone and 1 <= len(everyone) <= 2, seen
    runs = all_runs(tmp_path)
    assert [r.info.status for r in runs] == ["FINISHED"] * 4
    assert not left_behind(everyone)


def test_the_model_is_logged_without_scanning_the_installed_packages(tmp_path):
    """In a fresh interpreter, as a job's first model: MLflow's map of installed packages is never
    built, and the requirements are the ones given."""
    code = r'''
import sys
from pathlib import Path
import numpy as np
import torch
from mlflow.tracking import MlflowClient
from mlflow.utils import requirements_utils
from lvsweep.models import LinearAttention
from lvsweep.tracking.runs import log_model
tmp = Path(sys.argv[1])
client = MlflowClient(tracking_uri=f"sqlite:///{tmp}/mlflow.db")
experiment = client.create_experiment("e", artifact_location=(tmp / "artifacts").as_uri())
run = client.create_run(experiment).info.run_id
log_model(client, run, LinearAttention(2), np.zeros((50, 2)))
print(requirements_utils._MODULES_TO_PACKAGES is None)
print(Path(client.download_artifacts(run, "model/requirements.txt", str(tmp))).read_text().split())
'''
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=cli_env(), capture_output=True, text=True,
                          timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scanned, requirements = proc.stdout.strip().splitlines()[-2:]
    import mlflow
    import torch

    assert scanned == "True"
    assert requirements == str([f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"])


def test_a_figure_worker_starts_without_scipy_hydra_or_torch():
    """A worker's start (the imports and the warm-up drawing it does while its job trains) loads
    matplotlib and the figure modules only: two workers start per job process, and every module
    more is paid twice, on the cores the job imports and trains on."""
    code = ("import sys\nfrom lvsweep.analysis.plotting import _warm_up\n_warm_up()\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'hydra', 'omegaconf', 'torch', 'mlflow'}))")
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=HANG_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("values", [[3.0, 1.0, 2.0], [1.0, 1.0, 1.0], [0.5], [2.0, 1.0, 2.0, 1.0, 0.0, 2.0],
                                    "random", "random ties"])
def test_the_figures_rank_scale_is_scipys_mean_rank(values):
    """The rank scatter's ranks, counted without SciPy, are `scipy.stats.rankdata`'s (ties share
    their mean rank), scaled to [0, 1]."""
    import numpy as np
    from scipy.stats import rankdata

    from lvsweep.analysis.figures import ranks

    rng = np.random.default_rng(3)
    v = {"random": rng.normal(size=1000), "random ties": rng.integers(0, 7, size=1000).astype(float)}.get(
        values, values) if isinstance(values, str) else np.asarray(values)
    expected = (rankdata(v) - 1) / max(len(v) - 1, 1)
    assert np.array_equal(ranks(v), expected)


def _children(cwd: Path) -> list:
    """A sweep's child runs, in the order their jobs started."""
    return sorted((r for r in all_runs(cwd) if "mlflow.parentRunId" in r.data.tags), key=lambda r: r.info.start_time)


def _figures(cwd: Path, run) -> set[str]:
    return {a.path for a in client_for(cwd).list_artifacts(run.info.run_id, "figures")}


def test_a_sweep_closes_each_run_once_its_figures_are_in_while_the_next_job_trains(tmp_path):
    """The first job's run is still open when the second job's starts (its figures were being
    drawn meanwhile), and closes FINISHED with every figure, as the last job's does at the end."""
    proc = run_cli(tmp_path, "-m", "noise=0,1", *QUICK, "analysis.figures=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = _children(tmp_path)
    assert first.info.end_time > second.info.start_time
    for run in (first, second):
        assert run.info.status == "FINISHED"
        assert {"figures/timeseries.png", "figures/attention_vs_sensitivity.png"} <= _figures(tmp_path, run)
        assert "environment.json" in {a.path for a in client_for(tmp_path).list_artifacts(run.info.run_id)}
    (parent,) = [r for r in all_runs(tmp_path) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.end_time >= second.info.end_time


def test_a_figure_that_fails_after_its_job_returned_fails_that_run_and_the_sweep_goes_on(tmp_path):
    sweep_dir = tmp_path / "sweep"
    (sweep_dir / "0").mkdir(parents=True)
    (sweep_dir / "0" / "figures").write_text("in the way\n")  # only the first job's figures cannot be written
    proc = run_cli(tmp_path, "-m", "noise=0,1", *QUICK, "analysis.figures=true", f"hydra.sweep.dir={sweep_dir}")
    assert proc.returncode == 1, proc.stderr[-3000:]
    first, second = _children(tmp_path)
    assert first.info.status == "FAILED" and "figures" in first.data.tags["lvsweep.error"]
    assert second.info.status == "FINISHED" and "figures/timeseries.png" in _figures(tmp_path, second)
    assert "Traceback" not in proc.stderr and f"job {first.info.run_id[:8]} failed:" in proc.stderr
    assert f"1 job(s) failed: {first.info.run_name}" in proc.stderr


def test_a_stop_during_the_next_job_still_logs_the_figures_of_the_one_before(tmp_path):
    """Ctrl-C while the second job trains (long): the first job's figures, drawn meanwhile, are
    logged and its run FINISHED; the second's run is KILLED; no worker is left."""
    proc = _start(tmp_path, "-m", "trainer.epochs=40,400000", *QUICK[1:], "analysis.figures=true")
    workers = _wait_for(lambda: workers_of(proc.pid), proc, "figure workers")
    _wait_for(lambda: len(_children(tmp_path)) == 2, proc, "the second job's run")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_S)
    assert proc.returncode == 130, err
    first, second = _children(tmp_path)
    assert first.info.status == "FINISHED" and first.info.end_time > second.info.start_time
    assert {"figures/timeseries.png", "figures/perturbation.png"} <= _figures(tmp_path, first)
    assert second.info.status == "KILLED"
    assert not left_behind(workers)
