"""SLURM as lvsweep meets it: inside a job, what the scheduler's signals mean and when a requeue
is handed to submitit; on the sweep's side, what the accounting says of the jobs.

What a job receives, and what lvsweep records (the run's `lvsweep.error`):

| event | signals | recorded |
| --- | --- | --- |
| `scancel` | SIGTERM, SIGKILL `KillWait` s later | KILLED, "cancelled: ..." |
| time limit | USR2 `signal_delay_s` before it (submitit's `--signal`), SIGTERM at it | KILLED, "time limit: ..." |
| preemption | SIGTERM while the job still runs (`scancel --signal=TERM`, a grace time), then the kill | KILLED, "preempted: ..." |
| USR2, requeue allowed | submitit requeues the job (`hydra.launcher.max_num_timeout`) | KILLED, "...; requeued", tag `lvsweep.requeued` |

SIGTERM is told apart by the job's state in the scheduler at that moment (`scontrol show job`):
CANCELLED, TIMEOUT, or still RUNNING (preemption). A requeued job starts again from scratch with
the same overrides: a multirun job is rerun, a study trial rerun with its params, each start a
new run tagged with `lvsweep.slurm_restarts`. Runs that no handler could close (SIGKILL, a node
lost) are closed by the sweep's controller from `sacct`, on whichever host they ran.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable, Iterable, Mapping, Optional

JOB_TAG = "lvsweep.slurm_job"  # `<array job>_<task>` or `<job>`: what sacct, squeue and scancel take
RESTARTS_TAG = "lvsweep.slurm_restarts"  # SLURM_RESTART_COUNT: how often the job was requeued before this start
REQUEUED_TAG = "lvsweep.requeued"  # on a run whose job was requeued: its work goes on in a later run
# Job states in which the job may still close its own runs; any other state is final.
LIVE_STATES = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                         "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"})
COMMAND_TIMEOUT_S = 30.0

_submitit_usr2: Optional[Callable[..., Any]] = None  # submitit's own USR2 handler, run when it may requeue
_usr2_plan: dict[str, Any] = {}  # what a USR2 received means: {"reason": ..., "requeue": bool}


def job_id(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """The SLURM job this process runs in, as sacct names it (`12_3` for task 3 of array 12)."""
    if "SLURM_JOB_ID" not in env:
        return None
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env["SLURM_JOB_ID"]


def run_tags(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Tags tying a run to its SLURM job and start, empty outside SLURM."""
    job = job_id(env)
    if job is None:
        return {}
    return {JOB_TAG: job, RESTARTS_TAG: env.get("SLURM_RESTART_COUNT", "0")}


def _command(*args: str) -> Optional[str]:
    """A SLURM client command's stdout, or None where it is missing or fails."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def live_state(job: str) -> Optional[str]:
    """The job's state as slurmctld holds it now (`scontrol show job`), e.g. CANCELLED, TIMEOUT, RUNNING."""
    out = _command("scontrol", "show", "job", "-o", job)
    for field in (out or "").split():
        if field.startswith("JobState="):
            return field.partition("=")[2]
    return None


