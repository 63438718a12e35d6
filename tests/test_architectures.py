"""The paper's CIFAR-10 networks under IMP, each with its own preset's optimiser and pruning:
Conv-2/4/6 (with dropout too), VGG-19 and ResNet-20 ("ResNet-18"), on tiny generated 3×32×32
data with the presets' steps shrunk. What is pruned (and what never is), what every level
starts from (batch-norm buffers included), the exact learning-rate schedules of the real
presets, deterministic augmentation, and a Conv-2 smoke run on real Fashion-MNIST."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

import lth
from lth.config import Config, with_overrides
from lth.data import Split, Splits
from lth.errors import DataError
from lth.lottery import Experiment, Runtime
from lth.models import build, initialize, prunable_layers
from lth.pruning import PruningPlan
from lth.steps import Step
from lth.store import RunStore
from lth.training import train
from lth.training.loop import make_schedule
from tests.helpers import tiny_splits

# Few and small images: VGG-19 costs ~0.4 GFLOP per 32×32 image forward.
CIFAR_TINY = tiny_splits(n_train=16, n_val=8, n_test=8, shape=(3, 32, 32), classes=10)
LEVELS = 2
# VGG-19 runs one pruning level: each global round sorts 20M magnitudes (~6 s on a busy core).
VGG_LEVELS = ("lottery.levels=1",)


def _shrunk(config: Config, *extra: str) -> Config:
    """`config` with its pruning, optimiser and model kept and its schedule made tiny."""
    t = config.training
    overrides = [
        "training.steps='2it'",
        "training.eval_every='2it'",
        "training.batch_size=4",
        f"lottery.levels={LEVELS}",
        "lottery.trials=1",
        "lottery.variants=['imp']",
    ]
    if Step.parse(t.warmup).value:
        overrides.append("training.warmup='1it'")
    if t.lr_milestones:
        overrides.append("training.lr_milestones=['1it']")
    return with_overrides(config, [*overrides, *extra])


def _model_factory(config: Config, data: Splits):
    options = {"dropout": config.model.dropout} if config.model.dropout else {}
    return lambda: build(config.model.name, data.input_shape, data.num_classes, **options)


@dataclasses.dataclass
class Run:
    config: Config
    store: RunStore
    summary: pd.DataFrame
    make_model: object
    theta0: dict[str, torch.Tensor]


def _run(tmp_path, preset: str, *extra: str, data: Splits = CIFAR_TINY) -> Run:
    config = _shrunk(lth.load_preset(preset), *extra)
    make_model = _model_factory(config, data)
    store = RunStore(tmp_path, config)
    rows = Experiment(config, data, make_model, store, Runtime(progress=False)).run()
    theta0 = initialize(make_model(), config.lottery.seed).state_dict()
    return Run(config, store, pd.DataFrame(rows), make_model, theta0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These convolutions are tiny: on two shared, busy cores a second intra-op thread costs far
    more in synchronisation than it gains (the ResNet run: 9 s on one thread, 58 s on two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One shrunk run per (preset, overrides), made on first use and shared by the tests."""
    made: dict[tuple[str, ...], Run] = {}

    def get(preset: str, *extra: str) -> Run:
        key = (preset, *extra)
        if key not in made:
            made[key] = _run(tmp_path_factory.mktemp(preset), preset, *extra)
        return made[key]

    return get


def _bn_state_names(model: nn.Module) -> set[str]:
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            names |= {f"{module_name}.{key}" for key in module.state_dict()}
    return names


# --- what is pruned --------------------------------------------------------------------------

# Conv-2 runs with dropout, so one IMP run covers the dropout variants' path too.
CONV_PRESETS = ["conv2-cifar10-dropout", "conv4-cifar10", "conv6-cifar10"]


