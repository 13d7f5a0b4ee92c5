"""Multi-head and transformer attention: valid maps, windowing, torch's weights, learning, the CLI."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lvsweep.app import compose_config
from lvsweep.training.callbacks import LossHistory
from lvsweep.config import validate
from lvsweep.data.trajectory import TrajectoryDataModule, make_data
from lvsweep.errors import LvsweepError
from lvsweep.models import MultiHeadAttention, TransformerAttention, make_model
from lvsweep.models.attention import attend, reduce_attention, time_encoding
from lvsweep.models.transformer import encoder_layer_forward
from lvsweep.analysis.reconstruction import r2_score, reconstruction_metrics
from lvsweep.systems.simulate import simulate
from lvsweep.training.trainer import fit
from helpers.cli import run_cli
from helpers.store import child_runs, client_for

SEQUENCE_MODELS = {"multihead": MultiHeadAttention, "transformer": TransformerAttention}


def _noisy(t: int, seed: int = 0) -> torch.Tensor:
    """A small two-variable sequence at the scale of Lotka-Volterra states."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.linspace(0, 12, t)
    return torch.stack([20 + 8 * torch.sin(phase), 8 + 4 * torch.cos(phase)], -1) + torch.randn(t, 2, generator=g)


def _model(name: str, **kwargs) -> MultiHeadAttention | TransformerAttention:
    torch.manual_seed(0)
    model = SEQUENCE_MODELS[name](2, **kwargs)
    model.eval()
    return model


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("window", [None, 8])
def test_attention_maps_and_per_step_attention_are_distributions(name, window):
    t = 37  # not a multiple of the block size: the padded tail must not leak
    noisy = _noisy(t)
    model = _model(name, window=window)
    model.fit_input_stats(noisy)
    assert model(noisy).shape == (t, 2) and torch.all(torch.isfinite(model(noisy)))
    maps = model.attention_maps(noisy)
    assert len(maps) == (2 if name == "transformer" else 1)
    band = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs() <= (window // 2 if window else t)
    for m in maps:
        dense = m.dense()
        assert dense.shape == (4, t, t) and torch.all(torch.isfinite(dense)) and torch.all(dense >= 0)
        torch.testing.assert_close(dense.sum(-1), torch.ones(4, t))
        assert torch.all(dense[:, ~band] == 0)
        torch.testing.assert_close(m.received(), dense.mean(1))  # received = mean over queries
    reductions = ("received", "last_layer", "rollout") if name == "transformer" else ("received", "last_layer")
    for reduce in reductions:
        model.reduce = reduce
        a = model.attention(noisy)
        assert a.shape == (t,) and torch.all(torch.isfinite(a)) and torch.all(a >= 0)
        assert float(a.sum()) == pytest.approx(1.0, abs=1e-5)
    heads = model.head_attention(noisy)
    assert heads.shape == (4, t)
    torch.testing.assert_close(heads.sum(-1), torch.ones(4))


def test_rollout_equals_the_product_of_residual_attention_matrices():
    noisy = _noisy(21)
    model = _model("transformer", layers=3, window=None)
    model.fit_input_stats(noisy)
    maps = model.attention_maps(noisy)
    eye = torch.eye(21)
    flow = eye
    for m in maps:  # input → output: Ã = Â_L ⋯ Â_1 with Â = ½·mean_h(A) + ½·I
        flow = (0.5 * m.dense().mean(0) + 0.5 * eye) @ flow
    torch.testing.assert_close(reduce_attention(maps, "rollout"), flow.mean(0))
    torch.testing.assert_close(reduce_attention(maps, "received"),
                               torch.stack([m.dense().mean((0, 1)) for m in maps]).mean(0))


def test_windowed_attention_is_banded_softmax():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 23, 5, generator=g, dtype=torch.float64) for _ in range(3))
    for half in (1, 4, 7):
        out, amap = attend(q, k, v, half)
        band = (torch.arange(23)[:, None] - torch.arange(23)[None, :]).abs() <= half
        scores = (q @ k.transpose(-1, -2) / 5 ** 0.5).masked_fill(~band, float("-inf"))
        expected = torch.softmax(scores, -1)
        torch.testing.assert_close(amap.dense(), expected)
        torch.testing.assert_close(out, expected @ v)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_windowed_equals_full_when_the_window_covers_the_sequence(name):
    t = 29
    noisy = _noisy(t)
    full = _model(name, window=None)
    windowed = _model(name, window=2 * t)
    windowed.load_state_dict(full.state_dict())
    for model in (full, windowed):
        model.fit_input_stats(noisy)
    torch.testing.assert_close(windowed(noisy), full(noisy))
    for wm, fm in zip(windowed.attention_maps(noisy), full.attention_maps(noisy), strict=True):
        assert wm.weights.shape[1] > 1  # really the block path, not one full block
        torch.testing.assert_close(wm.dense(), fm.dense())
    # Gradients agree too, and the padded tail of the last block leaves them finite.
    grads = []
    for model in (full, windowed):
        model.zero_grad()
        model(noisy).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert torch.all(torch.isfinite(grads[1]))
    torch.testing.assert_close(grads[1], grads[0])


