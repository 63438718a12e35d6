"""Replicas: K trainings as one vectorised model give the numbers of K separate trainings (up to
float rounding), keep every pruned weight at zero, and resume exactly."""

import pandas as pd
import pytest
import torch

from lth.config import PruningConfig, TrainingConfig
from lth.errors import LthError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize
from lth.pruning import PruningPlan
from lth.store import FileCheckpoint, GroupCheckpoint, RunStore
from lth.training import train
from lth.training.replicas import replicable, train_replicas
from tests.helpers import RecordingCheckpoint, overfitting_splits, tiny_config, tiny_splits

DATA = tiny_splits()


def _model(name: str, seed: int, **kwargs):
    hidden = {"hidden": (32, 16)} if name == "lenet300" else {}
    return initialize(build(name, DATA.input_shape, DATA.num_classes, **hidden, **kwargs), seed)


def _masks(name: str, k: int):
    """K different masks: replica r pruned r + 1 rounds."""
    model = _model(name, 0)
    rates = {"fc": 0.2, "output": 0.1} | ({"conv": 0.1} if name.startswith("conv") else {})
    plan = PruningPlan.for_model(model, PruningConfig(rates=rates))
    weights = dict(model.named_parameters())
    return [plan.prune(plan.dense_mask(model), weights, rounds=r + 1) for r in range(k)]


def _assert_same_training(separate, together, rtol=1e-4, atol=1e-5):
    (models, results), (models_v, results_v) = separate, together
    for model, model_v, result, result_v in zip(models, models_v, results, results_v, strict=True):
        for (name, a), b in zip(model.state_dict().items(), model_v.state_dict().values(), strict=True):
            torch.testing.assert_close(b, a, rtol=rtol, atol=atol, msg=name)
        h, h_v = pd.DataFrame(result.history), pd.DataFrame(result_v.history)
        pd.testing.assert_frame_equal(h_v, h, rtol=rtol, atol=atol)  # NaN where the test set was skipped
        assert result_v.early_stop_iteration == result.early_stop_iteration
        assert result_v.record() == pytest.approx(result.record(), rel=rtol, abs=atol)
        if result.captured is not None:
            for name, value in result.captured.items():
                torch.testing.assert_close(result_v.captured[name], value, rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    ("name", "settings", "seeds", "extra"),
    [
        ("lenet300", {}, [3, 3, 3, 3], {}),  # a ticket and its controls: one data order
        ("lenet300", {}, [1, 2, 3, 4], {"capture_at": 7}),  # trials: their own orders; θk captured
        (
            "lenet300",
            {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3, "warmup": "20it"},
            [1, 2, 3],
            {"start": 10},  # rewound to k = 10
        ),
        # SGD at a modest rate for 40 steps here. Rounding differences stay rounding-sized only
        # while no near-tie flips: with augmentation's zero padding, max-pool ties among zeros
        # and near-0 gradients (which Adam divides by their root mean square) can turn 1e-8 into
        # 1e-3 within a few dozen steps. Measured at 1 and 2 threads (equal sums, see
        # lth/environment.py): 5e-7 relative after 40 steps, 7e-2 after 80, where a tie flipped.
        # Both are valid runs; not equal.
        (
            "conv2",
            {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "test_curve": True, "steps": "40it"},
            [5, 6],
            {"augment": True},
        ),
    ],
)
@pytest.mark.parametrize("engine", ["auto", "autograd"])  # LeNet: fused replicas, or vmap
def test_replicas_equal_separate_trainings(name, settings, seeds, extra, engine):
    if name != "lenet300" and engine != "auto":
        pytest.skip("only fully connected networks have a second replica engine")
    config = TrainingConfig(**({"steps": "80it", "eval_every": "10it", "batch_size": 30} | settings))
    masks = _masks(name, len(seeds))
    separate = ([_model(name, r) for r in range(len(seeds))], [])
    for model, seed, mask in zip(separate[0], seeds, masks, strict=True):
        separate[1].append(train(model, DATA, config, seed=seed, mask=mask, **extra))
    together = [_model(name, r) for r in range(len(seeds))]
    results = train_replicas(together, DATA, config, seeds=seeds, masks=masks, engine=engine, **extra)
    # Fused replicas compute each replica as the fused engine computes one model: bit for bit.
    exact = name == "lenet300" and engine == "auto"
    _assert_same_training(separate, (together, results), **({"rtol": 0, "atol": 0} if exact else {}))


