"""One experiment, in the order the data flows: system → data → model → training → analysis.

It knows nothing of Hydra or MLflow: it takes a validated config, a metric sink and an output
directory, and returns the final metrics, the artifacts and the trained model; the caller decides
where they are recorded.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from lvsweep.config.validation import is_observed
from lvsweep.metric_names import ALIGN_ANTICORRELATION, PERTURB_LOW_OVER_HIGH, PRC_SPEARMAN, PRIOR_PLAUSIBLE

if TYPE_CHECKING:
    import torch

    from lvsweep.analysis.plotting import Drawing, FigureCall
    from lvsweep.data.trajectory import TrajectoryData
    from lvsweep.models import AttentionModel
    from lvsweep.systems import DynamicalSystem
    from lvsweep.systems.simulate import Orbit
    from lvsweep.training.callbacks import MetricSink

CYCLE_FIGURES = "lvsweep.analysis.cycle_figures"  # the module of the PRC figures
# The step of every value a run logs once (controls, reconstruction, perturbation, PRC and weighting
# results; the observed fit's): MLflow's run page draws a metric whose only point is at step 0 as a
# labelled bar, where one point at the last step is a lone dot on an axis one step wide. Histories
# (losses, alignment) keep their steps, their final value at the last one.
ONCE = 0
# torch, Lightning, SciPy's statistics and matplotlib are imported where they are used: a job that
# has its figures drawn by the figure workers (`lvsweep.analysis.plotting`) starts them before it
# imports torch, so that they import and warm up side by side with it.


@dataclass
class RunResult:
    metrics: dict[str, float]
    artifacts: list[Path] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    # The trained model (on the CPU) and the input it attends over, the noisy training sequence
    # [T, d], or [R, T, d] with replicates: the caller logs them as the run's `model`, so that
    # `model.attention(model_input)` reproduces attention.csv without this module knowing MLflow.
    model: Optional[AttentionModel] = None
    model_input: Optional[np.ndarray] = None
    # Figures still being drawn by the workers (`run_experiment(..., background=True)`): not in
    # `artifacts` until `wait_figures()` returns them.
    drawing: Optional[Drawing] = None

    def wait_figures(self) -> list[Path]:
        """The figures drawn in the background, once written (none without them); a figure that
        could not be drawn raises its error here."""
        if self.drawing is None:
            return []
        paths, self.drawing = self.drawing.paths(), None
        self.artifacts += paths
        return paths


@dataclass
class Observed:
    """Observed data fitted first: the fitted system, its orbit at the observation times (posterior
    median parameters and initial state) and the training data (the observed series as input)."""
    system: DynamicalSystem
    orbit: Orbit
    data: TrajectoryData
    metrics: dict[str, float]
    artifacts: list[Path]


def fit_observed(cfg: Any, seeds: list[int], sink: MetricSink, out_dir: Path, label: str) -> Observed:
    """data=lynx_hare or data=csv: the Bayesian fit (estimate/* metrics, posterior.csv, figures/fit.png,
    figures/posterior.png), then what the analysis runs on. There is no second noise draw of observed
    data: the validation input is the observed series itself (val/* measure the model against the
    fitted orbit on its own training input). `label`: the run's name, in the figures' caption."""
    from omegaconf import OmegaConf

    from lvsweep.data.trajectory import TrajectoryData
    from lvsweep.estimation import fit
    from lvsweep.estimation.configured import fit_settings, free_quantities, observed_series, priors
    from lvsweep.systems import make_system
    from lvsweep.systems.simulate import Orbit, Solver, integrate

    system = make_system(cfg.system)
    series = observed_series(cfg, system)
    result = fit(system, series, free_quantities(cfg, system), priors(cfg), seed=cfg.seed, settings=fit_settings(cfg))
    from lvsweep.estimation.calibration import prior_plausible_share

    metrics = {**result.metrics(), "estimate/seconds": float(sum(result.seconds.values())),
               PRIOR_PLAUSIBLE: prior_plausible_share(result.model, np.random.default_rng([cfg.seed, 11]))}
    sink(metrics, ONCE)
    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = [result.write_posterior_csv(out_dir / "posterior.csv")]
    if cfg.analysis.figures:
        artifacts += list(result.write_figures(out_dir / "figures", seed=cfg.seed,
                                                 caption_text=figure_caption(cfg, label)).values())
    est = result.estimates()
    value = {**result.model.fixed, **{n: e.median for n, e in est.items()}}
    params = {n: float(value[n]) for n in cfg.system.params}
    start = [float(value[f"x0_{s}"]) for s in system.state_names]
    fitted_cfg = OmegaConf.merge(cfg.system, {"params": params, "start": start})
    fitted = make_system(fitted_cfg)
    x = integrate(fitted, np.asarray(start), series.t, cfg.system.rtol, cfg.system.atol, Solver.of(cfg.system))[0]
    orbit = Orbit(np.asarray(series.t, dtype=float), x)
    y = np.asarray(series.y, dtype=float)
    noisy = y if len(seeds) == 1 else np.repeat(y[None], len(seeds), axis=0)
    return Observed(fitted, orbit, TrajectoryData(orbit.t, x, noisy, noisy.copy()), metrics, artifacts)


def run_experiment(cfg: Any, sink: MetricSink, out_dir: Path, background: bool = False, label: str = "run",
                   before_figures: Optional[Callable[[], None]] = None) -> RunResult:
    """The experiment of `cfg`, its metrics sent to `sink` as they come, its files in `out_dir`.

    `label`: the run's short name (its name in the store, e.g. `noise.level=2`), which every figure
    carries in its caption with the system, model, data and seed, so that a figure opened on its
    own says which run it shows.

    `background`: the figures are drawn by the figure workers while the caller goes on (it logs the
    CSVs and the model meanwhile) and are in the result's `artifacts` once `wait_figures()` has
    returned them. Without it they are drawn here, before this returns. Either way the figures, and
    every number, are the same. `before_figures`: called once training and the analysis are done,
    before the first figure is handed over (the caller closes an earlier job's run there,
    `lvsweep.tracking.closing`)."""
    drawing = None
    if background and cfg.analysis.figures:
        from lvsweep.analysis.plotting import Drawing

        drawing = Drawing(before_figures)  # the workers start now, and import while this job imports torch

    import torch

    from lvsweep.analysis.controls import baseline_metrics, control_metrics
    from lvsweep.analysis.perturbation import perturbation_test
    from lvsweep.analysis.reconstruction import reconstruction_metrics
    from lvsweep.analysis.sensitivity import measure_sensitivity
    from lvsweep.data.trajectory import TrajectoryDataModule, make_replicate_data, replicate_seed
    from lvsweep.models import make_replicates
    from lvsweep.systems import make_system
    from lvsweep.systems.simulate import Solver, simulate
    from lvsweep.training.callbacks import AlignmentCallback, LossHistory, on_device
    from lvsweep.training.trainer import fit

    seeds = [replicate_seed(cfg.seed, r) for r in range(cfg.replicates)]
    solver = Solver.of(cfg.system)  # every later solve runs with the method and bounds of the orbit's
    observed = fit_observed(cfg, seeds, sink, out_dir, label) if is_observed(cfg) else None
    if observed is not None:
        system, orbit = observed.system, observed.orbit
    else:
        system, orbit = make_system(cfg.system), simulate(cfg.system)
    report = measure_sensitivity(cfg.analysis.sensitivity, system, orbit, cfg.analysis.ftle_horizon,
                                 cfg.system.rtol, cfg.system.atol, solver)
    profile = report.profile
    sink(report.metrics, ONCE)
    if observed is not None:
        data = observed.data
    else:
        data = make_replicate_data(orbit, cfg.noise.kind, cfg.noise.level, seeds)
    datamodule = TrajectoryDataModule(data)

    noisy_train = datamodule.train_batch[0]
    model = make_replicates(cfg.model, system.dim, cfg.trainer.epochs, cfg.trainer.log_every, seeds,
                            noisy_train.reshape(-1, *noisy_train.shape[-2:]))
    init_attention = read_attention(model, noisy_train)
    # Baselines read only the input: logged once, at step 0, where the histories of the model start.
    baselines = baseline_metrics(data.replicates_train(), profile.values)
    sink(baselines, ONCE)
    losses = LossHistory(sink, datamodule.train_batch, datamodule.val_batch)
    align = AlignmentCallback(noisy_train, profile.values, cfg.trainer.align_every, sink)
    fit(model, datamodule, cfg.trainer, [losses, align])

    replicate_attention = read_attention(model, noisy_train)  # [R, T]
    attention = replicate_attention.mean(axis=0)  # the model's own attention when R = 1
    heads = None
    if hasattr(model, "head_attention"):
        with torch.no_grad():
            heads = model.head_attention(on_device(noisy_train, model)).cpu().numpy().astype(float)
        heads = heads.reshape(-1, *heads.shape[-2:]).mean(axis=0)
    recon = reconstruction_metrics(model, datamodule.val_batch)
    controls = control_metrics(replicate_attention, init_attention, data.replicates_train(), profile.values,
                               align.final[ALIGN_ANTICORRELATION])
    sink({k: v for k, v in {**recon, **controls}.items() if k not in baselines}, ONCE)  # the controls repeat them
    p = cfg.analysis.perturb
    pert = perturbation_test(system, orbit, profile.normals, attention, p.k, p.epsilon, p.horizon,
                             cfg.system.rtol, cfg.system.atol, solver=solver)
    sink({PERTURB_LOW_OVER_HIGH: pert.low_over_high}, ONCE)
    metrics = {**losses.final, **recon, **align.final, **controls, PERTURB_LOW_OVER_HIGH: pert.low_over_high,
               **report.metrics}
    if observed is not None:
        metrics.update(observed.metrics)
    if cfg.analysis.estimate:
        study = weighting_metrics(cfg, system, orbit, data, replicate_attention)
        sink(study, ONCE)
        metrics.update(study)

    out_dir.mkdir(parents=True, exist_ok=True)
    artifacts = [*(observed.artifacts if observed is not None else [])]
    caption_text = figure_caption(cfg, label)
    if cfg.analysis.figures:
        from lvsweep.analysis.figures import figure_calls

        artifacts += draw(drawing, figure_calls(out_dir, system, data.t, data.clean, data.replicates_train()[0],
                                                attention, profile.values, profile.kind, metrics, pert, p.epsilon,
                                                heads, caption_text))
    artifacts += [
        write_attention_csv(out_dir / "attention.csv", system.state_names, data.t, data.clean,
                            data.replicates_train()[0], replicate_attention, profile.values),
        write_replicates_csv(out_dir / "replicates.csv", seeds, replicate_attention, init_attention,
                             profile.values, model, datamodule.val_batch),
    ]
    if cfg.analysis.prc:
        prc_metrics, prc_artifacts = phase_response_analysis(cfg, system, orbit, attention, out_dir, drawing,
                                                             caption_text)
        sink(prc_metrics, ONCE)
        metrics.update(prc_metrics)
        artifacts += prc_artifacts
    if cfg.analysis.lightprc:
        light_metrics, light_artifacts = light_prc_analysis(cfg, system, orbit, replicate_attention, init_attention,
                                                            data.replicates_train(), out_dir, drawing, caption_text)
        sink(light_metrics, ONCE)
        metrics.update(light_metrics)
        artifacts += light_artifacts
    return RunResult(metrics, artifacts, tags={"lvsweep.sensitivity": profile.kind}, model=model.cpu(),
                     model_input=noisy_train.numpy(), drawing=drawing)


def figure_caption(cfg: Any, label: str) -> str:
    """The line every figure of the run carries (`lvsweep.analysis.captions`)."""
    from lvsweep.analysis.captions import data_text, run_caption

    data = data_text(str(cfg.data.source), str(cfg.noise.kind), float(cfg.noise.level))
    return run_caption(str(cfg.system.name), str(cfg.model.name), data, int(cfg.seed), label)


def draw(drawing: Optional[Drawing], calls: list[FigureCall]) -> list[Path]:
    """Figures drawn here (no `drawing`: their paths) or handed to the workers (none yet)."""
    if drawing is None:
        from lvsweep.analysis.plotting import draw_inline

        return draw_inline(calls)
    drawing.add(calls)
    return []


def weighting_metrics(cfg: Any, system: DynamicalSystem, orbit: Orbit, data: TrajectoryData,
                      attention: np.ndarray) -> dict[str, float]:
    """analysis.estimate=true (simulated data): weighted fits of every parameter and initial state to
    each replicate's noisy series, uniform against the trained attention (per replicate), its
    inverse, its permutations and the state-norm baseline, scored against the configured truth."""
    from lvsweep.estimation import weighting_study

    noisy = data.replicates_train()  # [R, T, d]
    truth = {**{n: float(v) for n, v in cfg.system.params.items()},
             **{f"x0_{s}": float(v) for s, v in zip(system.state_names, orbit.x[0])}}
    study = weighting_study(system, truth, data.t, noisy, attention, np.linalg.norm(noisy, axis=-1),
                            np.random.default_rng(cfg.seed))
    return study.metrics()


def phase_response_analysis(cfg: Any, system: DynamicalSystem, orbit: Orbit, attention: np.ndarray,
                            out_dir: Path, drawing: Optional[Drawing] = None,
                            caption_text: str = "") -> tuple[dict[str, float], list[Path]]:
    """The oscillator's PRC, its alignment with attention, and its CSV and figure (handed to
    `drawing` when there is one, captioned with `caption_text`)."""
    from lvsweep.analysis.prc import phase_response, prc_alignment, state_index, write_prc_csv
    from lvsweep.systems.simulate import Solver

    k = cfg.analysis.prc_kick
    response = phase_response(system, orbit, state_index(str(k.state), system.state_names), k.epsilon,
                              cfg.analysis.prc_cycles, cfg.system.rtol, cfg.system.atol, solver=Solver.of(cfg.system))
    metrics = prc_alignment(response, orbit.t, attention)
    artifacts = [write_prc_csv(out_dir / "prc.csv", response, system.state_names)]
    if cfg.analysis.figures:
        from lvsweep.analysis.plotting import FigureCall

        artifacts += draw(drawing, [FigureCall("phase_response", out_dir / "figures" / "prc.png",
                                               (response, system.state_names, orbit.t, attention,
                                                metrics[PRC_SPEARMAN]), {"caption_text": caption_text},
                                               module=CYCLE_FIGURES)])
    return metrics, artifacts


def light_prc_analysis(cfg: Any, system: DynamicalSystem, orbit: Orbit, attention: np.ndarray,
                       init_attention: np.ndarray, noisy: np.ndarray, out_dir: Path,
                       drawing: Optional[Drawing] = None, caption_text: str = "") -> tuple[dict[str, float], list[Path]]:
    """The light PRC of a circadian pacemaker (the protocol of Khalsa et al. 2003, from the system's
    start), its features and their differences from the measured curve's, attention's alignment
    with |light PRC| along the orbit with its controls; lightprc.csv and figures/lightprc.png."""
    from lvsweep.analysis.lightprc import Protocol, light_prc_analysis as analyse, orbit_phase, write_lightprc_csv

    prc, metrics = analyse(system, np.asarray(cfg.system.start, dtype=float), Protocol.of(cfg.analysis.light_pulse),
                           orbit.t, orbit.x, attention, init_attention, noisy)
    artifacts = [write_lightprc_csv(out_dir / "lightprc.csv", prc)]
    if cfg.analysis.figures:
        from lvsweep.analysis.lightprc import measured
        from lvsweep.analysis.plotting import FigureCall

        phase, _ = orbit_phase(system, orbit.t, orbit.x)
        artifacts += draw(drawing, [FigureCall("light_phase_response", out_dir / "figures" / "lightprc.png",
                                               (prc, measured(), system.name, phase, attention.mean(axis=0),
                                                dict(metrics)), {"caption_text": caption_text}, module=CYCLE_FIGURES)])
    return metrics, artifacts


def read_attention(model: AttentionModel, noisy: torch.Tensor) -> np.ndarray:
    """The model's attention as [R, T] (R = 1 without replicates)."""
    import torch

    from lvsweep.analysis.controls import as_replicates
    from lvsweep.training.callbacks import on_device

    with torch.no_grad():
        return as_replicates(model.attention(on_device(noisy, model)).cpu().numpy(), 1)


def write_replicates_csv(path: Path, seeds: list[int], attention: np.ndarray, init_attention: np.ndarray,
                         sensitivity: np.ndarray, model: AttentionModel, val_batch: Any) -> Path:
    """One row per replicate: its seed, alignment, untrained alignment and validation loss."""
    from lvsweep.analysis.alignment import pearson, spearman
    from lvsweep.models.base import evaluating
    from lvsweep.training.callbacks import on_device

    with evaluating(model):
        val_loss = model.replicate_losses(on_device(val_batch, model)).reshape(-1).cpu().numpy()
    columns = [np.arange(len(seeds)), seeds, pearson(attention, sensitivity), spearman(attention, sensitivity),
               spearman(init_attention, sensitivity), val_loss]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["replicate", "seed", "pearson", "spearman", "spearman_init", "val_loss"])
        writer.writerows(zip(*(np.asarray(c).tolist() for c in columns)))
    return path


def write_attention_csv(path: Path, names: tuple[str, ...], t: np.ndarray, clean: np.ndarray,
                        noisy: np.ndarray, attention: np.ndarray, sensitivity: np.ndarray) -> Path:
    """The contract columns (`noisy_*` of replicate 0, `attention` the mean over replicates), then
    `attention_r<r>` per replicate when there are several."""
    header = ["t", *names, *(f"noisy_{n}" for n in names), "attention", "sensitivity"]
    columns = [t, clean, noisy, attention.mean(axis=0), sensitivity]
    if len(attention) > 1:
        header += [f"attention_r{r}" for r in range(len(attention))]
        columns.append(attention.T)
    table = np.column_stack(columns)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(table.tolist())
    return path
