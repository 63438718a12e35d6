"""The training loop: masks hold through training and optimiser state, schedules are exact,
early stopping follows the validation loss, and a resumed run is identical to an unbroken one."""

import pandas as pd
import pytest
import torch

from lth.config import PruningConfig, TrainingConfig
from lth.models import build, initialize
from lth.pruning import PruningPlan
from lth.training import LrSchedule, train
from tests.helpers import RecordingCheckpoint, overfitting_splits, tiny_splits


def _setup(optimizer="adam", **training):
    data = tiny_splits()
    model = initialize(build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16)), seed=0)
    plan = PruningPlan.for_model(model, PruningConfig())
    mask = plan.prune(plan.dense_mask(model), dict(model.named_parameters()), rounds=4)
    settings = {"steps": "60it", "eval_every": "20it", "batch_size": 30} | training
    config = TrainingConfig(optimizer=optimizer, **settings)
    return data, model, mask, config


@pytest.mark.parametrize(
    ("optimizer", "extra"),
    [
        ("adam", {}),
        ("adam", {"weight_decay": 1e-3}),
        ("sgd", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}),
    ],
)
def test_pruned_weights_and_their_optimiser_state_stay_exactly_zero(optimizer, extra):
    data, model, mask, config = _setup(optimizer, **extra)
    with torch.no_grad():  # start from unmasked weights: train() must zero them itself
        model.get_parameter("hidden.0.weight").add_(0.01)
    spy = RecordingCheckpoint()
    train(model, data, config, seed=1, mask=mask, checkpoint=spy)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert torch.all(params[name][m == 0] == 0), name
        assert torch.any(params[name][m == 1] != 0), name
    # optimiser state, in the order of model.parameters()
    index = {name: i for i, name in enumerate(params)}
    for state in (saved["engine"]["optimizer"] for saved in spy.saved):
        for name, m in mask.items():
            for key, value in state["state"][index[name]].items():
                if torch.is_tensor(value) and value.shape == m.shape:
                    assert torch.all(value[m == 0] == 0), (name, key)


def test_negative_weights_train_like_positive_ones():
    """Surviving negative weights are kept and updated as often as positive ones: masks key on
    |w|, never on w, and nothing clamps a sign."""
    data, model, mask, config = _setup()
    before = model.get_parameter("hidden.0.weight").detach().clone()
    train(model, data, config, seed=1, mask=mask)
    after = model.get_parameter("hidden.0.weight").detach()
    kept = mask["hidden.0.weight"] == 1
    negative, positive = kept & (before < 0), kept & (before > 0)
    moved_neg = (after[negative] != before[negative]).float().mean()
    moved_pos = (after[positive] != before[positive]).float().mean()
    assert moved_neg > 0.9 and moved_pos > 0.9
    # the mask kept the largest magnitudes of both signs
    assert before[negative].abs().min() > 0 and before[negative].numel() > 0.3 * kept.sum()


def test_learning_rate_warmup_and_step_decay_are_exact():
    s = LrSchedule(base_lr=0.1, warmup=100, milestones=(200, 300), gamma=0.1)
    assert s(0) == 0.0
    assert s(50) == pytest.approx(0.05)
    assert s(100) == pytest.approx(0.1) and s(199) == pytest.approx(0.1)
    assert s(200) == pytest.approx(0.01) and s(300) == pytest.approx(0.001)


def test_the_optimiser_uses_the_scheduled_rate():
    data, model, _mask, config = _setup("sgd", lr=0.5, warmup="40it")
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)

    import lth.training.engine as engine

    original = engine.make_optimizer
    engine.make_optimizer = lambda params, c: Spy(params, lr=c.lr)
    try:  # the autograd engine steps through torch.optim; the fused one equals it (test_fused.py)
        train(model, data, config, seed=0, engine="autograd")
    finally:
        engine.make_optimizer = original
    assert seen[:3] == [0.0, 0.5 / 40, 1.0 / 40] and seen[40:] == [0.5] * 20


def test_early_stop_is_the_first_minimum_of_validation_loss():
    data, model, _mask, config = _setup(steps="200it", eval_every="10it", test_curve=True)
    result = train(model, data, config, seed=0)
    losses = [row["val_loss"] for row in result.history]
    assert [row["iteration"] for row in result.history] == list(range(0, 201, 10))
    best = losses.index(min(losses))
    assert result.early_stop_iteration == best * 10
    assert result.early_stop_test_accuracy == result.history[best]["test_accuracy"]
    assert result.final_test_accuracy == result.history[-1]["test_accuracy"]
    assert 0 <= result.final_train_accuracy <= 1 and result.final_train_accuracy > 0.5


