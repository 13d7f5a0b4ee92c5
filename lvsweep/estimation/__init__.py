"""Fit a dynamical system to observed series, with uncertainty; and test whether weighting helps.

Function-level API for the CLI / pipeline (to be wired in later):

    series = load_series(path, time_column, state_columns, n_params, n_states=system.dim)
             # -> ObservedSeries(t [T], y [T, d], names, source); LvsweepError on bad data
    series = lynx_hare()                       # the packaged Hudson's Bay records, [prey=Hare, predator=Lynx]
    result = fit(system, series, free=None, priors=None, fixed=None, seed=0, settings=FitSettings())
             # -> EstimationResult
    result.metrics()                           # {"estimate/alpha": ..., "estimate/alpha_low": ..., ...}
    result.write_posterior_csv(dir / "posterior.csv")
    result.write_figures(dir)                  # {"fit": dir/fit.png, "posterior": dir/posterior.png}

    fit_weighted(system, t, y, weights, free_params, start) -> WeightedFit   # weighted point estimate
    study = weighting_study(system, truth, t, y_noisy, attention, state_norm, rng)
    study.metrics()                            # estimate/rel_error_<weighting>[_<param>], attention_gain...

Names of quantities: a system parameter (`alpha`), an initial state `x0_<state>`, a noise level
`sigma_<state>`. Priors are dicts of specs, e.g. {"alpha": {"kind": "lognormal", "median": 1,
"sigma": 1}} (see priors.py), ready to come from YAML.
"""
from lvsweep.estimation.fit import FitSettings, fit
from lvsweep.estimation.model import Model, quantity_names
from lvsweep.estimation.observed import ObservedSeries, load_series, lynx_hare
from lvsweep.estimation.result import EstimationResult, Estimate
from lvsweep.estimation.weighting import WeightedFit, WeightingStudy, fit_weighted, weighting_study

__all__ = ["Estimate", "EstimationResult", "FitSettings", "Model", "ObservedSeries", "fit", "load_series",
           "lynx_hare", "quantity_names", "WeightedFit", "WeightingStudy", "fit_weighted", "weighting_study"]
