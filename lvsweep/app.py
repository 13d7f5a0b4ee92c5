"""The Hydra task: one job = validate → open the run → run the experiment → record → summarise.

A job that fails inside a multirun is recorded as FAILED and returns NaN, so the sweep goes on
and any sweeper sees a failed objective; a single run re-raises, and the entry point turns the
error into one line and a non-zero exit.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lvsweep.config import CONF_MODULE, validate
from lvsweep.errors import LvsweepError, exit_with_error
from lvsweep.trial import PRUNED, PRUNED_TAG, TrialLink, TrialStop, TrialStopped
from lvsweep.metric_names import ALIGN_ANTICORRELATION, ALIGN_BASELINE_LINEAR, ALIGN_BASELINE_NORM, ALIGN_EXCESS, ALIGN_PEARSON, ALIGN_PVALUE, ALIGN_SPEARMAN, ALIGN_SPEARMAN_CI_HIGH, ALIGN_SPEARMAN_CI_LOW, ALIGN_SPEARMAN_INIT, ALIGN_TRAINING_GAIN, PERTURB_LOW_OVER_HIGH, PRIOR_PLAUSIBLE, TRAIN_LOSS, VAL_LOSS, VAL_NOISY_MSE, VAL_R2

if TYPE_CHECKING:
    from lvsweep.pipeline import RunResult
    from lvsweep.tracking.runs import RunRecorder

OBJECTIVE = ALIGN_ANTICORRELATION



def plain_config(cfg: DictConfig) -> DictConfig:
    """The resolved config with enums as strings: what the pipeline reads and what is logged."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def compose_config(*overrides: str) -> DictConfig:
    """The plain config the CLI would build from these overrides, for scripts and tests in-process."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONF_MODULE, version_base="1.3"):
        return plain_config(compose(config_name="config", overrides=list(overrides)))


def run_name(cfg: DictConfig, multirun: bool) -> str:
    if cfg.tracking.run_name:
        return str(cfg.tracking.run_name)
    if multirun:
        return HydraConfig.get().job.override_dirname or f"job{HydraConfig.get().job.num}"
    return "run"


def run_job(cfg: DictConfig) -> float | list[float] | TrialStop:
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    recorder: Optional[RunRecorder] = None
    from lvsweep import slurm

    slurm.take_job_signals()  # in a submitit job: SIGTERM and SLURM's USR2 close this run, not kill it
    if multirun:
        from lvsweep import interrupts

        interrupts.install_in_worker()  # in a joblib worker: SIGTERM closes this run too
    link: Optional[TrialLink] = None
    try:
        validate(cfg)
        plain = plain_config(cfg)
        link = TrialLink.of(plain.tracking.pop("trial", None))  # the sweeper's, not the run's config
        replay_of = plain.tracking.pop("replay_of", None)
        if replay_of is not None:
            from lvsweep.tracking.replay import recorded_config

            plain = recorded_config(plain, str(replay_of))
            validate(plain)
        from lvsweep.tracking.runs import PARENT_RUN_ENV

        parent = os.environ.get(PARENT_RUN_ENV) if multirun else None
        recorder = open_run(plain, run_name(plain, multirun), parent)
        log_config_params(recorder, plain)
        record_config(recorder, plain, out_dir)
        # The orbit first (cached for the pipeline): an ODE that blows up or exceeds its bounds fails
        # before seconds of torch imports.
        from lvsweep.systems.simulate import simulate

        simulate(plain.system)
        # Imported only now: a bad value or an unreachable store is reported before seconds of torch imports.
        from lvsweep.pipeline import run_experiment

        sink = recorder.log_metrics if link is None else link.sink(recorder.log_metrics)
        # The figures are drawn by a worker process while the CSVs and the model are logged; the run
        # closes only once they are logged too, and a figure that cannot be drawn fails it. In an
        # in-process sweep that happens while the next job trains (`lvsweep.tracking.closing`).
        from lvsweep.tracking import closing

        result = run_experiment(plain, sink, out_dir, background=True, label=run_name(plain, multirun),
                                before_figures=closing.settle)
        recorder.log_artifacts(result.artifacts, out_dir)
        if plain.analysis.log_model:
            from lvsweep.tracking.runs import flatten

            recorder.log_model(result.model, result.model_input, params=flatten(OmegaConf.to_container(plain)))
        from lvsweep.tracking.runs import NOTE_TAG

        if result.drawing is not None and link is None and closes_later(multirun):
            recorder.log_tags({**result.tags, NOTE_TAG: run_note(result, plain, out_dir)})
            recorder.flush()  # the numbers are in the store when the job returns; the figures follow
            closing.defer(lambda: close_when_drawn(recorder, result, out_dir))
        else:
            recorder.log_artifacts(result.wait_figures(), out_dir)
            recorder.log_tags({**result.tags, NOTE_TAG: run_note(result, plain, out_dir)})
            recorder.finish()
    except (KeyboardInterrupt, SystemExit) as exc:
        from lvsweep.interrupts import exit_status, note, stop_exception, terminated

        note(exc)  # a SIGTERM that reached us as Lightning's SIGTERMException counts as one
        stop = stop_exception()  # Ctrl-C or SIGTERM, whatever shape it took on the way here
        if recorder is not None:
            if slurm.requeued():
                recorder.log_tags({slurm.REQUEUED_TAG: "true"})
            recorder.finish(error=stop, status="KILLED")
        if slurm.in_job() and terminated():  # the scheduler stops this job: it ends here, quietly
            slurm.hand_over_requeue()  # submitit requeues it and exits, when it may
            sys.exit(exit_status())
        if isinstance(exc, SystemExit):  # Lightning turns both into SystemExit(1): say what it was
            raise stop from exc
        raise
    except TrialStopped as exc:  # pruned, or out of time: stopped between steps, all logged so far kept
        if recorder is None:
            recorder = record_failed_job(cfg, run_name(cfg, multirun))
        if recorder is not None:
            if exc.stop.kind == PRUNED:
                recorder.log_tags({PRUNED_TAG: str(exc.stop.step)})
            recorder.finish(error=exc, status="KILLED")
        return exc.stop
    except Exception as exc:
        if recorder is None and multirun:
            recorder = record_failed_job(cfg, run_name(cfg, multirun))
        if recorder is not None:
            recorder.finish(error=exc)
        if not multirun:
            if isinstance(exc, LvsweepError):  # Hydra would add a report of its own to a raised error
                exit_with_error(str(exc))
            raise
        print(f"  job failed: {describe(exc)}", file=sys.stderr)
        return objective_value(cfg, {})
    print_summary(result, recorder.run_id, recorder.experiment_id, plain, out_dir, multirun)
    return objective_value(cfg, result.metrics)


def closes_later(multirun: bool) -> bool:
    """Whether this job's run may close after it returns: in a multirun of Hydra's basic sweeper
    and launcher only, where this process runs the next job and the sweep's end
    (`lvsweep.tracking.closing`)."""
    if not multirun:
        return False
    from lvsweep.tracking.closing import BASIC_LAUNCHER
    from lvsweep.tracking.sweeps import BASIC_SWEEPER

    hydra_cfg = HydraConfig.get()
    return hydra_cfg.sweeper.get("_target_") == BASIC_SWEEPER and hydra_cfg.launcher.get("_target_") == BASIC_LAUNCHER


def close_when_drawn(recorder: RunRecorder, result: RunResult, out_dir: Path) -> None:
    """A deferred close: the figures logged and the run FINISHED, or FAILED with the figure's error
    (said in one line, as a failed job is); a stop while it waits closes the run KILLED."""
    try:
        recorder.log_artifacts(result.wait_figures(), out_dir)
    except Exception as exc:
        recorder.finish(error=exc)
        print(f"  job {recorder.run_id[:8]} failed: {describe(exc)}", file=sys.stderr)
        return
    except BaseException:
        from lvsweep.interrupts import stop_exception

        recorder.finish(error=stop_exception(), status="KILLED")
        raise
    recorder.finish()


def objective_value(cfg: DictConfig, metrics: dict[str, float]) -> float | list[float]:
    """The value(s) a sweeper optimises: NaN for a failed job, so the sweeper sees the failure."""
    values = [metrics.get(name, math.nan) for name in cfg.objectives]
    return values[0] if len(values) == 1 else values


def open_run(plain: DictConfig, name: str, parent: Optional[str]) -> RunRecorder:
    from lvsweep.tracking.runs import RunRecorder, open_store, resolve_uri

    client, experiment_id = open_store(resolve_uri(plain.tracking.uri), plain.tracking.experiment)
    return RunRecorder(client, experiment_id, name, parent, tags={**data_tags(plain), **plain.tracking.tags},
                       lead=str(plain.objectives[0]))


def data_tags(plain: DictConfig) -> dict[str, str]:
    """The observed-data file a run reads, by absolute path and checksum when the run starts, so
    that a replay reads the same file and refuses one that has changed."""
    from lvsweep.tracking import provenance

    if str(plain.data.source) != "csv" or not plain.data.path:
        return {}
    path = Path(os.path.expanduser(str(plain.data.path))).absolute()
    if not path.is_file():  # the reader names data.path and says what is wrong with it
        return {}
    return {provenance.DATA_FILE_TAG: str(path), provenance.DATA_SHA_TAG: provenance.sha256(path)}


def log_config_params(recorder: RunRecorder, plain: DictConfig) -> None:
    """Every config value as a param: written once the caller holds the recorder, so a signal
    arriving meanwhile still finds the run to close."""
    from lvsweep.tracking.runs import flatten

    recorder.log_params(flatten(OmegaConf.to_container(plain)))


def record_config(recorder: RunRecorder, plain: DictConfig, out_dir: Path) -> None:
    """The resolved config as `config.yaml`, in the job's directory and as an artifact, before any
    training: a run cut short (killed, out of memory, a time limit) still says what it was running.
    Hydra's own `.hydra/config.yaml` beside it is unresolved and is not logged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.yaml"
    path.write_text(OmegaConf.to_yaml(plain))
    recorder.log_artifacts([path], out_dir)