@pytest.mark.parametrize("preset", CONV_PRESETS)
def test_conv_nets_prune_every_layer_at_its_kinds_rate(runs, preset):
    run = runs(preset)
    kinds = prunable_layers(run.make_model())
    rates = run.config.pruning.rates
    n_conv = int(run.config.model.name[-1])
    assert list(kinds.values()) == ["conv"] * n_conv + ["fc", "fc", "output"]
    assert rates == {"conv": 0.15 if n_conv == 6 else 0.1, "fc": 0.2, "output": 0.1}
    previous = run.store.level(0, "imp", 0).load_mask()
    assert set(previous) == set(kinds)  # every conv, fc and output weight is prunable
    for level in range(1, LEVELS + 1):
        mask = run.store.level(0, "imp", level).load_mask()
        for name, left in mask.remaining().items():
            before = int(previous[name].sum())
            assert left == before - int(rates[kinds[name]] * before + 0.5), name
        previous = mask


def test_conv_dropout_presets_build_dropout_networks(runs):
    run = runs("conv2-cifar10-dropout")
    assert run.make_model().dropout.p == 0.5 and run.config.model.dropout == 0.5
    for n, steps, lr in ((2, "60000it", 3e-4), (4, "75000it", 2e-4), (6, "90000it", 2e-4)):
        config = lth.load_preset(f"conv{n}-cifar10-dropout")
        plain = lth.load_preset(f"conv{n}-cifar10")
        assert (config.model.dropout, config.training.steps, config.training.lr) == (0.5, steps, lr)
        assert config.pruning == plain.pruning and config.training.batch_size == 60


@pytest.mark.parametrize(
    ("preset", "n_pruned", "dense"),
    [
        ("vgg19-cifar10", 16, {"output.weight"}),
        (
            "resnet18-cifar10",
            19,
            {"output.weight", "blocks.3.shortcut.conv.weight", "blocks.6.shortcut.conv.weight"},
        ),
    ],
)
def test_global_pruning_over_conv_leaves_output_shortcuts_and_batch_norm_dense(runs, preset, n_pruned, dense):
    run = runs(preset, *(VGG_LEVELS if preset.startswith("vgg") else ()))
    assert run.config.pruning.method == "global" and run.config.pruning.rates == {"conv": 0.2}
    model = run.make_model()
    kinds = prunable_layers(model)
    convs = sorted(name for name, kind in kinds.items() if kind == "conv")
    assert len(convs) == n_pruned and set(kinds) - set(convs) == dense
    bn_weights = {n for n in _bn_state_names(model) if n.endswith(".weight")}
    assert bn_weights  # both networks have batch norm, initialised to weight 1, bias 0
    previous = run.store.level(0, "imp", 0).load_mask()
    for level in range(1, run.config.lottery.levels + 1):
        out = run.store.level(0, "imp", level)
        mask = out.load_mask()
        assert sorted(mask) == convs  # nothing but the 3×3 convs is in the mask: no batch norm
        before = sum(previous.remaining().values())
        assert sum(mask.remaining().values()) == before - int(0.2 * before + 0.5)  # one pool
        for name in ("init", "final"):
            tensors = out.load_tensors(name)
            for layer in dense | bn_weights:
                assert torch.count_nonzero(tensors[layer]) == tensors[layer].numel(), (level, name, layer)
        previous = mask


# --- what each level starts from ---------------------------------------------------------------


def _assert_masked_equal(state, mask, reference, where):
    assert set(state) == set(reference), where
    for name, value in state.items():
        expected = reference[name] * mask[name] if name in mask else reference[name]
        assert torch.equal(value, expected), (where, name)


@pytest.mark.parametrize("preset", ["conv2-cifar10-dropout", "vgg19-cifar10", "resnet18-cifar10"])
def test_every_level_starts_from_the_mask_applied_to_all_of_theta0(runs, preset):
    run = runs(preset, *(VGG_LEVELS if preset.startswith("vgg") else ()))
    bn = _bn_state_names(run.make_model())
    assert bool(bn) == (preset != "conv2-cifar10-dropout")
    for level in range(run.config.lottery.levels + 1):
        out = run.store.level(0, "imp", level)
        mask = out.load_mask()
        init, final = out.load_tensors("init"), out.load_tensors("final")
        # θ0 in full: the masked weights and every buffer, batch-norm running stats included
        _assert_masked_equal(init, mask, run.theta0, (preset, level))
        for name in mask:
            assert torch.all(final[name][mask[name] == 0] == 0), (level, name)  # pruned stays 0
        for name in bn:
            if name.endswith(("running_mean", "num_batches_tracked")):
                # training moved the stats, so the reset above really restored them
                assert not torch.equal(final[name], init[name]), (level, name)


