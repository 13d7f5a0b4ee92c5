"""The names of the metrics runs log, defined once: analysis, training, tracking, the summary,
the report and the sweeper import them from here (tests spell them out: they check the contract)."""
from __future__ import annotations

TRAIN_LOSS = "train/loss"  # reconstruction loss on the training input
VAL_LOSS = "val/loss"  # the same on the independent validation draw
VAL_NOISY_MSE = "val/noisy_mse"  # the validation input's own error against the clean orbit (the loss of doing nothing)
VAL_R2 = "val/r2"  # 1 - val/loss / val/noisy_mse: > 0 when the model denoises
ALIGN_PEARSON = "align/pearson"  # Pearson r of attention with the sensitivity along the orbit
ALIGN_SPEARMAN = "align/spearman"  # Spearman rho of the same
ALIGN_ANTICORRELATION = "align/anticorrelation"  # -align/spearman: what a search maximises
ALIGN_SPEARMAN_CI_LOW = "align/spearman_ci_low"  # 95 % t-interval of rho over replicates
ALIGN_SPEARMAN_CI_HIGH = "align/spearman_ci_high"
ALIGN_SPEARMAN_INIT = "align/spearman_init"  # rho of the untrained model's attention
ALIGN_BASELINE_NORM = "align/baseline_norm"  # rho of the noisy state's norm (needs no training)
ALIGN_BASELINE_LINEAR = "align/baseline_linear"  # rho of the best linear score of the noisy state (needs no training)
ALIGN_EXCESS = "align/excess"  # the model's anticorrelation minus the strongest baseline's
ALIGN_PVALUE = "align/pvalue"  # one-sided p against circular shifts of attention in time
ALIGN_TRAINING_GAIN = "align/training_gain"  # anticorrelation trained minus untrained
PERTURB_LOW_OVER_HIGH = "perturb/low_over_high"  # separation after low- over high-attention kicks
DYNAMICS_MAX_LYAPUNOV = "dynamics/max_lyapunov"  # largest Lyapunov exponent estimated along the orbit
SENSITIVITY_FTLE_VS_LYAPUNOV_SPEARMAN = "sensitivity/ftle_vs_lyapunov_spearman"  # rho between the FTLE and the Lyapunov profile (systems with V)
PRC_SPEARMAN = "prc/spearman"  # rho of attention with the phase response (analysis.prc=true)
PRC_PERIOD = "prc/period"  # the oscillation's period (analysis.prc=true)
PRIOR_PLAUSIBLE = "estimate/prior_plausible"  # share of prior draws whose orbit stays within 10x of the observed range
BEST = "best/"  # + a metric: its best value over a sweep's or study's runs, on the parent run
ESTIMATE_ATTENTION_GAIN = "estimate/attention_gain"  # error(uniform)/error(attention) of weighted fits (analysis.estimate=true)

# Final metrics every run logs; `objectives` must name some of them.
RUN_METRICS = (TRAIN_LOSS, VAL_LOSS, ALIGN_PEARSON, ALIGN_SPEARMAN, ALIGN_ANTICORRELATION, PERTURB_LOW_OVER_HIGH,
               VAL_R2, VAL_NOISY_MSE, ALIGN_EXCESS, ALIGN_PVALUE, ALIGN_TRAINING_GAIN, DYNAMICS_MAX_LYAPUNOV)
# Metrics logged during training, not only at its end (what a pruner can be given), each with the
# direction in which it is better.
HISTORY_METRICS = {ALIGN_ANTICORRELATION: "maximize", ALIGN_SPEARMAN: "minimize", ALIGN_PEARSON: "minimize",
                   VAL_LOSS: "minimize", TRAIN_LOSS: "minimize"}
# Final metrics only some runs log: each with the setting that turns it on.
OPTIONAL_METRICS = {PRC_SPEARMAN: "analysis.prc=true", PRC_PERIOD: "analysis.prc=true",
                    ESTIMATE_ATTENTION_GAIN: "analysis.estimate=true"}

# The light phase response of circadian pacemakers (analysis.lightprc=true; lvsweep.analysis.lightprc),
# in hours from the CBT minimum; advance > 0.
LIGHTPRC_MAX_ADVANCE = "lightprc/max_advance"  # the largest shift (h)
LIGHTPRC_MAX_ADVANCE_PHASE = "lightprc/max_advance_phase"  # its pulse phase (h from CBTmin)
LIGHTPRC_MAX_DELAY = "lightprc/max_delay"  # the largest delay, as a positive number of hours
LIGHTPRC_MAX_DELAY_PHASE = "lightprc/max_delay_phase"  # its pulse phase (h from CBTmin)
LIGHTPRC_PEAK_TO_TROUGH = "lightprc/peak_to_trough"  # max_advance + max_delay (h)
LIGHTPRC_TYPE = "lightprc/type"  # 1: type 1 (continuous) resetting, 0: type 0
LIGHTPRC_CROSSOVER = "lightprc/crossover"  # phase where delays turn to advances (h from CBTmin)
LIGHTPRC_DEAD_ZONE = "lightprc/dead_zone"  # longest span of phases with |shift| < 0.5 h (h)
LIGHTPRC_DELAYS_THEN_ADVANCES = "lightprc/delays_then_advances"  # 1: delays in the 6 h before CBTmin, advances after
LIGHTPRC_DRIFT = "lightprc/drift"  # mean shift of the protocol without the pulse (h)
LIGHTPRC_DIFF = "lightprc/diff/"  # + a feature's name: the model's value minus the measured one
LIGHTPRC_SPEARMAN = "lightprc/spearman"  # rho of attention with |light PRC| along the orbit
LIGHTPRC_SPEARMAN_ADVANCE = "lightprc/spearman_advance"  # the same, over the times of the advance lobe
LIGHTPRC_SPEARMAN_DELAY = "lightprc/spearman_delay"  # the same, over the times of the delay lobe
LIGHTPRC_PERIOD = "lightprc/period"  # the training orbit's period (h)
LIGHTPRC_ATTENTION_PEAK = "lightprc/attention_peak_phase"  # phase of attention's peak (h from CBTmin)
LIGHTPRC_PEAK_ERROR_ADVANCE = "lightprc/peak_error_advance"  # |circular difference| to max_advance_phase (h)
LIGHTPRC_PEAK_ERROR_DELAY = "lightprc/peak_error_delay"  # |circular difference| to max_delay_phase (h)
LIGHTPRC_BASELINE_NORM = "lightprc/baseline_norm"  # rho of the noisy state's norm with |light PRC|
LIGHTPRC_BASELINE_LINEAR = "lightprc/baseline_linear"  # rho of the best linear score with |light PRC|
LIGHTPRC_SPEARMAN_INIT = "lightprc/spearman_init"  # rho of the untrained model's attention
LIGHTPRC_EXCESS = "lightprc/excess"  # anticorrelation with |light PRC| minus the strongest baseline's
LIGHTPRC_PVALUE = "lightprc/pvalue"  # one-sided p of the anticorrelation against circular shifts
LIGHTPRC_TRAINING_GAIN = "lightprc/training_gain"  # anticorrelation trained minus untrained
OPTIONAL_METRICS.update({LIGHTPRC_SPEARMAN: "analysis.lightprc=true", LIGHTPRC_EXCESS: "analysis.lightprc=true",
                         LIGHTPRC_PEAK_TO_TROUGH: "analysis.lightprc=true"})
