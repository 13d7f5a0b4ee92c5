"""The launcher behind `hydra/launcher=slurm`: hydra-submitit-launcher's, with a sweep that outlives its jobs.

Upstream, the sweep waits for the jobs of an array in order and stops at the first one that
produced no result (cancelled, killed at a time limit, its node lost): the jobs after it are
never waited for and the sweep fails. Here every job is waited for; one that the scheduler ended
without a result counts as a failed job (NaN, as `lvsweep.app` returns for a failed job), its
run is closed from the accounting if the job could not close it, and the sweep goes on.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as UpstreamSlurmLauncher
from omegaconf import OmegaConf

EXECUTOR_SETTINGS = {"max_num_timeout"}  # settings the executor takes when it is made, not per job
POLL_S = 15.0  # sacct is asked at least this often while a sweep waits
# Launch lines go through logging as Hydra's own launchers' do: on the terminal in a plain
# multirun, in the sweep's sweeper.log during a study.
log = logging.getLogger(__name__)


def wait_for(job: Any) -> None:
    """Until the job has ended. submitit alone asks sacct ever more rarely as a job runs (every
    half its age, at most 10 minutes apart), so the end of a long job could be seen 10 minutes
    late; one sacct call every POLL_S refreshes every job of the array at once."""
    last = time.monotonic()
    while True:
        force = time.monotonic() - last >= POLL_S
        if force:
            last = time.monotonic()
        if job.done(force_check=force):
            return
        time.sleep(1.0)


class SlurmLauncher(UpstreamSlurmLauncher):
    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """The job's side. lvsweep's stop signals are taken first, before Hydra composes the job
        (seconds of imports on a busy node): SLURM may send a time limit's USR2 up to a minute
        early, and one that came before would end the job by submitit's rules, with no run."""
        from lvsweep import interrupts, slurm

        slurm.take_job_signals()
        try:
            return super().__call__(*args, **kwargs)
        except KeyboardInterrupt as exc:  # stopped before the job's own handling began (app.run_job)
            interrupts.note(exc)
            if slurm.in_job() and interrupts.terminated():
                slurm.hand_over_requeue()
                sys.exit(interrupts.exit_status())
            raise

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in EXECUTOR_SETTINGS})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # settings every executor knows
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items()
                                      if k not in EXECUTOR_SETTINGS and k != "submitit_folder"})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        numbers = [initial_job_idx + i for i in range(len(job_overrides))]
        for number, overrides in zip(numbers, job_overrides):
            log.info(f"job {number}: {' '.join(filter_overrides(overrides))}")
        state = Singleton.get_state()
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(numbers),
                                  numbers, [f"job_id_for_{n}" for n in numbers], [state] * len(numbers))
        log.info(f"submitted as SLURM job array {jobs[0].job_id.partition('_')[0]} "
                 f"({len(jobs)} job(s)); waiting for them")
        returns = [self._collect(job, number, overrides) for job, number, overrides in zip(jobs, numbers, job_overrides)]
        from lvsweep.tracking.sweeps import close_gone_jobs

        close_gone_jobs()  # before a sweeper reads the results, every run of an ended job is closed
        return returns

    def _collect(self, job: Any, number: int, overrides: Sequence[str]) -> JobReturn:
        """The job's result, or a failed job's NaN when the scheduler ended it without one. A job
        that ended in any state but COMPLETED and left no result is not waited for further."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        wait_for(job)
        state = str(job.state)
        try:
            if state != "COMPLETED" and not job.paths.result_pickle.exists():
                raise UncompletedJobError(state)
            return job.results()[0]
        except (UncompletedJobError, FailedJobError):
            print(f"  job {number} (SLURM job {job.job_id}) ended {state} without a result: counted as failed")
            assert self.config is not None
            record_lost_job(self.config, str(job.job_id), state, overrides)
            n_values = len(self.config.get("objectives", [None]))
            nan = math.nan if n_values == 1 else [math.nan] * n_values
            return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=nan)


def record_lost_job(config: Any, job: str, state: str, overrides: Sequence[str]) -> None:
    """A FAILED run under the sweep for a job that ended before it opened a run of its own (a
    signal before its handlers were in place, a node lost at start): without one the sweep's table
    and exit status would not know the job existed. The run carries the tags and the name the job
    was given, so a study's trial still finds it."""
    import os

    from lvsweep import slurm
    from lvsweep.tracking.runs import PARENT_RUN_ENV, RunRecorder, child_runs, close_run, open_store, resolve_uri

    parent = os.environ.get(PARENT_RUN_ENV)
    if parent is None:
        return
    client, experiment_id = open_store(resolve_uri(config.tracking.uri), config.tracking.experiment)
    if child_runs(client, experiment_id, parent, f"tags.`{slurm.JOB_TAG}` = '{job}'"):
        return
    tags, name = {}, None
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key.startswith("tracking.tags."):
            tags[key[len("tracking.tags."):]] = value.strip("'\"")
        elif key == "tracking.run_name":
            name = value.strip("'\"")
    name = name or ",".join(o for o in overrides if not o.lstrip("+").startswith(("hydra.", "tracking.")))
    recorder = RunRecorder(client, experiment_id, name, parent, tags={**tags, slurm.JOB_TAG: job})
    close_run(client, recorder.run_id, "FAILED", f"lost: SLURM job {job} ended {state} (sacct) before it "
                                                 "opened its run; nothing of it was recorded")
