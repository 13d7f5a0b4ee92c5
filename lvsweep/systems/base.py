"""What every dynamical system provides to the rest of the pipeline.

Arrays put the state last (`x[..., d]`), so one implementation of the right-hand side serves a
single state, a whole orbit and a batch of perturbed copies alike.
"""
from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from enum import Enum
from typing import ClassVar, Mapping, Optional, Sequence

import numpy as np

from lvsweep.errors import LvsweepError


def matrix(rows: Sequence[Sequence[np.ndarray | float]], shape: tuple[int, ...]) -> np.ndarray:
    """[..., n, m] from n rows of m entries, each an array of the batch shape or a constant, so a
    Jacobian is written as it reads on paper, constants as plain numbers."""
    return np.stack([np.stack([np.broadcast_to(np.asarray(e, dtype=float), shape) for e in row], axis=-1)
                     for row in rows], axis=-2)


REGISTRY: dict[str, type[DynamicalSystem]] = {}


class Sensitivity(str, Enum):
    """The values of `analysis.sensitivity`. Defined with the systems, which say which measures they
    can have, rather than with the config schema: a process that only unpickles a system (the figure
    worker) then never imports Hydra."""

    auto = "auto"  # lyapunov_normal where the system has V, else ftle
    lyapunov_normal = "lyapunov_normal"
    ftle = "ftle"


class DynamicalSystem(ABC):
    """An autonomous ODE x' = f(x) with named states and named parameters.

    Adding a system touches two files:

    1. A module in `lvsweep/systems/` with one subclass that sets
       - `name`: the option name, the same as its YAML file's stem;
       - `param_names`: the parameter names the YAML's `params` must give, in order;
       - optionally `cycle` ("limit_cycle", "centre" or None), `conserved` and `held`;
       and implements
       - `rhs(x[..., d]) -> [..., d]` and `jacobian(x[..., d]) -> [..., d, d]`, vectorised over
         leading axes (the state is the last axis);
       - optionally `check_state` (admissible states), `lyapunov` and `lyapunov_grad` (then the
         analytic `lyapunov_normal` sensitivity applies), `equilibrium` (reference lines in figures).
       The subclass registers itself when its module is imported; the package imports every module.
    2. `conf/system/<name>.yaml`: `defaults: [base_system, _self_]`, then `name`, `state_names`,
       `params`, `start`, the time grid (`t_end`, `n_steps`, optionally `transient`, `t_start`) and,
       for a stiff system, the integration method.

    The test tables iterate over every registered system, so the new one is checked for a finite
    Jacobian that matches finite differences, a bounded orbit and a working sensitivity measure.
    """

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:  # a concrete system names itself; helper bases do not
            REGISTRY[cls.name] = cls

    name: ClassVar[str]
    param_names: ClassVar[tuple[str, ...]]
    # The kind of periodic orbit the system's orbits settle on, which decides how a phase response
    # is measured: "limit_cycle" (attracting), "centre" (a family of closed orbits), or None
    # (a fixed point or chaos: no phase to respond).
    cycle: ClassVar[Optional[str]] = None
    # Whether V is conserved (a first integral) rather than decreasing along orbits.
    conserved: ClassVar[bool] = False
    # State variables a constant input holds at one value on the attractor (a circadian model's
    # photoreceptor n at constant light): they do not move along the orbit, and tests say so.
    held: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Mapping[str, float], state_names: Sequence[str]) -> None:
        unknown = sorted(set(params) - set(self.param_names))
        missing = sorted(set(self.param_names) - set(params))
        allowed = ", ".join(self.param_names)
        if unknown:
            guess = difflib.get_close_matches(unknown[0], self.param_names, n=1)
            hint = f"did you mean system.params.{guess[0]}? " if guess else ""
            raise LvsweepError(f"system.params.{unknown[0]}",
                               f"unknown parameter of {self.name}; {hint}allowed: {allowed}")
        if missing:
            raise LvsweepError(f"system.params.{missing[0]}",
                               f"missing parameter of {self.name}; required: {allowed}")
        self.params = {k: float(params[k]) for k in self.param_names}
        self.state_names = tuple(state_names)

    @property
    def dim(self) -> int:
        return len(self.state_names)

    @property
    def has_lyapunov(self) -> bool:
        """Whether the system defines V (and so the analytic lyapunov_normal sensitivity)."""
        return type(self).lyapunov_grad is not DynamicalSystem.lyapunov_grad

    @abstractmethod
    def rhs(self, x: np.ndarray) -> np.ndarray:
        """f(x), shape [..., d]."""

    @abstractmethod
    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """df/dx, shape [..., d, d]."""

    def check_state(self, x: np.ndarray) -> Optional[str]:
        """Why `x` lies outside the state space, or None if it is admissible."""
        return None

    def lyapunov(self, x: np.ndarray) -> Optional[np.ndarray]:
        """A conserved or Lyapunov function V(x), shape [...], if the system has one."""
        return None

    def lyapunov_grad(self, x: np.ndarray) -> Optional[np.ndarray]:
        """∇V(x), shape [..., d], if the system has a V."""
        return None

    def equilibrium(self) -> Optional[np.ndarray]:
        """The interior fixed point the orbits circle, if any (used for reference lines in figures)."""
        return None
