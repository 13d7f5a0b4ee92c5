"""A throwaway single-node SLURM cluster for the tests (`.ci/slurm-up` in a temp dir, once per
session, stopped by pid at its end), and waits on what the scheduler says of a job."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

from .cli import HANG_S, cli_env
from .store import wait_until
from .system import require

REPO = Path(__file__).resolve().parents[2]
DAEMONS = ("slurmctld", "slurmd", "sbatch", "munged", "slurmdbd", "mariadbd")


def missing_slurm() -> str:
    """What of SLURM with accounting is not installed here, with the command that installs it."""
    absent = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    return f"SLURM is not installed ({', '.join(absent)} missing): bash .ci/system-packages slurm" if absent else ""


@dataclass
class SlurmCluster:
    root: Path
    conf: Path

    def env(self, **extra: str) -> dict[str, str]:
        """The CLI's environment on this cluster (jobs inherit it: sbatch --export=ALL)."""
        return cli_env(SLURM_CONF=str(self.conf), **extra)

    def command(self, *args: str, env: Optional[dict[str, str]] = None) -> str:
        """A SLURM client command against this cluster; its stdout."""
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=120, env=env or self.env())
        assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def live_state(self, job: str) -> str:
        """squeue's state of the job ("" once it has left the queue)."""
        return self.command("squeue", "-h", "-j", job, "-o", "%T").strip()

    def final_state(self, job: str) -> str:
        """sacct's state of the job's latest start, first word ("CANCELLED by 0" → CANCELLED)."""
        out = self.command("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job)
        states = [line.partition("|")[2].split()[0] for line in out.splitlines() if line.partition("|")[0] == job]
        return states[-1] if states else ""

    def wait_for_state(self, job: str, states: set[str], proc: Optional[subprocess.Popen] = None) -> str:
        """Wait until the accounting shows the job in one of `states` (its rows come a moment late)."""
        return wait_until(lambda: (s if (s := self.final_state(job)) in states else ""), proc,
                          f"SLURM job {job} in state {sorted(states)}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    require(missing_slurm())
    root = Path(tempfile.mkdtemp(prefix="lvsweep-slurm-"))
    proc = subprocess.run(["bash", str(REPO / ".ci" / "slurm-up"), str(root)], capture_output=True, text=True,
                          timeout=HANG_S)
    if proc.returncode != 0:
        raise RuntimeError(f".ci/slurm-up failed ({proc.returncode}): {proc.stderr[-3000:]}")
    conf = Path(proc.stdout.strip().rpartition("=")[2])
    try:
        yield SlurmCluster(root, conf)
    finally:
        subprocess.run(["bash", str(REPO / ".ci" / "slurm-down"), str(root)], timeout=HANG_S)
        shutil.rmtree(root, ignore_errors=True)