def record_failed_job(cfg: DictConfig, name: str) -> Optional[RunRecorder]:
    """A job rejected before its run opened still gets a (FAILED) run, so the sweep shows it."""
    from lvsweep.tracking.runs import PARENT_RUN_ENV

    try:
        plain = plain_config(cfg)
        plain.tracking.pop("trial", None)
        plain.tracking.pop("replay_of", None)
        recorder = open_run(plain, name, os.environ.get(PARENT_RUN_ENV))
        log_config_params(recorder, plain)
        return recorder
    except Exception:  # the store itself is the problem: nothing can be recorded
        return None


def describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, LvsweepError) else f"{type(exc).__name__}: {exc}"


def print_summary(result: RunResult, run_id: str, experiment_id: str, cfg: DictConfig, out_dir: Path,
                  multirun: bool) -> None:
    """The run's summary: a multirun's job in one line, a single run in full (`summary_lines`)."""
    m = result.metrics
    if multirun:
        line = (f"pearson {m[ALIGN_PEARSON]:+.3f}  spearman {m[ALIGN_SPEARMAN]:+.3f}  "
                f"gain {m[ALIGN_TRAINING_GAIN]:+.3f}  excess {m[ALIGN_EXCESS]:+.3f}  p {m[ALIGN_PVALUE]:.3f}  "
                f"low/high {m[PERTURB_LOW_OVER_HIGH]:.3f}  val/loss {m[VAL_LOSS]:.4g} "
                f"(input {m[VAL_NOISY_MSE]:.4g}, R² {m[VAL_R2]:+.2f})")
        flags = short_verdicts(m)
        print(f"  {line}" + (f"  ⇒ {'; '.join(flags)}" if flags else ""))
        return
    print("\n".join(["", *summary_lines(result, cfg, out_dir), *browse_lines(run_id, experiment_id, cfg)]))