def test_transformer_takes_its_maps_from_torch_modules_and_they_equal_a_recomputation():
    t = 11
    noisy = _noisy(t)
    model = _model("transformer", window=None)
    model.fit_input_stats(noisy)
    maps = model.attention_maps(noisy)
    h = model.embed((noisy - model.in_mean) / model.in_std) + time_encoding(t, model.width)
    with torch.no_grad():
        for layer, amap in zip(model.layers, maps, strict=True):
            x = layer.norm1(h)
            q, k, _ = torch.nn.functional.linear(x, layer.self_attn.in_proj_weight,
                                                 layer.self_attn.in_proj_bias).chunk(3, -1)
            q, k = (z.view(t, 4, 8).transpose(0, 1) for z in (q, k))
            torch.testing.assert_close(amap.dense(), torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1))
            out, _ = encoder_layer_forward(layer, h, None)
            torch.testing.assert_close(out, layer(h))  # the same computation as torch's own forward
            h = out


def test_multihead_maps_equal_a_recomputation():
    t = 13
    noisy = _noisy(t)
    model = _model("multihead", window=None)
    model.fit_input_stats(noisy)
    with torch.no_grad():
        h = model.embed((noisy - model.in_mean) / model.in_std) + time_encoding(t, model.width)
        q, k = (f(h).view(t, 4, 8).transpose(0, 1) for f in (model.query, model.key))
        expected = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1)
    torch.testing.assert_close(model.attention_maps(noisy)[0].dense(), expected)


def _low_noise_data(n_steps: int, level: float):
    cfg = compose_config(f"system.n_steps={n_steps}")
    return TrajectoryDataModule(make_data(simulate(cfg.system), "gaussian", level, seed=0))


@pytest.mark.parametrize("name", ["linear", "multihead", "transformer"])
def test_each_model_lowers_its_validation_loss_and_the_transformer_denoises(name):
    datamodule = _low_noise_data(300, 0.5)
    cfg = compose_config(f"model={name}")
    torch.manual_seed(0)
    model = make_model(cfg.model, 2, epochs=100, log_every=10)
    if name != "linear":  # before training, judge the model on the statistics it will be trained with
        model.fit_input_stats(datamodule.train_batch[0])
    with torch.no_grad():
        before = float(model.loss(datamodule.val_batch))
    trainer_cfg = SimpleNamespace(epochs=100, log_every=10, val_every=100, align_every=100, threads=1)
    fit(model, datamodule, trainer_cfg, [])
    assert model.epochs_done == 100
    with torch.no_grad():
        after = float(model.loss(datamodule.val_batch))
    # The paper's form can only shrink x̃ (its weights sum to 1 over T steps), so it gains little;
    # attention over time can reconstruct, so it must gain a lot.
    assert after < (before if name == "linear" else 0.2 * before)
    if name == "transformer":
        recon = reconstruction_metrics(model, datamodule.val_batch)
        assert recon["val/noisy_mse"] == pytest.approx(0.25, rel=0.15)
        assert after < recon["val/noisy_mse"]  # it denoises: better than returning the input
        assert recon["val/r2"] > 0.99


