"""Which process owns a run, and whether it is certainly gone.

Every run records its host, pid and a stamp of the process's start (`lvsweep.pid_start`), so a
later command on the same host can tell a run whose process was killed hard (SIGKILL, the
out-of-memory killer) from one whose process is alive or whose pid was given to a newer process.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional


def process_stamp(pid: int) -> Optional[str]:
    """What tells process `pid` from a later one that the kernel gives the same pid:
    `proc:<boot id>:<pid namespace>:<start time in clock ticks>` from /proc (Linux), else
    `psutil:<boot time>:<start time>` where psutil is installed; None where neither can say.
    Raises ProcessLookupError when no process has this pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if not Path("/proc/self/stat").exists():
            return _psutil_stamp(pid)
        os.kill(pid, 0)  # hidden by /proc's hidepid (another user's, alive: PermissionError) or gone
        return None
    except OSError:
        return None
    start = stat.rpartition(")")[2].split()[19]  # field 22; the name before ")" may hold spaces
    boot, namespace = this_boot_and_pid_namespace()
    return f"proc:{boot}:{namespace}:{start}"


@functools.cache
def this_boot_and_pid_namespace() -> tuple[str, str]:
    """This kernel's boot id and this process's pid namespace (`pid:[4026531836]` → its number)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "unknown"
    try:
        namespace = "".join(c for c in os.readlink("/proc/self/ns/pid") if c.isdigit())
    except OSError:
        namespace = ""
    return boot, namespace or "unknown"


def _psutil_stamp(pid: int) -> Optional[str]:
    try:
        import psutil
    except ImportError:
        return None
    try:
        return f"psutil:{psutil.boot_time():.0f}:{psutil.Process(pid).create_time():.3f}"
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(pid) from exc
    except psutil.Error:
        return None


def process_gone(pid: int, recorded: Optional[str]) -> bool:
    """True only when the process that opened a run on this host is certainly gone: no process has
    its pid, the one that has it started at another time (the pid was reused), or the machine has
    rebooted since. A process in another pid namespace (a container sharing the host name), or one
    whose start cannot be read, counts as alive: its run is left for its owner."""
    mine = process_stamp(os.getpid())
    parts, now = (recorded or "").split(":"), (mine or "").split(":")
    try:
        if len(parts) == len(now) >= 3 and parts[0] == now[0]:
            if parts[1] != now[1]:
                return True  # rebooted since: every process of that boot has ended
            if parts[0] == "proc" and parts[2] != now[2]:
                return False  # another pid namespace: its pids mean nothing here
            return process_stamp(pid) not in (None, recorded)
        os.kill(pid, 0)  # no usable stamp (an older run, no /proc): the pid alone
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