def summary_lines(result: RunResult, cfg: DictConfig, out_dir: Path) -> list[str]:
    """The run's numbers with what they mean: each against what it must beat (the baselines, the
    untrained model, the noisy input's own error), and a plain sentence where the answer is no.
    The terminal prints them after a single run; every finished run's MLflow note holds them."""
    from lvsweep.analysis.controls import BASELINES, strongest_baseline
    from lvsweep.tracking.provenance import origin, run_tags

    m = result.metrics
    measure = result.tags.get("lvsweep.sensitivity", cfg.analysis.sensitivity)
    strongest, _ = strongest_baseline(m)
    observed = str(cfg.data.source) != "simulated"
    data = (f"data {cfg.data.source}" + (f" ({cfg.data.path})" if cfg.data.path else "") if observed
            else f"noise {cfg.noise.kind} {cfg.noise.level:g}")
    return [
        f"{origin(run_tags())} · {cfg.system.name} · {data} · "
        f"model {cfg.model.name} · seed {cfg.seed} · replicates {cfg.replicates}",
        *estimate_lines(m, cfg),
        f"  attention vs {measure}:  Pearson r = {m[ALIGN_PEARSON]:+.3f}   "
        f"Spearman ρ = {m[ALIGN_SPEARMAN]:+.3f}{spread(m, cfg.replicates)}   (anticorrelation {m[OBJECTIVE]:+.3f})",
        f"  controls (Spearman ρ): state norm {m[ALIGN_BASELINE_NORM]:+.3f}   best linear score "
        f"{m[ALIGN_BASELINE_LINEAR]:+.3f}   untrained {m[ALIGN_SPEARMAN_INIT]:+.3f}",
        f"  training gain {m[ALIGN_TRAINING_GAIN]:+.3f} (anticorrelation trained − untrained)   "
        f"excess {m[ALIGN_EXCESS]:+.3f} over the strongest baseline ({BASELINES.get(strongest, 'none')})",
        f"  circular-shift p = {m[ALIGN_PVALUE]:.3f} (one-sided)   "
        f"perturb/low_over_high = {m[PERTURB_LOW_OVER_HIGH]:.3f} (paper's claim: > 1)",
        *(f"  ⇒ {sentence}" for sentence in verdicts(m)),
        *light_prc_lines(m),
        f"  reconstruction: {denoising(m)}",
        f"  figures: {out_dir / 'figures'}",
    ]