def final_states(jobs: Iterable[str]) -> dict[str, str]:
    """{job: state} from the accounting (`sacct`) for those of `jobs` that have ended, e.g.
    {"12_0": "CANCELLED"}. sacct shows a job's latest start, so a requeued job reads as live."""
    wanted = sorted(set(jobs))
    if not wanted:
        return {}
    out = _command("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(wanted))
    states = {}
    for line in (out or "").splitlines():
        job, _, state = line.partition("|")
        state = state.split()[0] if state.split() else ""  # "CANCELLED by 0" → CANCELLED
        if job in wanted and state and state not in LIVE_STATES:
            states[job] = state
    return states


def stop_state(job: str, wait_s: float = 10.0) -> Optional[str]:
    """The state that tells what a SIGTERM in `job` means. slurmctld shows a job it is ending as
    COMPLETING, whatever ended it; the accounting has the cause (CANCELLED, TIMEOUT) as soon as
    slurmdbd has the record, which can take a moment: asked again for up to `wait_s`, well inside
    the KillWait before SLURM's SIGKILL. A job still RUNNING was signalled without being ended."""
    deadline = time.monotonic() + wait_s
    while True:
        state = live_state(job)
        if state is not None and state != "COMPLETING":
            return state
        final = final_states([job]).get(job)
        if final is not None or time.monotonic() > deadline:
            return final or state
        time.sleep(0.5)


def explain_sigterm(job: str) -> str:
    """What a SIGTERM in `job` stands for, read off the scheduler's state for it."""
    state = stop_state(job)
    if state == "CANCELLED":
        return f"cancelled: SLURM job {job} was cancelled (scancel)"
    if state == "TIMEOUT":
        return f"time limit: SLURM job {job} reached its time limit (hydra.launcher.timeout_min)"
    if state in ("RUNNING", "PREEMPTED", "SUSPENDED"):
        return (f"preempted: SIGTERM while SLURM job {job} was {state} "
                "(a preemption, scancel --signal=TERM, or a kill from outside SLURM)")
    return f"terminated: SIGTERM in SLURM job {job} (its state: {state or 'unknown'})"


def explain(signum: int) -> Optional[str]:
    """The reason a run of this SLURM job records for stopping on `signum`; None outside SLURM."""
    job = job_id()
    if job is None:
        return None
    if signum == signal.SIGUSR2 and _usr2_plan:
        return str(_usr2_plan["reason"])
    return explain_sigterm(job)


def _plan_for_usr2(handler: Any, job: str) -> dict[str, Any]:
    """Whether submitit will requeue on this USR2, by its own rule: a time-out uses one of
    `max_num_timeout` requeues, a preemption none. Read off its handler object; anything
    unexpected there means no requeue (the job then runs on to its limit)."""
    owner = getattr(handler, "__self__", None)
    delayed = getattr(owner, "_delayed", None)
    countdown = getattr(delayed, "_timeout_countdown", None)
    if owner is None or not isinstance(countdown, int) or not hasattr(getattr(delayed, "function", None), "checkpoint"):
        return {"reason": f"time limit: SLURM job {job} is near its time limit", "requeue": False}
    timed_out = bool(owner.has_timed_out())
    left = countdown - timed_out
    kind = (f"time limit: SLURM job {job} is near its time limit" if timed_out
            else f"preempted: SLURM job {job} was signalled to checkpoint (USR2)")
    if left < 0:
        return {"reason": f"{kind}; not requeued (hydra.launcher.max_num_timeout allows no more)", "requeue": False}
    return {"reason": f"{kind}; requeued (restart {os.environ.get('SLURM_RESTART_COUNT', '0')} ends here, "
                      f"{left} more time-out requeue(s) allowed)", "requeue": True}


def _on_usr2(signum: int, frame: Optional[FrameType]) -> None:
    """USR2 from submitit's `--signal`: stop like SIGTERM when submitit will requeue (the next
    start goes on with the work), else say so in the job's log and run on to the limit."""
    from lvsweep import interrupts

    job = job_id() or "?"
    plan = _plan_for_usr2(_submitit_usr2, job)
    if not plan["requeue"]:
        print(f"lvsweep: {plan['reason']}: running on until the limit", file=sys.stderr, flush=True)
        return
    _usr2_plan.update(plan)
    interrupts.stop_on(signum)


def take_job_signals() -> None:
    """In a job that submitit runs (SLURM, or its local executor): lvsweep handles SIGTERM, where
    submitit's handler would only log it, and USR2, which it hands back to submitit only when a
    requeue follows. Call from the job, before its run opens; a no-op elsewhere."""
    global _submitit_usr2
    if not in_job() or threading.current_thread() is not threading.main_thread():
        return
    from lvsweep import interrupts

    interrupts.install()
    if job_id() is not None:
        current = signal.getsignal(signal.SIGUSR2)
        if current is not _on_usr2:
            _submitit_usr2 = current if callable(current) else None
            signal.signal(signal.SIGUSR2, _on_usr2)


def requeued() -> bool:
    """True when this job stopped on a USR2 after which submitit requeues it."""
    return bool(_usr2_plan.get("requeue"))


def hand_over_requeue() -> None:
    """After the run is closed: let submitit requeue the job (it calls `scontrol requeue`, then
    exits the process). Returns only if it did not."""
    if requeued() and _submitit_usr2 is not None:
        _submitit_usr2(signal.SIGUSR2, None)


def in_job() -> bool:
    """True in a process that submitit runs as a job (where a stop ends the job, not a command)."""
    return "SUBMITIT_FOLDER" in os.environ
