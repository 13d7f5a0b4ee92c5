"""The paper's linear attention: a valid distribution over time, and training that learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lvsweep.data.trajectory import TrajectoryDataModule, make_data
from lvsweep.models import LinearAttention
from lvsweep.systems.simulate import simulate


def _batch(cfg, level: float = 2.0):
    data = make_data(simulate(cfg.system), "gaussian", level, seed=0)
    return TrajectoryDataModule(data).train_batch


def test_attention_is_a_finite_distribution_over_time(lv_config):
    noisy, _ = _batch(lv_config)
    for form in ("paper", "scaled"):
        torch.manual_seed(0)
        a = LinearAttention(2, form=form).attention(noisy)
        assert a.shape == (noisy.shape[0],)
        assert torch.all(torch.isfinite(a)) and torch.all(a >= 0)
        assert float(a.sum()) == pytest.approx(1.0, abs=1e-5)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch(lv_config):
    batch = _batch(lv_config)
    for form in ("paper", "scaled"):
        torch.manual_seed(0)
        model = LinearAttention(2, form=form, lr=1e-2, epochs=1, log_every=1)
        opt = model.configure_optimizers()
        before = float(model.loss(batch))
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
        assert float(model.loss(batch)) < before


def test_scaled_form_reconstructs_at_the_scale_of_the_data(lv_config):
    noisy, clean = _batch(lv_config, level=0.0)
    torch.manual_seed(0)
    model = LinearAttention(2, form="scaled")
    with torch.no_grad():
        model.score.weight.zero_()  # uniform attention: x̂ = x̃ exactly
    np.testing.assert_allclose(model(noisy).detach().numpy(), clean.numpy(), rtol=1e-5)
