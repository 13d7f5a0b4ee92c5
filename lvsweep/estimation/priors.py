"""Weakly-informative priors, given as data so a YAML file can override them later.

Every free quantity (rates, initial states, noise levels) is positive, and the sampler works in
θ = log(value): log-rates are close to Gaussian for these fits, and positivity costs nothing.
So each prior is written for the value but evaluated as a density of θ (with the Jacobian).

A spec is a dict: {"kind": "lognormal", "median": m, "sigma": s} (log value ~ Normal(log m, s)),
{"kind": "truncnormal", "loc": m, "scale": s} (value ~ Normal(m, s) cut at 0, as Stan's
`real<lower=0> x; x ~ normal(m, s)`), {"kind": "halfnormal", "scale": s}, or
{"kind": "loguniform", "low": a, "high": b}. Fields of other kinds, and unset ones, are ignored:
they are what a kind switched by one override leaves behind from the preset.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

from lvsweep.errors import LvsweepError

KINDS = {"lognormal": ("median", "sigma"), "truncnormal": ("loc", "scale"), "halfnormal": ("scale",),
         "loguniform": ("low", "high")}
FIELDS = {f for keys in KINDS.values() for f in keys}

# Lotka-Volterra on the scale of the lynx-hare records (tens of thousands of pelts, cycles of about
# ten years): growth and death rates of order 1 per year, interaction rates of order 0.01-0.1 per
# pelt-thousand; a log-sd of 1 allows a factor e either way at one sd, e^2 at two.
LOTKA_VOLTERRA = {
    "alpha": {"kind": "lognormal", "median": 1.0, "sigma": 1.0},
    "gamma": {"kind": "lognormal", "median": 1.0, "sigma": 1.0},
    "beta": {"kind": "lognormal", "median": 0.05, "sigma": 1.0},
    "delta": {"kind": "lognormal", "median": 0.05, "sigma": 1.0},
}
# Measurement noise on the log scale: a median of 0.25 (±25 %) and a factor e either way.
SIGMA = {"kind": "lognormal", "median": 0.25, "sigma": 1.0}
X0_SIGMA = 1.0  # initial states: log-normal around the first observation


@dataclass(frozen=True)
class Prior:
    """One prior, as a log density of θ = log(value)."""
    kind: str
    a: float
    b: float = 0.0

    def logpdf(self, theta: np.ndarray) -> np.ndarray:
        """log p(θ) for θ = log(value), any shape; -inf outside the support."""
        theta = np.asarray(theta, dtype=float)
        if self.kind == "lognormal":  # a = median, b = log-sd
            z = (theta - math.log(self.a)) / self.b
            return -0.5 * z * z - math.log(self.b * math.sqrt(2 * math.pi))
        if self.kind == "halfnormal":  # a = scale; p(v) ∝ exp(-v²/2a²), times dv/dθ = v
            v = np.exp(np.minimum(theta, 50.0))
            return -0.5 * (v / self.a) ** 2 + theta + math.log(math.sqrt(2 / math.pi) / self.a)
        if self.kind == "truncnormal":  # a = loc, b = scale; Normal(a, b) on v > 0, times dv/dθ = v
            v = np.exp(np.minimum(theta, 50.0))
            z = (v - self.a) / self.b
            return -0.5 * z * z + theta - math.log(self.b * math.sqrt(2 * math.pi)) - float(log_ndtr(self.a / self.b))
        lo, hi = math.log(self.a), math.log(self.b)  # loguniform: flat in θ on [log a, log b]
        return np.where((theta >= lo) & (theta <= hi), -math.log(hi - lo), -np.inf)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws of θ from this prior, [n] (used for optimiser starts)."""
        if self.kind == "lognormal":
            return math.log(self.a) + self.b * rng.standard_normal(n)
        if self.kind == "halfnormal":
            return np.log(np.abs(self.a * rng.standard_normal(n)) + 1e-12)
        if self.kind == "truncnormal":  # inverse CDF above the cut at 0
            u = rng.uniform(float(ndtr(-self.a / self.b)), 1.0, n)
            return np.log(np.maximum(self.a + self.b * ndtri(u), 1e-300))
        return rng.uniform(math.log(self.a), math.log(self.b), n)

    def bounds(self) -> tuple[float, float]:
        """A box in θ holding all but a negligible part of the prior mass (the optimiser's bounds)."""
        if self.kind == "lognormal":
            return math.log(self.a) - 8 * self.b, math.log(self.a) + 8 * self.b
        if self.kind == "halfnormal":
            return math.log(self.a) - 20.0, math.log(self.a) + 3.0
        if self.kind == "truncnormal":
            top = math.log(max(self.a, 0.0) + 8 * self.b)
            return top - 20.0, top
        return math.log(self.a), math.log(self.b)

    def residual(self, theta: np.ndarray) -> np.ndarray:
        """A least-squares residual whose half square is -log p(θ) up to a constant: signed
        sqrt(2 (log p(mode) - log p(θ))); exactly z = (θ - log median)/sigma for a log-normal."""
        theta = np.asarray(theta, dtype=float)
        if self.kind == "lognormal":
            return (theta - math.log(self.a)) / self.b
        if self.kind == "loguniform":  # flat inside: no pull; outside: a wall
            lo, hi = self.bounds()
            return np.where((theta >= lo) & (theta <= hi), 0.0, 1e3)
        mode = self.mode()
        gap = np.maximum(self.logpdf(np.array(mode)) - self.logpdf(theta), 0.0)
        return np.where(np.isfinite(gap), np.sign(theta - mode) * np.sqrt(2 * gap), 1e3)

    def mode(self) -> float:
        """Where log p(θ) peaks (half-normal and truncated normal; in θ the Jacobian v moves it):
        v = scale, and v = (loc + sqrt(loc² + 4 scale²)) / 2."""
        if self.kind == "halfnormal":
            return math.log(self.a)
        return math.log(0.5 * (self.a + math.sqrt(self.a ** 2 + 4 * self.b ** 2)))

    def center(self) -> float:
        """A typical θ under this prior: the log-median."""
        if self.kind == "lognormal":
            return math.log(self.a)
        if self.kind == "halfnormal":
            return math.log(0.6745 * self.a)
        if self.kind == "truncnormal":
            return math.log(self.a + self.b * float(ndtri(0.5 * (1 + ndtr(-self.a / self.b)))))
        return 0.5 * (math.log(self.a) + math.log(self.b))


