"""The EMA of the weights: the decay warm-up (timm's ModelEmaV3 schedule) and what the average holds."""

from __future__ import annotations

import pytest
import torch

from resnet.train.ema import ema_decay, make_ema


def test_decay_warms_up_to_the_configured_value():
    assert ema_decay(0.999, 7) == pytest.approx(0.75)
    assert ema_decay(0.999, 999) == pytest.approx(0.99)
    assert ema_decay(0.999, 40_000) == 0.999
    assert ema_decay(0.999, 7, warmup=False) == 0.999


@pytest.mark.parametrize("warmup", [True, False])
def test_average_follows_the_formula_for_parameters_and_buffers(warmup):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = make_ema(model, 0.9, warmup=warmup)
    expected = {k: v.clone() for k, v in model.state_dict().items()}  # update 0 copies the model
    ema.update_parameters(model)
    for n in range(1, 5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # moves BatchNorm's running statistics and counter
        decay = ema_decay(0.9, n, warmup)
        for key, value in model.state_dict().items():
            expected[key] = value.clone() if key.endswith("num_batches_tracked") else \
                decay * expected[key] + (1 - decay) * value
        ema.update_parameters(model)
    for key, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6)
    assert int(ema.n_averaged) == 5


def test_warmed_up_average_is_close_to_the_model_early_on():
    """The point of the warm-up: after a few updates the average is mostly the recent model, not the initial one."""
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 10)
    start = model.weight.detach().clone()
    warm, fixed = make_ema(model, 0.999), make_ema(model, 0.999, warmup=False)
    warm.update_parameters(model)  # the first update copies the model (here: its initial weights)
    fixed.update_parameters(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(20):
        warm.update_parameters(model)
        fixed.update_parameters(model)
    moved = lambda ema: ((ema.module.weight - start).mean() / 1.0).item()  # noqa: E731 - share of the way
    assert moved(warm) > 0.9 and moved(fixed) < 0.03
