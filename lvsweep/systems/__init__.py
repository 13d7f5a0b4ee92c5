"""System registry: a new system is one module here plus one YAML file in conf/system/."""
from __future__ import annotations

from typing import Any

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


__all__ = ["DynamicalSystem", "SYSTEMS", "make_system"]
