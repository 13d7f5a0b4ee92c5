"""A Lightning Trainer configured for small full-batch models, on the CPU unless
`trainer.accelerator` says otherwise.

Everything that costs time per step without helping here (progress bar, checkpoints, the
built-in logger, sanity validation, model summary) is off; metric histories go through our own
batched sink instead of Lightning's logger, which would write to the store on every step.

The whole training is one Lightning epoch of `ceil(epochs / epochs_per_batch)` batches (each
batch the whole trajectory, each Lightning step `epochs_per_batch` full-batch epochs, as many as
the validation and alignment cadences allow: 100 at the defaults), validated every
`val_every / epochs_per_batch` batches: what Lightning does at the start and end of each of its
epochs and steps (a new data iterator, hooks, progress and result bookkeeping) is paid 20 times in
a default run, not 2000. `train/loss` is recorded inside the step every `log_every` epochs; every
update, validation and callback call happens where it did with one Lightning epoch per epoch, so
the numbers and histories are the same.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import Any, Iterator, Optional, Sequence

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


class Steps:
    """A loader's batches `steps` times over: the training of one Lightning epoch."""

    def __init__(self, loader: Any, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps * len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.steps):
            yield from self.loader


def epochs_per_batch(trainer_cfg: Any) -> int:
    """Full-batch epochs per Lightning step: the largest multiple of `log_every` that every
    validation and alignment point falls on, so each still lands where it did when every
    `log_every` epochs were a step (validation every `round(val_every / log_every)` of those)."""
    log = trainer_cfg.log_every
    if trainer_cfg.align_every % log:
        return log
    return log * math.gcd(max(1, round(trainer_cfg.val_every / log)), trainer_cfg.align_every // log)


def schedule(trainer_cfg: Any) -> tuple[int, int, Optional[int]]:
    """(epochs per Lightning step, Lightning steps, steps between validations or None for no
    validation during training)."""
    log, per_batch = trainer_cfg.log_every, epochs_per_batch(trainer_cfg)
    val_in_logs = max(1, round(trainer_cfg.val_every / log))
    validates = val_in_logs <= math.ceil(trainer_cfg.epochs / log)
    return per_batch, math.ceil(trainer_cfg.epochs / per_batch), val_in_logs * log // per_batch if validates else None


def make_trainer(trainer_cfg: Any, callbacks: Sequence[pl.Callback]) -> pl.Trainer:
    """The Trainer, leaving SIGTERM to lvsweep's own handler (see `lvsweep.interrupts`); `fit`
    gives it its data (`Steps` of the training loader).

    Its cluster environment is fixed to a single process: lvsweep trains one process on one
    device, whatever the host. Left to detect one, Lightning warns on every run of a SLURM login
    node (`srun` on PATH but not used), and inside a SLURM job it would take the job's tasks for
    its own ranks and install its own requeue signal handling."""
    from lightning_fabric.plugins.environments import LightningEnvironment

    from lvsweep.interrupts import keep_sigterm

    _, _, val_every = schedule(trainer_cfg)
    trainer = pl.Trainer(
        accelerator=str(getattr(trainer_cfg, "accelerator", "cpu")),  # cpu, auto or gpu (validated)
        devices=int(getattr(trainer_cfg, "devices", 1)),
        max_epochs=1,  # one Lightning epoch; each of its batches = `epochs_per_batch` full-batch epochs
        val_check_interval=val_every,
        limit_val_batches=None if val_every else 0,
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
    model.epochs_per_batch, steps, _ = schedule(trainer_cfg)
    make_trainer(trainer_cfg, callbacks).fit(
        model, train_dataloaders=Steps(datamodule.train_dataloader(), steps),
        val_dataloaders=datamodule.val_dataloader())