# The least share of its mass a prior must put inside the sampler's box |θ| < THETA_LIMIT (values
# from 1.4e-11 to 7.2e10): outside it the log posterior is -inf, so a prior mostly outside leaves
# the optimiser and the sampler nothing to start from, and the prior predictive check no draws.
# With every one of 8 free quantities at this bound, 43 % of joint prior draws still fall inside.
MIN_MASS_INSIDE = 0.9


def parse_prior(name: str, spec: Mapping[str, Any]) -> Prior:
    """A Prior from a spec dict; a bad spec is one line naming `estimate.priors.<name>` (the field
    itself, `estimate.priors.<name>.median`, when one value is bad). The fields of the spec's kind
    must be set; set fields of other kinds are ignored (see above)."""
    field = f"estimate.priors.{name}"
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise LvsweepError(f"{field}.kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    keys = KINDS[kind]
    unknown = sorted(str(k) for k in set(spec) - {"kind", *FIELDS})
    missing = [k for k in keys if spec.get(k) is None]
    if unknown or missing:
        raise LvsweepError(field, f"a {kind} prior takes {', '.join(keys)}; "
                                  + (f"unknown: {', '.join(unknown)}" if unknown else f"missing: {', '.join(missing)}"))
    values = [_prior_value(f"{field}.{k}", spec[k], positive=k != "loc") for k in keys]
    if kind == "loguniform" and values[0] >= values[1]:
        raise LvsweepError(f"{field}.high", f"must be > low ({values[0]:g}); got {values[1]:g}")
    prior = Prior(kind, *values)
    _check_inside(prior, field)
    return prior


def _prior_value(field: str, value: Any, positive: bool) -> float:
    """One number of a prior spec: a finite number (> 0 unless it is a location), named by its field."""
    wanted = "a finite number" + (" > 0" if positive else "")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LvsweepError(field, f"must be {wanted}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise LvsweepError(field, f"must be {wanted}, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise LvsweepError(field, f"must be {wanted}, got {value!r}")
    return number


def mass_inside(prior: Prior, limit: float) -> float:
    """The share of the prior's mass on θ = log(value) in (-limit, limit)."""
    if prior.kind == "lognormal":
        m = math.log(prior.a)
        return float(ndtr((limit - m) / prior.b) - ndtr((-limit - m) / prior.b))
    lo, hi = math.exp(-limit), math.exp(limit)
    if prior.kind == "halfnormal":
        return float(2.0 * (ndtr(hi / prior.a) - ndtr(lo / prior.a)))
    if prior.kind == "truncnormal":
        above_zero = float(ndtr(prior.a / prior.b))
        inside = float(ndtr((hi - prior.a) / prior.b) - ndtr((lo - prior.a) / prior.b))
        return inside / above_zero if above_zero > 0 else 0.0
    a, b = math.log(prior.a), math.log(prior.b)
    return max(0.0, min(b, limit) - max(a, -limit)) / (b - a)


def _check_inside(prior: Prior, field: str) -> None:
    """Refuse a prior that puts less than MIN_MASS_INSIDE of its mass where the sampler works."""
    from lvsweep.estimation.model import THETA_LIMIT  # model.py imports this module

    share = mass_inside(prior, THETA_LIMIT)
    if share < MIN_MASS_INSIDE:
        shown = f"{share:.0%}" if share >= 0.01 else "under 1%"
        raise LvsweepError(field, f"puts {shown} of its mass on values in [{math.exp(-THETA_LIMIT):.2g}, "
                                  f"{math.exp(THETA_LIMIT):.2g}], where the fit works; at least "
                                  f"{MIN_MASS_INSIDE:.0%} is needed: move it inside (or rescale the data) or "
                                  "narrow it")


def default_prior_specs(system_name: str, params: Mapping[str, float], state_names: tuple[str, ...],
                        first_obs: np.ndarray) -> dict[str, dict[str, Any]]:
    """The default spec for every quantity that can be free.

    Lotka-Volterra gets the lynx-hare scale table above; other systems a log-normal with log-sd 1
    around their configured parameter values (the config is the modeller's best guess).
    Initial states: log-normal with log-sd 1 around the first observation [d].
    """
    specs: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        if system_name == "lotka_volterra" and name in LOTKA_VOLTERRA:
            specs[name] = dict(LOTKA_VOLTERRA[name])
        else:
            specs[name] = {"kind": "lognormal", "median": abs(value) or 1.0, "sigma": 1.0}
    for s, y0 in zip(state_names, first_obs):
        specs[f"x0_{s}"] = {"kind": "lognormal", "median": float(y0), "sigma": X0_SIGMA}
        specs[f"sigma_{s}"] = dict(SIGMA)
    return specs


def resolve_priors(defaults: Mapping[str, Mapping[str, Any]], overrides: Optional[Mapping[str, Mapping[str, Any]]],
                   free: tuple[str, ...]) -> dict[str, Prior]:
    """Priors of the free quantities: the defaults, each replaced whole by an override of the same name.
    Every override is checked, also one of a quantity that is not free this time."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise LvsweepError(f"estimate.priors.{unknown[0]}", f"not a quantity of this model; allowed: "
                                                              f"{', '.join(defaults)}")
    given = {name: parse_prior(name, spec) for name, spec in overrides.items()}  # fixed ones' too: a bad one is a typo
    return {name: given[name] if name in given else _default_prior(name, defaults[name]) for name in free}


def _default_prior(name: str, spec: Mapping[str, Any]) -> Prior:
    """A default prior, which sits on the data's or the system's scale: when that scale is outside
    the sampler's range, the line says where the default came from, since the user set no prior."""
    try:
        return parse_prior(name, spec)
    except LvsweepError as err:
        origin = "the first observation" if name.startswith("x0_") else "the system's value"
        raise LvsweepError(err.field, f"the default prior, around {origin} ({spec.get('median')}), {err.problem}; "
                                      f"or set estimate.priors.{name}") from None
