"""A Lightning Trainer configured for small full-batch models, on the CPU unless
`trainer.accelerator` says otherwise.

Everything that costs time per step without helping here (progress bar, checkpoints, the
built-in logger, sanity validation, model summary) is off; metric histories go through our own
batched sink instead of Lightning's logger, which would write to the store on every step.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Sequence

import pytorch_lightning as pl
import torch



def quiet_lightning() -> None:
    """Lightning's start-up chatter and the warnings that do not apply to one full-batch CPU step
    per epoch: quietened when training starts, not when this module is imported."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*litlogger.*")
    # Lightning asks whether it runs under SLURM at every `fit` (checkpoint resumption), whatever
    # the cluster environment given, and on a host with `srun` on PATH warns that it was not used.
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")


def make_trainer(trainer_cfg: Any, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """The Trainer, leaving SIGTERM to lvsweep's own handler (see `lvsweep.interrupts`).

    Its cluster environment is fixed to a single process: lvsweep trains one process on one
    device, whatever the host. Left to detect one, Lightning warns on every run of a SLURM login
    node (`srun` on PATH but not used), and inside a SLURM job it would take the job's tasks for
    its own ranks and install its own requeue signal handling."""
    from lightning_fabric.plugins.environments import LightningEnvironment

    from lvsweep.interrupts import keep_sigterm

    steps = math.ceil(trainer_cfg.epochs / trainer_cfg.log_every)
    trainer = pl.Trainer(
        accelerator=str(getattr(trainer_cfg, "accelerator", "cpu")),  # cpu, auto or gpu (validated)
        devices=int(getattr(trainer_cfg, "devices", 1)),
        max_epochs=steps,  # one Lightning epoch = one batch = `log_every` full-batch epochs
        check_val_every_n_epoch=max(1, round(trainer_cfg.val_every / trainer_cfg.log_every)),
        callbacks=list(callbacks),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
        plugins=[LightningEnvironment()],
    )
    keep_sigterm(trainer)
    return trainer


def fit(model: pl.LightningModule, datamodule: pl.LightningDataModule, trainer_cfg: Any,
        callbacks: Sequence[pl.Callback]) -> None:
    quiet_lightning()
    torch.set_num_threads(trainer_cfg.threads)
    make_trainer(trainer_cfg, callbacks).fit(model, datamodule=datamodule)
