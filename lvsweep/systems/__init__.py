"""System registry: a new system is one module here plus one YAML file in conf/system/."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.systems.base import DynamicalSystem
from lvsweep.systems.lotka_volterra import LotkaVolterra

SYSTEMS: dict[str, type[DynamicalSystem]] = {cls.name: cls for cls in (LotkaVolterra,)}


def make_system(cfg: Any) -> DynamicalSystem:
    """Build the system named by `cfg.name` from a system config node."""
    cls = SYSTEMS.get(cfg.name)
    if cls is None:
        raise LvsweepError("system.name", f"unknown system '{cfg.name}'; allowed: {', '.join(sorted(SYSTEMS))}")
    return cls(dict(cfg.params), list(cfg.state_names))


def check_start(system: DynamicalSystem, start: Sequence[float]) -> None:
    problem = system.check_state(np.asarray(start, dtype=float))
    if problem:
        raise LvsweepError("system.start", f"{list(start)} is outside the state space: {problem}")


__all__ = ["DynamicalSystem", "SYSTEMS", "check_start", "make_system"]
