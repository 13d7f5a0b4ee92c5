"""SIGTERM during training, in-process and at chosen moments: the handler that sees it is ours for
the whole of `fit`, and whatever exception comes out says "terminated". Deterministic: the signal
is sent from the training loop itself (the metric sink) at a given step, not after a delay."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lvsweep import interrupts
from lvsweep.app import compose_config
from lvsweep.pipeline import run_experiment


@pytest.fixture
def sigterm_handled():
    before, hook = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    interrupts._received.clear()
    interrupts._acting = False
    interrupts.install()
    yield
    signal.signal(signal.SIGTERM, before)
    sys.unraisablehook = hook
    interrupts._received.clear()
    interrupts._acting = False


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


# A stop that Python swallows: a signal handled while a garbage-collection or weakref callback
# runs raises there, and Python prints "Exception ignored in ..." and goes on. Made deterministic
# by sending the signal from inside such a callback.
SWALLOWED = textwrap.dedent("""
    import gc, signal, sys, weakref
    from lvsweep import interrupts

    interrupts.install()

    class Thing:
        pass

    def callback(ref):
        signal.raise_signal(signal.{signal})  # handled right here, inside the callback
        sum(range(1000))

    thing = Thing()
    keep = weakref.ref(thing, callback)
    try:
        del thing  # the callback runs now, and the exception it raises is swallowed
        for _ in range(10_000_000):  # the program goes on: the stop must still reach it
            pass
        print("ran to the end")
    except KeyboardInterrupt as exc:
        interrupts.note(exc)
        print("stopped:", interrupts.stop_reason())
""")


@pytest.mark.parametrize("name, reason", [("SIGTERM", "terminated"), ("SIGINT", "interrupted")])
def test_a_stop_swallowed_by_a_callback_still_stops_the_program(name, reason):
    proc = subprocess.run([sys.executable, "-c", SWALLOWED.replace("{signal}", name)], capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.strip() == f"stopped: {reason}", proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr, proc.stderr


def test_a_second_sigterm_stops_what_the_first_did_not(sigterm_handled):
    """The first Terminated was lost on its way (nothing acted on it): the next one raises, and so
    does the next metric the job logs; once the stop is acted on, repeats are ignored."""
    with pytest.raises(interrupts.Terminated):
        interrupts.stop_on(signal.SIGTERM)
    with pytest.raises(interrupts.Terminated):  # the one above was caught without `note`: lost
        interrupts.stop_on(signal.SIGTERM)
    with pytest.raises(interrupts.Terminated):
        interrupts.check()
    interrupts.note(interrupts.Terminated())
    interrupts.stop_on(signal.SIGTERM)  # the cleanup under way is not cut short
    interrupts.check()