def test_cheap_evaluation_keeps_the_early_stop_record_of_evaluating_everything():
    # The network overfits, so the cheap schedule has evaluations to skip.
    data = overfitting_splits()
    histories, records = [], []
    for test_curve in (True, False):
        model = initialize(build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16)), seed=0)
        config = TrainingConfig(
            steps="300it", eval_every="10it", batch_size=30, lr=0.01, test_curve=test_curve
        )
        result = train(model, data, config, seed=4)
        histories.append(pd.DataFrame(result.history))
        records.append(result.record())
    full, cheap = histories
    assert records[0] == records[1]
    pd.testing.assert_frame_equal(
        full.drop(columns=["test_loss", "test_accuracy"]), cheap.drop(columns=["test_loss", "test_accuracy"])
    )
    # The test set is evaluated at the start, at each new (strict) minimum of the validation
    # loss and at the end, and nowhere else; where it is, it gives the full run's numbers.
    new_minimum = full.val_loss < full.val_loss.cummin().shift(fill_value=float("inf"))
    wanted = new_minimum | (full.index == full.index[-1])
    assert cheap.test_accuracy.notna().tolist() == wanted.tolist()
    assert 2 < wanted.sum() < len(full) / 2  # not a trivial case: most evaluations skip the test set
    pd.testing.assert_frame_equal(cheap[wanted], full[wanted])


def test_same_seed_same_numbers_and_a_different_seed_a_different_order():
    results = []
    for seed in (3, 3, 4):
        data, model, mask, config = _setup()
        results.append(train(model, data, config, seed=seed, mask=mask).history)
    assert pd.DataFrame(results[0]).equals(pd.DataFrame(results[1]))
    assert not pd.DataFrame(results[0]).equals(pd.DataFrame(results[2]))


def test_the_data_order_is_kept_where_the_data_is_and_is_the_same_on_every_device():
    """Each epoch's order is drawn on the CPU and copied to the data's device once (a copy a step
    from pageable memory would make the host wait for a GPU every step): "meta" stands in here."""
    from lth.training.engine import BatchOrder

    here, there = BatchOrder(600, 60, seed=3), BatchOrder(600, 60, seed=3, device=torch.device("meta"))
    assert there.indices(12).device.type == "meta" and there.indices(12).shape == (60,)
    assert here.indices(12).device.type == "cpu"
    epoch_1 = torch.cat([here.indices(t) for t in range(10, 20)])
    assert sorted(epoch_1.tolist()) == list(range(600))  # a permutation of the split, epoch by epoch
    assert not torch.equal(epoch_1, torch.cat([here.indices(t) for t in range(10)]))


def test_a_run_interrupted_anywhere_resumes_to_identical_results(tmp_path):
    from lth.store import FileCheckpoint

    data, model, mask, config = _setup(steps="100it", eval_every="10it")
    reference_model = initialize(build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16)), 0)
    reference = train(reference_model, data, config, seed=5, mask=mask)

    class Killed(Exception):
        pass

    checkpoint = FileCheckpoint(tmp_path / "checkpoint.pt", interval_s=0.0)
    done = [0]

    def die_at_70(n):
        done[0] += n
        if done[0] == 70:
            raise Killed

    with pytest.raises(Killed):
        train(model, data, config, seed=5, mask=mask, checkpoint=checkpoint, on_progress=die_at_70)
    assert checkpoint.load()["iteration"] == 60  # the last save before the kill
    fresh = initialize(build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16)), 0)
    resumed = train(fresh, data, config, seed=5, mask=mask, checkpoint=checkpoint)
    assert pd.DataFrame(resumed.history).equals(pd.DataFrame(reference.history))
    assert resumed.record() == reference.record()
    for a, b in zip(fresh.parameters(), reference_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_rewind_capture_takes_the_weights_at_iteration_k():
    data, model, _mask, config = _setup(steps="30it")
    first = initialize(build("lenet300", data.input_shape, data.num_classes, hidden=(32, 16)), 0)
    short = TrainingConfig(**{**config.__dict__, "steps": "7it"})
    train(first, data, short, seed=2)
    result = train(model, data, config, seed=2, capture_at=7)
    assert all(torch.equal(result.captured[k], v) for k, v in first.state_dict().items())


def test_a_checkpoint_written_before_engines_is_trained_over_to_the_same_numbers():
    data, model, mask, config = _setup()
    reference = train(model, data, config, seed=1, mask=mask)

    class Old(RecordingCheckpoint):
        def load(self):  # `train`'s format before engines: no "engine" entry
            return {"iteration": 40, "model": {}, "optimizer": {}, "history": [], "captured": None}

    _, fresh, _, _ = _setup()
    again = train(fresh, data, config, seed=1, mask=mask, checkpoint=Old())
    assert pd.DataFrame(again.history).equals(pd.DataFrame(reference.history))
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))