def browse_lines(run_id: str, experiment_id: str, cfg: DictConfig) -> list[str]:
    """Where a single run's summary says to look next: its model, and the UI."""
    from lvsweep.tracking.runs import resolve_uri, ui_link

    lines = [f"  model: mlflow.pytorch.load_model('runs:/{run_id}/model')"] if cfg.analysis.log_model else []
    return lines + [f"  run {run_id} in experiment '{cfg.tracking.experiment}'; browse with:",
                    f"    mlflow ui --backend-store-uri {resolve_uri(cfg.tracking.uri)}",
                    f"    then open {ui_link(experiment_id)}"]


NOTE_METRICS = (ALIGN_ANTICORRELATION, ALIGN_TRAINING_GAIN, ALIGN_EXCESS, ALIGN_PVALUE, PERTURB_LOW_OVER_HIGH,
                VAL_LOSS, VAL_NOISY_MSE, VAL_R2)  # the key numbers a run's note lists under its verdict


def run_note(result: RunResult, cfg: DictConfig, out_dir: Path) -> str:
    """The run page's note (`mlflow.note.content`, Markdown): the verdicts as a list, the key
    numbers as a table, and the terminal's summary lines as they print, so the UI states what the
    terminal said. A failed run's note is its reason instead (`close_run`)."""
    m = result.metrics
    said = [*verdicts(m), denoising(m)]
    rows = [f"| `{name}` | {m[name]:.4g} |" for name in NOTE_METRICS if name in m]
    return "\n".join(["**Verdict**", "", *(f"- {line}" for line in said), "",
                      "| metric | value |", "| --- | --- |", *rows, "",
                      "```text", *summary_lines(result, cfg, out_dir), "```"])[:5000]


