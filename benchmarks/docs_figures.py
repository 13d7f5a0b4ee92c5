"""The docs' figures, drawn from real lvsweep runs: `python -m benchmarks.docs_figures [--out docs/img]`.

Each figure comes from commands run through the real command line in a fresh folder (its own
MLflow store), and is drawn here from what those runs recorded (`attention.csv`, the report's
`report.csv`), so that it stays the docs' own figure whatever the per-run figures look like. The
captions, each naming its command and the commit that drew it, go to `captions.json` beside the
PNGs and are printed; the pages quote them. About 7 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.stats import rankdata, spearmanr

from lvsweep.analysis.plotting import save, styled, subplots

ROOT = Path(__file__).resolve().parent.parent
NOISE_SWEEP = ["-m", "noise=0,1,2,4", "replicates=3"]
MODELS = ["-m", "model=linear,multihead,transformer"]
SYSTEMS = ["-m", "system=lotka_volterra,van_der_pol,rossler,lorenz,goodwin"]
LYNX_HARE = ["experiment=lynx_hare"]


def commit() -> str:
    """The short commit of the checkout, marked when its tree has uncommitted changes."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=7", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return head + (" with uncommitted changes" if dirty else "")


def lvsweep(cwd: Path, *args: str, module: str = "lvsweep") -> str:
    """One lvsweep command line, as a user types it; its text for the caption."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[1:])} failed:\n{proc.stderr[-2000:]}")
    return " ".join(["python", "-m", module, *args])


def report(cwd: Path, name: str) -> tuple[str, list[dict[str, str]], Path]:
    """The report of the latest sweep in `cwd`: its command, report.csv rows and folder."""
    out = cwd / "reports" / name  # a folder of this script's own: the caption quotes the plain command
    lvsweep(cwd, "--out", str(out), module="lvsweep.report")
    command = "python -m lvsweep.report"
    with (out / "report.csv").open() as fh:
        return command, list(csv.DictReader(fh)), out


def newest(cwd: Path, pattern: str) -> Path:
    found = sorted(cwd.glob(pattern), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no {pattern} under {cwd}")
    return found[-1]


@styled
def attention_figure(path: Path, attention_csv: Path) -> Path:
    """Attention relative to uniform and the sensitivity along the orbit, and their ranks."""
    with attention_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    t = np.array([float(r["t"]) for r in rows])
    a = np.array([float(r["attention"]) for r in rows]) * len(rows)
    s = np.array([float(r["sensitivity"]) for r in rows])
    rho = spearmanr(a, s).statistic
    fig, (left, right) = subplots(1, 2, figsize=(9.5, 3.6), gridspec_kw={"width_ratios": [2.2, 1]})
    left.semilogy(t, a, color="C0", lw=1.2, label="attention relative to uniform, $T\\,a_t$")
    left.set_xlabel("time $t$")
    left.set_ylabel("$T\\,a_t$ (log)", color="C0")
    twin = left.twinx()
    twin.plot(t, s, color="C3", lw=1.2, ls="--", label="sensitivity")
    twin.set_ylabel("sensitivity", color="C3")
    left.set_title("Along the orbit")
    right.scatter(rankdata(s), rankdata(a), s=4, color="0.3", alpha=0.5)
    right.set_xlabel("rank of the sensitivity")
    right.set_ylabel("rank of $T\\,a_t$")
    right.set_title(f"Ranks: Spearman ρ = {rho:+.3f}")
    fig.tight_layout()
    return save(fig, path)


@styled
def bars_figure(path: Path, rows: list[dict[str, str]], factor: str, kinds: list[tuple[str, str]],
                title: str, xlabel: str) -> Path:
    """One group of bars per setting of `factor`, one bar per column of report.csv."""
    fig, ax = subplots(figsize=(8.5, 3.8))
    x = np.arange(len(rows))
    width = 0.8 / len(kinds)
    for k, (column, label) in enumerate(kinds):
        ax.bar(x + (k - (len(kinds) - 1) / 2) * width, [float(r[column]) for r in rows], width, label=label,
               color=f"C{k}")
    ax.set_xticks(x, [r[factor] for r in rows])
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return save(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.docs_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs (default docs/img)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    at = commit()
    captions: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="lvsweep-docs-figures-"))

    def caption(name: str, text: str, commands: list[str]) -> None:
        captions[name] = f"{text} Drawn by `{' && '.join(commands)}` at commit `{at}` (`python -m benchmarks.docs_figures`)."
        print(f"{name}: {captions[name]}", flush=True)

    steps: list[Callable[[], None]] = []

    def one_run() -> None:
        (work / "one").mkdir()
        command = lvsweep(work / "one")
        attention_figure(args.out / "attention_vs_sensitivity.png", newest(work / "one", "outputs/**/attention.csv"))
        caption("attention_vs_sensitivity.png", "Attention against the sensitivity on the default run (Lotka-Volterra, "
                "noise 2.0, linear attention, seed 0, one replicate).", [command])

    def noise() -> None:
        (work / "noise").mkdir()
        sweep = lvsweep(work / "noise", *NOISE_SWEEP)
        rep, _, out = report(work / "noise", "noise")
        shutil.copyfile(out / "alignment.png", args.out / "alignment_vs_noise.png")
        caption("alignment_vs_noise.png", "Alignment against noise level, the trained attention beside every "
                "no-learning baseline, the band its 95 % t-interval over 3 replicates (the report's plot).", [sweep, rep])

    def models() -> None:
        (work / "models").mkdir()
        sweep = lvsweep(work / "models", *MODELS)
        rep, rows, _ = report(work / "models", "models")
        bars_figure(args.out / "model_ablation.png", rows, "model.name",
                    [("spearman", "trained attention"), ("spearman_init", "untrained attention"),
                     ("baseline_norm", "state norm"), ("baseline_linear", "best linear score"), ("r2", "R² (denoising)")],
                    "Model ablation: Spearman ρ with the sensitivity (ρ < 0 = paper's claim) and R²", "model")
        caption("model_ablation.png", "The model ablation at noise 2.0, one replicate each: ρ of each model's trained and "
                "untrained attention beside the baselines, and R² = 1 − val/loss / val/noisy_mse.", [sweep, rep])

    def systems() -> None:
        (work / "systems").mkdir()
        sweep = lvsweep(work / "systems", *SYSTEMS)
        rep, rows, _ = report(work / "systems", "systems")
        bars_figure(args.out / "cross_system_excess.png", rows, "system.name",
                    [("excess", "excess over the strongest baseline"), ("training_gain", "training gain")],
                    "Across systems: what training adds (> 0: more anticorrelation)", "system")
        caption("cross_system_excess.png", "Across systems (default model, noise 2.0, one replicate each): the excess "
                "of the trained attention's anticorrelation over the strongest no-learning baseline, and the "
                "training gain (trained − untrained).", [sweep, rep])

    def lynx() -> None:
        (work / "lynx").mkdir()
        command = lvsweep(work / "lynx", *LYNX_HARE)
        shutil.copyfile(newest(work / "lynx", "outputs/**/fit.png"), args.out / "lynx_hare_fit.png")
        caption("lynx_hare_fit.png", "The Lotka-Volterra fit to the Hudson's Bay lynx–hare records (the run's own "
                "fit figure).", [command])

    steps += [one_run, noise, models, systems, lynx]
    for step in steps:
        step()
    (args.out / "captions.json").write_text(json.dumps(captions, indent=1, ensure_ascii=False) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