def test_replicas_evaluate_the_test_set_where_separate_trainings_do():
    # Validation loss turns up, so most evaluations skip the test set, and at some none of the
    # replicas needs it.
    data = overfitting_splits()
    config = TrainingConfig(steps="300it", eval_every="10it", batch_size=30, lr=0.01)
    seeds = [4, 5, 6]
    separate = ([_model("lenet300", r) for r in range(3)], [])
    for model, seed in zip(separate[0], seeds, strict=True):
        separate[1].append(train(model, data, config, seed=seed))
    together = [_model("lenet300", r) for r in range(3)]
    results = train_replicas(together, data, config, seeds=seeds)
    _assert_same_training(separate, (together, results))
    skipped = [pd.DataFrame(r.history).test_accuracy.isna() for r in results]
    assert (skipped[0] & skipped[1] & skipped[2]).any()  # an evaluation where no replica needs it


def test_pruned_weights_and_their_optimiser_state_stay_exactly_zero_in_replicas():
    masks = _masks("lenet300", 3)
    models = [_model("lenet300", r) for r in range(3)]
    with torch.no_grad():  # start from unmasked weights: train_replicas must zero them itself
        for model in models:
            model.get_parameter("hidden.0.weight").add_(0.01)
    spy = RecordingCheckpoint()
    config = TrainingConfig(steps="40it", eval_every="10it", batch_size=30, weight_decay=1e-3)
    train_replicas(models, DATA, config, seeds=[0, 1, 2], masks=masks, checkpoint=spy)
    saved = spy.saved
    assert saved and all(len(state["engine"]["replicas"]) == 3 for state in saved)
    index = {name: i for i, (name, _) in enumerate(models[0].named_parameters())}
    for model, mask, r in zip(models, masks, range(3), strict=True):
        for name, m in mask.items():
            weight = model.get_parameter(name)
            assert torch.all(weight[m == 0] == 0) and torch.any(weight[m == 1] != 0), name
            for state in saved:
                for key, value in state["engine"]["replicas"][r]["optimizer"]["state"][index[name]].items():
                    if key != "step":
                        assert value.shape == m.shape and torch.all(value[m == 0] == 0), (name, key)


def test_a_group_stopped_part_way_resumes_to_identical_results(tmp_path):
    config = TrainingConfig(steps="100it", eval_every="10it", batch_size=30)
    masks, seeds = _masks("lenet300", 3), [4, 5, 6]
    unbroken = [_model("lenet300", r) for r in range(3)]
    reference = train_replicas(unbroken, DATA, config, seeds=seeds, masks=masks)

    class Killed(Exception):
        pass

    checkpoint = FileCheckpoint(tmp_path / "group.pt", interval_s=0.0)
    done = [0]

    def die_at_70(n):
        done[0] += n
        if done[0] == 3 * 70:  # iterations summed over the replicas
            raise Killed

    with pytest.raises(Killed):
        stopped = [_model("lenet300", r) for r in range(3)]
        train_replicas(
            stopped, DATA, config, seeds=seeds, masks=masks, checkpoint=checkpoint, on_progress=die_at_70
        )
    assert checkpoint.load()["iteration"] == 60  # the last save before the kill
    resumed_models = [_model("lenet300", r) for r in range(3)]
    resumed = train_replicas(resumed_models, DATA, config, seeds=seeds, masks=masks, checkpoint=checkpoint)
    for a, b, model_a, model_b in zip(resumed, reference, resumed_models, unbroken, strict=True):
        assert pd.DataFrame(a.history).equals(pd.DataFrame(b.history)) and a.record() == b.record()
        assert all(torch.equal(x, y) for x, y in zip(model_a.parameters(), model_b.parameters(), strict=True))


