"""The channels-last engine (training/autograd.py): Conv-2's step and evaluation with NHWC weights,
equal to the autograd engine within rounding, masks held, resumable, and refused where it does not
apply."""

import dataclasses

import pandas as pd
import pytest
import torch

from lth.config import PruningConfig, TrainingConfig
from lth.errors import ConfigError
from lth.models import build, initialize
from lth.pruning import PruningPlan
from lth.store import FileCheckpoint
from lth.training import train
from lth.training.engines import engine_name
from tests.helpers import tiny_splits

DATA = tiny_splits(shape=(3, 8, 8))
NAME = "channels-last"
CONFIG = TrainingConfig(steps="30it", eval_every="10it", batch_size=30, lr=2e-3)


def _conv2() -> torch.nn.Module:
    return initialize(build("conv2", DATA.input_shape, DATA.num_classes, hidden=(32, 16)), 0)


def _mask(model: torch.nn.Module):
    plan = PruningPlan.for_model(model, PruningConfig(rates={"conv": 0.1, "fc": 0.2, "output": 0.1}))
    return plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=3)


def test_channels_last_equals_autograd_within_rounding_and_keeps_pruned_weights_zero():
    # With SGD: Adam divides by √v, so a rounding difference in a near-zero gradient becomes a
    # step of about the learning rate, and the two drift apart by ~1e-4 in 30 steps.
    sgd = dataclasses.replace(CONFIG, optimizer="sgd")
    models = {name: _conv2() for name in ("autograd", "channels-last")}
    mask = _mask(models["autograd"])
    results = {
        name: train(model, DATA, sgd, seed=3, mask=mask, engine=name) for name, model in models.items()
    }
    last = models["channels-last"]
    assert last.get_submodule("convs.0").weight.is_contiguous(memory_format=torch.channels_last)
    for (name, a), b in zip(models["autograd"].state_dict().items(), last.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)
        if name in mask:
            assert torch.all(b[mask[name] == 0] == 0)
    histories = [pd.DataFrame(r.history) for r in results.values()]
    pd.testing.assert_frame_equal(histories[1], histories[0], rtol=1e-4, atol=1e-5)


def test_channels_last_resumes_to_the_unbroken_numbers(tmp_path):
    model = _conv2()
    mask = _mask(model)
    unbroken = train(_conv2(), DATA, CONFIG, seed=3, mask=mask, engine=NAME)
    checkpoint = FileCheckpoint(tmp_path / "checkpoint.pt", interval_s=0.0)

    class Killed(Exception):
        pass

    done = [0]

    def die_at_20(n: int) -> None:
        done[0] += n
        if done[0] == 20:
            raise Killed

    with pytest.raises(Killed):
        train(
            model,
            DATA,
            CONFIG,
            seed=3,
            mask=mask,
            checkpoint=checkpoint,
            on_progress=die_at_20,
            engine="channels-last",
        )
    resumed = train(_conv2(), DATA, CONFIG, seed=3, mask=mask, checkpoint=checkpoint, engine=NAME)
    assert pd.DataFrame(resumed.history).equals(pd.DataFrame(unbroken.history))


def test_channels_last_is_refused_for_a_network_without_convolutions():
    lenet = build("lenet300", DATA.input_shape, DATA.num_classes)
    with pytest.raises(ConfigError, match="channels-last engine cannot train LeNet300.*2-d convolutions"):
        engine_name("channels-last", lenet)