def light_prc_lines(m: dict[str, float]) -> list[str]:
    """The light PRC's features beside the measured human curve's, and attention's alignment with it."""
    from lvsweep.metric_names import (LIGHTPRC_BASELINE_LINEAR, LIGHTPRC_CROSSOVER, LIGHTPRC_DEAD_ZONE, LIGHTPRC_DIFF,
                                      LIGHTPRC_DRIFT, LIGHTPRC_EXCESS, LIGHTPRC_PEAK_TO_TROUGH, LIGHTPRC_PVALUE,
                                      LIGHTPRC_SPEARMAN)

    if LIGHTPRC_PEAK_TO_TROUGH not in m:
        return []
    diff = lambda key: m.get(LIGHTPRC_DIFF + key.rpartition("/")[2], math.nan)  # noqa: E731
    return [f"  light PRC (Khalsa et al. 2003 protocol): peak-to-trough {m[LIGHTPRC_PEAK_TO_TROUGH]:.2f} h "
            f"({diff(LIGHTPRC_PEAK_TO_TROUGH):+.2f} vs measured)   crossover {m[LIGHTPRC_CROSSOVER]:+.2f} h from "
            f"CBTmin   dead zone {m[LIGHTPRC_DEAD_ZONE]:.1f} h   drift {m[LIGHTPRC_DRIFT]:+.2f} h "
            f"({diff(LIGHTPRC_DRIFT):+.2f} vs measured)",
            f"  attention vs |light PRC|: Spearman ρ = {m[LIGHTPRC_SPEARMAN]:+.3f}   best linear score "
            f"{m[LIGHTPRC_BASELINE_LINEAR]:+.3f}   excess {m[LIGHTPRC_EXCESS]:+.3f}   circular-shift p = "
            f"{m[LIGHTPRC_PVALUE]:.3f}"]


def estimate_lines(m: dict[str, float], cfg: DictConfig) -> list[str]:
    """The fit of observed data (estimates, 80 % intervals, diagnostics) and the weighting study."""
    out = []
    names = [k[len("estimate/"):-len("_low")] for k in m if k.startswith("estimate/") and k.endswith("_low")
             and not k.startswith("estimate/attention_gain")]
    if names:
        out.append("  fit to the observations (posterior median [80 % interval]); the analysis below runs on "
                   "the fitted system's orbit at the observation times:")
        out += [f"    {n:<14} {m[f'estimate/{n}']:.4g} [{m[f'estimate/{n}_low']:.4g}, {m[f'estimate/{n}_high']:.4g}]"
                for n in names]
        sigmas = "  ".join(f"{k[len('estimate/'):]} {v:.3g}" for k, v in m.items() if k.startswith("estimate/sigma_"))
        out.append(f"    {sigmas}")
        converged = "converged" if m.get("estimate/converged", 0) >= 1 else \
            "NOT converged (chain shorter than 50 τ: raise estimate.steps)"
        out.append(f"    sampler: acceptance {m['estimate/acceptance']:.3f}  τmax {m['estimate/autocorr_max']:.1f}  "
                   f"ESS_min {m['estimate/ess_min']:.0f}  {converged}  ({m.get('estimate/seconds', math.nan):.0f} s)")
        if PRIOR_PLAUSIBLE in m:
            out.append(f"    prior predictive: {100 * m[PRIOR_PLAUSIBLE]:.0f} % of prior draws stay within a factor 10 of "
                       f"the observed range ({PRIOR_PLAUSIBLE})")
    if "estimate/attention_gain" in m:
        ci = (f" [95% CI {m['estimate/attention_gain_ci_low']:.3g}, {m['estimate/attention_gain_ci_high']:.3g}; "
              f"p = {m['estimate/attention_gain_pvalue']:.3f}]" if "estimate/attention_gain_ci_low" in m else "")
        errs = "  ".join(f"{w} {m[f'estimate/rel_error_{w}']:.3g}" for w in
                         ("uniform", "attention", "inverse_attention", "state_norm", "permuted"))
        out.append(f"  weighted fits, mean relative error: {errs}")
        gain = m["estimate/attention_gain"]
        out.append(f"  estimate/attention_gain {gain:.3g}{ci} (> 1: attention weighting estimates better than uniform)")
    return out


