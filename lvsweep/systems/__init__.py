"""The systems and their registry: a new system is one module here plus one YAML file in conf/system/.

Every module of this package is imported here, and every concrete `DynamicalSystem` subclass
registers itself under its `name` (see `DynamicalSystem.__init_subclass__`), so nothing else needs
editing when a system is added; the tests' tables are built from `SYSTEMS` too.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Sequence

import numpy as np

from lvsweep.errors import LvsweepError
from lvsweep.systems.base import REGISTRY, DynamicalSystem, Sensitivity

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "simulate"):
        importlib.import_module(f"{__name__}.{_module.name}")

SYSTEMS: dict[str, type[DynamicalSystem]] = dict(sorted(REGISTRY.items()))


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


MEASURES = tuple(m.value for m in Sensitivity)


def resolve_measure(kind: str, system: DynamicalSystem) -> str:
    """The sensitivity measure `kind` stands for on this system (`auto`: the analytic one where V
    exists); a measure the system cannot have is an error naming what it can."""
    allowed = MEASURES if system.has_lyapunov else ("auto", "ftle")
    if kind not in allowed:
        why = (f"needs a Lyapunov function or first integral, which {system.name} does not have"
               if kind in MEASURES else "is not a sensitivity measure")
        raise LvsweepError("analysis.sensitivity",
                           f"'{kind}' {why}; allowed for {system.name}: {', '.join(allowed)}")
    if kind == "auto":
        return "lyapunov_normal" if system.has_lyapunov else "ftle"
    return kind


def check_prc(system: DynamicalSystem) -> None:
    """A phase response needs a phase: a periodic orbit, attracting or a centre."""
    if system.cycle is None:
        oscillators = ", ".join(sorted(name for name, cls in SYSTEMS.items() if cls.cycle))
        raise LvsweepError("analysis.prc", f"a phase response curve needs an oscillator, and {system.name} has no "
                                           f"periodic orbit; allowed for {system.name}: false (oscillators: {oscillators})")


__all__ = ["DynamicalSystem", "MEASURES", "SYSTEMS", "check_prc", "check_start", "make_system", "resolve_measure"]