def test_rewinding_restores_all_of_theta_k_and_the_controls_keep_batch_norm_at_their_init(runs):
    run = runs(
        "resnet18-cifar10-rewind500",
        "lottery.rewind_step='1it'",
        "lottery.variants=['imp', 'reinit', 'random']",
    )
    assert run.config.training.lr == 0.1 and Step.parse(run.config.training.warmup).value == 0
    theta_k = run.store.level(0, "imp", 0).load_tensors("rewind")
    assert theta_k["bn.num_batches_tracked"].item() == 1  # θk is the state after k = 1 step
    assert not torch.equal(theta_k["bn.running_mean"], run.theta0["bn.running_mean"])
    for level in range(1, LEVELS + 1):
        imp = run.store.level(0, "imp", level)
        _assert_masked_equal(imp.load_tensors("init"), imp.load_mask(), theta_k, ("imp", level))
        random = run.store.level(0, "random", level)
        _assert_masked_equal(random.load_tensors("init"), random.load_mask(), theta_k, ("random", level))
        assert random.load_mask().remaining() == imp.load_mask().remaining()
        reinit = run.store.level(0, "reinit", level)
        fresh = reinit.load_tensors("init")
        assert torch.equal(reinit.load_mask()["conv.weight"], imp.load_mask()["conv.weight"])
        _assert_masked_equal(fresh, imp.load_mask(), fresh, ("reinit", level))
        assert fresh["bn.num_batches_tracked"].item() == 0 and torch.all(fresh["bn.running_var"] == 1)
        assert not torch.equal(fresh["conv.weight"], theta_k["conv.weight"] * imp.load_mask()["conv.weight"])
    assert set(run.summary.variant) == {"imp", "reinit", "random"}


# --- the real presets' learning-rate schedules --------------------------------------------------


def _schedule(preset: str):
    config = lth.load_preset(preset)
    per_epoch = 45_000 // config.training.batch_size  # CIFAR-10's training split after 5K validation
    return config, per_epoch, make_schedule(config.training, per_epoch)


def test_vgg19_schedule_warms_up_over_10k_iterations_and_drops_at_epochs_80_and_120():
    config, per_epoch, lr = _schedule("vgg19-cifar10")
    assert per_epoch == 703
    assert Step.parse(config.training.steps).iterations(per_epoch) == 112_480  # 160 epochs
    assert lr.milestones == (56_240, 84_360)
    expected = {
        0: 0.0,
        1: 1e-5,
        2_500: 0.025,
        5_000: 0.05,
        9_999: 0.1 * 9_999 / 10_000,
        10_000: 0.1,
        56_239: 0.1,
        56_240: 0.01,
        84_359: 0.01,
        84_360: 0.001,
        112_479: 0.001,
    }
    assert {it: lr(it) for it in expected} == pytest.approx(expected, rel=1e-12, abs=1e-15)
    for name in ("vgg19-cifar10-nowarmup", "vgg19-cifar10-rewind100"):
        _, _, plain = _schedule(name)
        assert (plain(0), plain(56_239), plain(56_240), plain(84_360)) == pytest.approx(
            (0.1, 0.1, 0.01, 0.001)
        )


def test_resnet18_schedule_warms_up_to_0_03_over_20k_iterations_and_drops_at_20k_and_25k():
    config, per_epoch, lr = _schedule("resnet18-cifar10")
    assert per_epoch == 351 and config.training.batch_size == 128
    assert Step.parse(config.training.steps).iterations(per_epoch) == 30_000
    expected = {
        0: 0.0,
        100: 0.03 * 100 / 20_000,
        10_000: 0.015,
        19_999: 0.03 * 19_999 / 20_000,
        20_000: 0.003,
        24_999: 0.003,
        25_000: 0.0003,
        29_999: 0.0003,
    }
    assert {it: lr(it) for it in expected} == pytest.approx(expected, rel=1e-12, abs=1e-15)
    for name in ("resnet18-cifar10-nowarmup", "resnet18-cifar10-rewind500"):
        _, _, plain = _schedule(name)
        assert (plain(0), plain(19_999), plain(20_000), plain(25_000)) == pytest.approx(
            (0.1, 0.1, 0.01, 0.001)
        )


