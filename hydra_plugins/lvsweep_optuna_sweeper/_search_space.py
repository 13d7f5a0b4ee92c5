"""The search space: Hydra sweep expressions turned into optuna distributions, and sampled values
turned back into override text that parses to the same value."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.errors import HydraException
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.lvsweep_optuna_sweeper._edits import format_value
from lvsweep.errors import LvsweepError

TAGS = {"interval": {"log", "int"}, "range": {"log"}, "choice": set()}
# What to tell a user whose search space is empty.
NOTHING_TO_SEARCH = ("nothing to search: no param is searched; give one on the command line, e.g. "
                     "'model.lr=interval(1e-4, 1e-1)', or in hydra.sweeper.params, e.g. "
                     "'hydra.sweeper.params={model.lr: tag(log, interval(1e-4, 1e-1))}'")


@dataclass
class SearchSpace:
    """What to sample (name → distribution) and the overrides every trial shares."""

    distributions: dict[str, BaseDistribution] = field(default_factory=dict)
    override_keys: dict[str, str] = field(default_factory=dict)  # name → key with its +/++ prefix
    fixed: dict[str, str] = field(default_factory=dict)  # key → full override line

    def trial_overrides(self, params: Mapping[str, Any]) -> list[str]:
        return [*self.fixed.values(),
                *(f"{self.override_keys[name]}={format_value(v)}" for name, v in params.items())]


def to_distribution(key: str, sweep: Any) -> BaseDistribution:
    """One sweep expression → the optuna distribution it means; anything else is a user error."""
    where = f"hydra.sweeper.params.{key}"
    kind = {IntervalSweep: "interval", RangeSweep: "range", ChoiceSweep: "choice"}.get(type(sweep))
    if kind is None:
        raise LvsweepError(where, f"'{type(sweep).__name__}' cannot be searched; use interval(a, b), "
                                  "choice(a, b, ...), range(a, b, step) or tag(log, interval(a, b))")
    unknown = set(sweep.tags) - TAGS[kind]
    if unknown:
        allowed = ", ".join(sorted(TAGS[kind])) or "none"
        raise LvsweepError(where, f"unknown tag(s) {', '.join(sorted(unknown))} for {kind}; allowed: {allowed}")
    log = "log" in sweep.tags
    try:
        if isinstance(sweep, ChoiceSweep):
            bad = [v for v in sweep.list if v is not None and not isinstance(v, (str, int, float, bool))]
            if not sweep.list or bad:
                raise ValueError(f"choice needs one or more plain values (numbers, strings, booleans, null), "
                                 f"got {sweep.list}")
            return CategoricalDistribution(list(sweep.list))
        if isinstance(sweep, IntervalSweep):
            low, high = sweep.start, sweep.end
            if not low < high:
                raise ValueError(f"interval({low:g}, {high:g}) needs start < end")
            if "int" in sweep.tags:
                if low != int(low) or high != int(high):
                    raise ValueError(f"tag(int, interval({low:g}, {high:g})) needs whole-number bounds")
                return IntDistribution(int(low), int(high), log=log)
            return FloatDistribution(float(low), float(high), log=log)
        start, stop, step = sweep.start, sweep.stop, 1 if sweep.step is None else sweep.step
        if step <= 0 or not start < stop:
            raise ValueError(f"range({start}, {stop}, {step}) needs start < stop and step > 0")
        # Hydra's range is half-open like Python's; optuna's bounds are inclusive.
        last = start + (math.ceil((stop - start) / step - 1e-9) - 1) * step
        if all(isinstance(v, int) for v in (start, stop, step)):
            return IntDistribution(start, last, step=step, log=log)
        return FloatDistribution(float(start), round(float(last), 12), step=float(step), log=log)
    except ValueError as exc:
        raise LvsweepError(where, str(exc)) from exc


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`params` as one level of dotted names, in order. Hydra splits a dotted key given on the
    command line (`hydra.sweeper.params.trainer.epochs=...`) into nested mappings while a config
    file may write `trainer.epochs:` as one key; both name the param `trainer.epochs`, and a later
    entry of a name replaces an earlier one. A null value means "not searched": it removes the
    entries of that name and under it so far (a YAML file extending a preset, or
    `~hydra.sweeper.params.model.lr`, has no other way to take a param out)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            for inner, item in flatten_params(value, f"{name}.").items():
                flat.pop(inner, None)
                flat[inner] = item
        elif value is None:
            for known in [k for k in flat if k == name or k.startswith(f"{name}.")]:
                del flat[known]
        else:
            flat.pop(name, None)
            flat[name] = value
    return flat


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """Config `params` first, then command-line overrides: a sweep there joins the search space.
    A space with nothing to search is refused: every trial would run the same config."""
    parser = OverridesParser.create()
    space = SearchSpace()
    for line in [*(f"{key}={value}" for key, value in flatten_params(params).items()), *arguments]:
        try:
            override = parser.parse_override(line)
        except HydraException as exc:  # the parser raises it for any syntax error
            key = line.partition("=")[0]
            raise LvsweepError(f"hydra.sweeper.params.{key}", " ".join(str(exc).split())) from exc
        add_override(space, override)
    if not space.distributions:
        raise LvsweepError("hydra.sweeper.params", NOTHING_TO_SEARCH)
    return space


def add_override(space: SearchSpace, override: Override) -> None:
    """A later override of the same key replaces an earlier one, searched or fixed."""
    name = override.get_key_element()
    prefix = "++" if override.is_force_add() else "+" if override.is_add() else ""
    space.distributions.pop(name, None)
    space.fixed.pop(name, None)
    if override.is_sweep_override():
        space.distributions[name] = to_distribution(name, override.value())
        space.override_keys[name] = prefix + name
    else:
        space.fixed[name] = override.input_line


def sweep_text(dist: BaseDistribution) -> str:
    """A distribution in the sweep syntax that gives it, for messages in the user's terms."""
    if isinstance(dist, CategoricalDistribution):
        return f"choice({', '.join(format_value(c) for c in dist.choices)})"
    whole = isinstance(dist, IntDistribution)
    low, high, step = dist.low, dist.high, dist.step  # type: ignore[attr-defined]  # Float- and IntDistribution
    if step is not None and not (whole and step == 1):  # Hydra's range is half-open
        body = f"range({low!r}, {round(high + step, 12)!r}, {step!r})"
    else:
        body = f"interval({low!r}, {high!r})"
    tags = [tag for tag, on in (("int", whole and body.startswith("interval")), ("log", dist.log)) if on]  # type: ignore[attr-defined]
    return f"tag({', '.join(tags)}, {body})" if tags else body


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_categorical(name, dist.choices)