def verdicts(m: dict[str, float]) -> list[str]:
    """Plain sentences for the two ways a run says nothing about learnt sensitivity: training
    weakened the alignment (gain < 0), or a baseline that needs no training does as well (excess ≤ 0)."""
    from lvsweep.analysis.controls import BASELINES, strongest_baseline

    out = []
    if m[ALIGN_TRAINING_GAIN] < 0:
        out.append(f"training weakened the alignment: the untrained model anticorrelated more "
                   f"(ρ {m[ALIGN_SPEARMAN_INIT]:+.3f} before training, {m[ALIGN_SPEARMAN]:+.3f} after)")
    if m[ALIGN_EXCESS] <= 0:
        name, rho = strongest_baseline(m)
        untrained = name == ALIGN_SPEARMAN_INIT
        out.append(f"the model beats none of the baselines: the {BASELINES[name]}"
                   f"{'' if untrained else ', which needs no training,'} anticorrelates at least as much "
                   f"(ρ {rho:+.3f} vs {m[ALIGN_SPEARMAN]:+.3f})")
    elif m[ALIGN_EXCESS] > 0:
        out.append(f"the attention anticorrelates more than every baseline, by {m[ALIGN_EXCESS]:.3f}"
                   + ("" if m[ALIGN_PVALUE] <= 0.05 else
                      f", but not significantly against circular shifts (p = {m[ALIGN_PVALUE]:.3f})"))
    return out


def short_verdicts(m: dict[str, float]) -> list[str]:
    """The same verdicts in a few words, for a multirun's one line per job."""
    out = []
    if m[ALIGN_TRAINING_GAIN] < 0:
        out.append("training weakened it")
    if m[ALIGN_EXCESS] <= 0:
        out.append("beats none of the baselines")
    if not m[VAL_LOSS] < m[VAL_NOISY_MSE]:
        out.append("does not denoise")
    return out


def denoising(m: dict[str, float]) -> str:
    """`val/loss` against the error of doing nothing (`val/noisy_mse`) and `val/r2`, in words."""
    loss, noisy, r2 = m[VAL_LOSS], m[VAL_NOISY_MSE], m[VAL_R2]
    head = f"val loss {loss:.4g} vs {noisy:.4g} for the noisy input itself; R² {r2:+.2f}: "
    if loss < noisy:
        verdict = f"the model denoises ({100 * (1 - loss / noisy):.0f} % lower error than its input)"
    else:
        verdict = "the model does not denoise (returning the noisy input would do better)"
    return f"{head}{verdict}   (train loss {m[TRAIN_LOSS]:.4g})"


def spread(m: dict[str, float], replicates: int) -> str:
    """The 95 % interval over replicates, when there are several."""
    if replicates < 2:
        return ""
    return f" [95% CI {m[ALIGN_SPEARMAN_CI_LOW]:+.3f}, {m[ALIGN_SPEARMAN_CI_HIGH]:+.3f}; {replicates} replicates]"


@hydra.main(version_base="1.3", config_path=f"pkg://{CONF_MODULE}", config_name="config")
def task(cfg: DictConfig) -> Any:
    return run_job(cfg)