def test_rewinding_presets_rewind_to_the_papers_iterations():
    assert lth.load_preset("resnet18-cifar10-rewind500").lottery.rewind_step == "500it"
    assert lth.load_preset("vgg19-cifar10-rewind100").lottery.rewind_step == "100it"
    for name in ("resnet18-cifar10", "vgg19-cifar10"):
        config = lth.load_preset(name)
        assert config.data.augment and config.training.optimizer == "sgd"
        assert (config.training.momentum, config.training.weight_decay) == (0.9, 1e-4)


# --- augmentation inside training ---------------------------------------------------------------


def _train_conv2(seed: int, augment: bool):
    config = with_overrides(
        lth.load_preset("conv2-cifar10"),
        ["training.steps='3it'", "training.eval_every='3it'", "training.batch_size=4"],
    )
    model = initialize(build("conv2", CIFAR_TINY.input_shape, 10), 0)
    result = train(model, CIFAR_TINY, config.training, seed=seed, augment=augment)
    return result.history, model.state_dict()


def test_augmentation_in_training_is_deterministic_under_the_seed():
    history, weights = _train_conv2(seed=3, augment=True)
    again_history, again_weights = _train_conv2(seed=3, augment=True)
    assert history == again_history
    assert all(torch.equal(weights[k], again_weights[k]) for k in weights)
    other_history, _ = _train_conv2(seed=4, augment=True)
    assert other_history[-1] != history[-1]
    _, plain_weights = _train_conv2(seed=3, augment=False)  # same order, no augmentation
    assert not all(torch.equal(weights[k], plain_weights[k]) for k in weights)


# --- real data -----------------------------------------------------------------------------------


def _fashion_subset() -> Splits:
    try:
        full = lth.data.load("fashion-mnist")
    except DataError as err:
        pytest.skip(f"Fashion-MNIST is not installed ({err}); run `lth data fetch fashion-mnist`")

    def head(split: Split, n: int) -> Split:
        return Split(split.x[:n].clone(), split.y[:n].clone())

    return dataclasses.replace(
        full, train=head(full.train, 120), val=head(full.val, 50), test=head(full.test, 50)
    )


def test_conv2_imp_runs_on_real_fashion_mnist(tmp_path):
    data = _fashion_subset()
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    config = with_overrides(
        lth.load_preset("conv2-fashion-mnist"),
        ["training.steps='3it'", "training.eval_every='3it'", "lottery.levels=1", "lottery.trials=1"],
    )
    assert (config.training.optimizer, config.training.lr, config.training.batch_size) == ("adam", 2e-4, 60)
    make_model = _model_factory(config, data)
    store = RunStore(tmp_path, config)
    summary = pd.DataFrame(Experiment(config, data, make_model, store, Runtime(progress=False)).run())
    assert sorted(zip(summary.variant, summary.level, strict=True)) == [
        ("imp", 0),
        ("imp", 1),
        ("random", 0),
        ("random", 1),
        ("reinit", 0),
        ("reinit", 1),
    ]
    plan = PruningPlan.for_model(make_model(), config.pruning)
    mask = store.level(0, "imp", 1).load_mask()
    assert set(mask) == set(plan.layer_rates)
    assert summary[summary.level == 1].percent_remaining.iloc[0] == pytest.approx(
        100 * mask.fraction_remaining()
    )
    assert 79 < 100 * mask.fraction_remaining() < 81  # fc layers dominate: ≈ 20% pruned
    for column in ("early_stop_test_accuracy", "final_test_accuracy", "final_train_accuracy"):
        assert summary[column].between(0, 1).all()
    # three Adam steps on real images already beat chance (10%)
    dense = summary[(summary.variant == "imp") & (summary.level == 0)].final_test_accuracy.iloc[0]
    assert dense > 0.2


def test_every_preset_has_a_pinned_hash():
    from tests.test_config import PINNED_HASHES

    assert set(lth.config.preset_names()) <= set(PINNED_HASHES)