def test_a_group_checkpoint_names_its_members_and_resumes_only_a_group_of_its_size(tmp_path):
    config = TrainingConfig(steps="20it", eval_every="10it", batch_size=30)
    checkpoint = GroupCheckpoint(tmp_path / "group.pt", interval_s=0.0, members=["a", "b"])
    train_replicas(
        [_model("lenet300", r) for r in range(2)], DATA, config, seeds=[0, 1], checkpoint=checkpoint
    )
    saved = checkpoint.load()
    assert saved["members"] == ["a", "b"] and saved["iteration"] == 10
    three = [_model("lenet300", r) for r in range(3)]
    with pytest.raises(LthError, match="checkpoint of 2 trainings cannot resume 3"):
        train_replicas(three, DATA, config, seeds=[0, 1, 2], checkpoint=checkpoint)


def test_dropout_and_batch_norm_models_are_not_replicable():
    assert replicable(_model("lenet300", 0)) and replicable(_model("conv2", 0))
    assert not replicable(_model("conv2", 0, dropout=0.5))
    vgg = build("vgg19", (3, 32, 32), 10)
    assert not replicable(vgg)
    config = TrainingConfig(steps="10it", eval_every="10it", batch_size=30)
    with pytest.raises(LthError, match="dropout or batch norm"):
        train_replicas([_model("conv2", 0, dropout=0.5)] * 2, DATA, config, seeds=[0, 1])


def _experiment(tmp_path, *overrides, model="lenet300", runtime=None):
    config = tiny_config(*overrides, trials=2)
    store = RunStore(tmp_path, config)
    options = {"hidden": (32, 16)} if model == "lenet300" else {"dropout": config.model.dropout}

    def make_model():
        return build(model, DATA.input_shape, DATA.num_classes, **options)

    return Experiment(config, DATA, make_model, store, runtime or Runtime(progress=False))


def test_auto_trains_one_model_at_a_time_on_a_cpu_and_replicas_where_asked(tmp_path):
    assert _experiment(tmp_path / "a").replicas == 1
    assert _experiment(tmp_path / "b", "lottery.replicas=4").replicas == 4
    conv = ("pruning.rates={conv = 0.1, fc = 0.2, output = 0.1}",)
    assert _experiment(tmp_path / "c", *conv, "lottery.replicas=4", model="conv2").replicas == 4
    dropout = _experiment(tmp_path / "d", *conv, "lottery.replicas=4", "model.dropout=0.5", model="conv2")
    assert dropout.replicas == 1  # cannot equal separate runs: always one at a time


def test_a_users_own_module_trains_as_replicas_only_when_asked(tmp_path):
    def make_model():
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
        )

    for replicas, expected in (("0", 1), ("3", 3)):
        config = tiny_config(f"lottery.replicas={replicas}", "lottery.levels=1", trials=1)
        store = RunStore(tmp_path / replicas, config)
        experiment = Experiment(config, DATA, make_model, store, Runtime(progress=False))
        assert experiment.replicas == expected
        experiment.run()
        assert store.level(0, "reinit", 1).load_result()["replicas"] == min(expected, 3)


def test_a_lottery_run_as_replicas_matches_one_trained_model_at_a_time(tmp_path):
    one_by_one = pd.DataFrame(_experiment(tmp_path / "single", "lottery.replicas=1").run())
    experiment = _experiment(tmp_path / "replicas", "lottery.replicas=16")
    vectorised = pd.DataFrame(experiment.run())
    pd.testing.assert_frame_equal(vectorised, one_by_one, rtol=1e-4, atol=1e-5)
    # Level 0 trains both trials' dense networks together; each later level, both trials'
    # tickets and controls: six replicas.
    result = experiment.store.level(1, "random", 2).load_result()
    assert result["replicas"] == 6
    assert experiment.store.level(0, "imp", 0).load_result()["replicas"] == 2