def test_final_losses_are_those_of_the_model_without_dropout():
    datamodule = _low_noise_data(200, 0.5)
    cfg = compose_config("model=multihead", "model.dropout=0.5")
    torch.manual_seed(0)
    model = make_model(cfg.model, 2, epochs=20, log_every=10)
    history = LossHistory(lambda metrics, step: None, datamodule.train_batch, datamodule.val_batch)
    fit(model, datamodule, SimpleNamespace(epochs=20, log_every=10, val_every=10, align_every=10, threads=1),
        [history])
    with torch.no_grad():
        masked = {float(model.loss(datamodule.val_batch)) for _ in range(3)}  # train mode: a new mask each call
    assert len(masked) == 3 and model.training
    model.eval()
    with torch.no_grad():
        assert history.final["val/loss"] == pytest.approx(float(model.loss(datamodule.val_batch)), rel=1e-6)


def test_r2_score_is_one_for_a_perfect_fit_and_zero_for_the_mean():
    clean = torch.randn(50, 2) * torch.tensor([3.0, 0.5]) + 7
    assert r2_score(clean, clean) == pytest.approx(1.0)
    assert r2_score(clean.mean(0).expand_as(clean), clean) == pytest.approx(0.0, abs=1e-6)


def test_standardisation_is_set_from_the_first_training_batch():
    noisy = _noisy(40)
    model = _model("multihead")
    model.on_train_batch_start((noisy, noisy), 0)
    torch.testing.assert_close(model.in_mean, noisy.mean(0))
    model.on_train_batch_start((noisy * 3, noisy), 1)  # later batches do not move it
    torch.testing.assert_close(model.in_std, noisy.std(0))


@pytest.mark.parametrize("overrides, field", [
    (["model=multihead", "model.heads=0"], "model.heads"),
    (["model=transformer", "model.heads=3"], "model.width"),
    (["model=transformer", "model.layers=0"], "model.layers"),
    (["model=multihead", "model.window=1"], "model.window"),
    (["model=transformer", "model.window=-4"], "model.window"),
    (["model=transformer", "model.dropout=1.0"], "model.dropout"),
    (["model=multihead", "model.attention.reduce=rollout"], "model.attention.reduce"),
])
def test_validation_names_the_bad_knob(overrides, field):
    with pytest.raises(LvsweepError) as err:
        validate(compose_config(*overrides))
    assert err.value.field == field


@pytest.mark.parametrize("overrides", [["model=multihead", "model.window=null"],
                                       ["model=transformer", "model.window=0", "model.attention.reduce=rollout"]])
def test_validation_accepts_full_attention_and_rollout(overrides):
    validate(compose_config(*overrides))


@pytest.mark.usefixtures("store_in_tmp_path")  # the store's creation is checked elsewhere
def test_ablation_multirun_records_three_children_with_model_and_head_metrics(tmp_path: Path):
    proc = run_cli(tmp_path, "-m", "model=linear,multihead,transformer", "trainer.epochs=20",
                   "system.n_steps=120", "trainer.log_every=10", "trainer.val_every=10", "trainer.align_every=10",
                   "analysis.perturb.k=5")
    assert proc.returncode == 0, proc.stderr
    client = client_for(tmp_path)
    children = {r.data.params["model.name"]: r for r in child_runs(tmp_path)}
    assert set(children) == {"linear", "multihead", "transformer"}
    assert len({r.data.tags["mlflow.parentRunId"] for r in children.values()}) == 1
    per_head = {f"align/{kind}_head{h}" for kind in ("pearson", "spearman") for h in range(4)}
    for name, run in children.items():
        m = run.data.metrics
        assert run.info.status == "FINISHED"
        assert {"val/loss", "val/r2", "val/noisy_mse", "align/spearman"} <= set(m)
        assert all(np.isfinite(m[k]) for k in ("val/r2", "val/noisy_mse", "align/spearman"))
        assert m["val/noisy_mse"] == pytest.approx(4.0, rel=0.3)  # noise level 2: the input's own error
        figs = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "figures")}
        if name == "linear":
            assert not per_head & set(m) and "attention_heads.png" not in figs
        else:
            assert per_head <= set(m) and "attention_heads.png" in figs
            assert len(client.get_metric_history(run.info.run_id, "align/spearman_head0")) >= 2
    # The linear model cannot denoise (its x̂ shrinks the input); both attention-over-time models do.
    assert children["linear"].data.metrics["val/r2"] < 0 < children["transformer"].data.metrics["val/r2"]
    assert children["multihead"].data.params["model.window"] == "64"
