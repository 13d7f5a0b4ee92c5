"""SIGTERM during training, in-process and at chosen moments: the handler that sees it is ours for
the whole of `fit`, and whatever exception comes out says "terminated". Deterministic: the signal
is sent from the training loop itself (the metric sink) at a given step, not after a delay."""
from __future__ import annotations

import os
import signal

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lvsweep import interrupts
from lvsweep.app import compose_config
from lvsweep.pipeline import run_experiment


@pytest.fixture
def sigterm_handled():
    before = signal.getsignal(signal.SIGTERM)
    interrupts._received.clear()
    interrupts.install()
    yield
    signal.signal(signal.SIGTERM, before)
    interrupts._received.clear()


def test_a_sigterm_seen_only_by_lightning_still_counts_as_one(sigterm_handled):
    interrupts.note(SIGTERMException())
    assert interrupts.stop_reason() == "terminated" and interrupts.exit_status() == 143


def test_lightnings_system_exit_after_our_terminated_counts_as_sigterm(sigterm_handled):
    try:
        try:
            raise interrupts.Terminated()
        except KeyboardInterrupt:
            raise SystemExit(1)  # what Lightning's `_call_and_handle_interrupt` does
    except SystemExit as exc:
        interrupts.note(exc)
    assert interrupts.terminated()


def test_ctrl_c_stays_an_interrupt(sigterm_handled):
    interrupts.note(SystemExit(1))
    interrupts.note(KeyboardInterrupt())
    assert interrupts.stop_reason() == "interrupted" and interrupts.exit_status() == 130


@pytest.mark.parametrize("moment", [("train/loss", 1), ("train/loss", 5), ("val/loss", 1)])
def test_sigterm_at_a_chosen_moment_of_training_ends_it_as_terminated(sigterm_handled, tmp_path, moment):
    key, nth = moment
    cfg = compose_config("trainer.epochs=1000000", "system.n_steps=300", "analysis.figures=false",
                         "trainer.val_every=20")
    seen = {"count": 0, "handlers": set()}

    def sink(metrics, step):
        if key in metrics:
            seen["handlers"].add(signal.getsignal(signal.SIGTERM))
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises((KeyboardInterrupt, SystemExit)) as caught:
        run_experiment(cfg, sink, tmp_path)
    assert seen["handlers"] == {interrupts._on_sigterm}  # Lightning never replaced it during fit
    assert interrupts._received == [signal.SIGTERM]  # our handler saw the signal itself
    interrupts.note(caught.value)
    assert interrupts.stop_reason() == "terminated"
    assert signal.getsignal(signal.SIGTERM) is interrupts._on_sigterm  # and it is still installed
