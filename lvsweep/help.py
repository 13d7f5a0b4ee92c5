"""`python -m lvsweep --help`: what lvsweep does and how to drive it, not Hydra's generic page.

Hydra's own help lists every config in a group, the schemas (`base_*`) included, and opens with
"app is powered by Hydra". This text is built from the conf/ folder at run time, so a new system
or experiment file shows up here without touching this module; `--hydra-help` still shows
Hydra's options.
"""
from __future__ import annotations

from pathlib import Path

from lvsweep.config import conf_dir

ABOUT = """\
lvsweep: do attention weights learned from noisy trajectories of a dynamical system line up with
the system's sensitivity? One run simulates the system, adds noise, trains an attention model,
and records alignment, controls and figures in MLflow; sweeps and Optuna search repeat it."""

COMMANDS = """\
Common commands:
  python -m lvsweep                                   one run with the defaults (the paper's setting)
  python -m lvsweep system=van_der_pol model=multihead noise.level=0.5 seed=3
  python -m lvsweep -m noise=0,1,2,4                  a sweep: one parent run, one child run per level
  python -m lvsweep -m search=optuna                  Optuna search (hydra.sweeper.n_trials=..., ...)
  python -m lvsweep experiment=noise_ablation         a ready-made sweep (see experiment above)
  python -m lvsweep.report                            the report of the latest sweep (--help for flags)
  mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db    browse every run"""

RESULTS = """\
Results:
  outputs/runs/<date>/<time>-<pid>/ (single runs) and outputs/multirun/<date>/<time>-<pid>/<job>/ (sweeps):
    config.yaml, attention.csv, replicates.csv, figures/
  mlruns/mlflow.db (+ mlruns/artifacts/): params, metrics, tags and artifacts of every run;
    set tracking.uri or $MLFLOW_TRACKING_URI to record elsewhere
  Bad input is one line 'lvsweep: error: <field>: <problem>' and exit status 2.
  python -m lvsweep --cfg job prints the composed config; --hydra-help shows Hydra's own flags."""


def first_comment(path: Path) -> str:
    """The file's first comment line: what the option is, in the words of whoever wrote it."""
    for line in path.read_text().splitlines():
        if line.startswith("#") and not line.startswith("# @package"):
            text = line.lstrip("# ").strip().split(": python -m")[0].rstrip(":. ")
            return text if len(text) <= 84 else text[:83].rstrip() + "…"
    return ""


def defaults(root: Path) -> dict[str, str]:
    """group → default option, from the `defaults:` list of config.yaml."""
    from omegaconf import OmegaConf

    chosen: dict[str, str] = {}
    for item in OmegaConf.load(root / "config.yaml").get("defaults", []):
        if hasattr(item, "items"):
            for group, option in item.items():
                chosen[str(group)] = "null" if option is None else str(option)
    return chosen


def groups(root: Path) -> dict[str, list[Path]]:
    """group → its user-facing option files (schemas `base_*` are hidden), nested groups included."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*.yaml")):
        if path.parent == root or path.stem.startswith("base_"):
            continue
        found.setdefault(path.parent.relative_to(root).as_posix(), []).append(path)
    return found


DESCRIBED = ("experiment", "search", "hydra/launcher")  # groups whose options get their own line


def help_text() -> str:
    chosen = defaults(conf_dir())
    lines = [ABOUT, "", "Usage: python -m lvsweep [-m] [group=option ...] [key=value ...]", "",
             "Config groups (group=option; * = default):"]
    for group, files in groups(conf_dir()).items():
        names = [f"{p.stem}*" if chosen.get(group) == p.stem else p.stem for p in files]
        if group in DESCRIBED:
            lines.append(f"  {group}:")
            lines += [f"    {p.stem:<16} {first_comment(p)}" for p in files]
        else:
            lines.append(f"  {group + ':':<10} {', '.join(names)}")
    lines += ["",
              "Keys (key=value): seed, replicates, objectives, system.params.<name>, system.t_end,",
              "  system.n_steps, system.method (DOP853, Radau, LSODA, BDF), system.max_steps, system.max_seconds,",
              "  noise.level (or noise=<number>), model.lr, trainer.epochs, analysis.*, tracking.uri, ...",
              "  python -m lvsweep --cfg job [overrides] shows every key with its value.",
              "", COMMANDS, "", RESULTS]
    return "\n".join(lines)
