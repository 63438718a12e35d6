"""Configs: presets, overrides, validation with clear errors, and a hash that stays stable."""

import dataclasses

import pytest

from lth.config import Config, TrainingConfig, from_dict, load_preset, preset_names, with_overrides
from lth.errors import ConfigError
from lth.steps import Step


def test_step_parses_iterations_and_epochs():
    assert Step.parse("50000it").iterations(916) == 50000
    assert Step.parse("2ep").iterations(916) == 1832
    assert str(Step.parse(" 3 ep ")) == "3ep"
    for bad in ("-5it", "5", "1.5ep", "it", "5 iterations"):
        with pytest.raises(ConfigError, match="bad step"):
            Step.parse(bad)


def test_every_preset_loads_and_validates():
    assert {"lenet-mnist", "lenet-mnist-quick"} <= set(preset_names())
    for name in preset_names():
        config = load_preset(name)
        assert config.description, f"preset {name} needs a description"
        assert config.expected_runtime, f"preset {name} needs an expected run time"


def test_lenet_mnist_preset_carries_the_papers_settings():
    c = load_preset("lenet-mnist")
    assert (c.model.name, c.data.dataset, c.data.val_size) == ("lenet300", "mnist", 5000)
    assert (c.training.optimizer, c.training.lr, c.training.batch_size) == ("adam", 1.2e-3, 60)
    assert (c.training.steps, c.training.eval_every) == ("50000it", "100it")
    assert c.pruning.rates == {"fc": 0.2, "output": 0.1}
    assert (c.lottery.strategy, c.lottery.rewind_step, c.lottery.trials, c.lottery.levels) == (
        "reset",
        "0it",
        5,
        15,
    )
    assert c.lottery.variants == ["imp", "reinit", "random"]


# The hashes name run directories: a change here orphans stored results. Never update these
# numbers to make a test pass; fix the change that moved them instead.
PINNED_HASHES = {
    "conv2-cifar10": "65f7581a718c47f9",
    "conv2-cifar10-dropout": "32c60dd645505b7e",
    "conv2-fashion-mnist": "e2ba3e7d1e9987dd",
    "conv2-fashion-mnist-instability": "e2ba3e7d1e9987dd",  # instability is not hashed: its base's
    "conv4-cifar10": "5aaf21ebfcda9c24",
    "conv4-cifar10-dropout": "00cd4c3e8b9921eb",
    "conv6-cifar10": "84989de7f7489a13",
    "conv6-cifar10-dropout": "ce1a9912704082fc",
    "lenet-mnist": "44136fa355b3678a",
    "lenet-mnist-finetune": "dfe3ed97f4d0ea4b",
    "lenet-mnist-instability": "44136fa355b3678a",
    "lenet-mnist-instability-quick": "3ad41ea957b74ca9",
    "lenet-mnist-lr-rewind": "a1db71d9ba27d4fc",
    "lenet-mnist-quick": "3ad41ea957b74ca9",
    "lenet-mnist-at-init": "71a9a2857cc9b7b9",
    "conv2-fashion-mnist-at-init": "d9ee878dae4c1f65",
    "resnet18-cifar10": "02ff91744505659e",
    "resnet18-cifar10-instability": "02ff91744505659e",
    "resnet18-cifar10-nowarmup": "c4bfb286752b93b7",
    "resnet18-cifar10-nowarmup-instability": "c4bfb286752b93b7",
    "resnet18-cifar10-rewind500": "634a012f261dc9bc",
    "vgg19-cifar10": "1f8256f22bc4a4e2",
    "vgg19-cifar10-instability": "1f8256f22bc4a4e2",
    "vgg19-cifar10-nowarmup": "7040065f9ccfdddc",
    "vgg19-cifar10-nowarmup-instability": "7040065f9ccfdddc",
    "vgg19-cifar10-rewind100": "06f17f0cbd9aa72e",
}


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_preset_hashes_are_pinned(name):
    assert load_preset(name).hash() == PINNED_HASHES[name]


def test_how_much_to_run_does_not_change_the_hash_but_what_to_compute_does():
    base = load_preset("lenet-mnist")
    assert with_overrides(base, ["lottery.trials=2", "lottery.levels=3"]).hash() == base.hash()
    assert with_overrides(base, ["lottery.variants=['imp']"]).hash() == base.hash()
    measured = ["lottery.instability=[0, 3]", "lottery.instability_points=5"]
    measured.append("lottery.instability_bn=reestimated")
    assert with_overrides(base, measured).hash() == base.hash()
    assert with_overrides(base, ["training.lr=0.001"]).hash() != base.hash()
    assert with_overrides(base, ["lottery.rewind_step='500it'"]).hash() != base.hash()


def test_adding_a_field_with_a_default_keeps_existing_hashes():
    @dataclasses.dataclass
    class NewTraining(TrainingConfig):
        gradient_clipping: float = 0.0  # a field a later release might add

    base = load_preset("lenet-mnist")
    extended = dataclasses.replace(base, training=NewTraining(**dataclasses.asdict(base.training)))
    assert extended.hash() == base.hash()
    extended.training.gradient_clipping = 1.0
    assert extended.hash() != base.hash()


def test_overrides_are_typed_toml_values():
    c = with_overrides(
        Config(),
        [
            "training.lr=0.01",
            "training.optimizer=sgd",
            "pruning.rates.fc=0.3",
            "lottery.variants=['imp', 'random']",
            "training.batch_size=128",
        ],
    )
    assert c.training.lr == 0.01 and c.training.optimizer == "sgd"
    assert c.pruning.rates == {"fc": 0.3, "output": 0.1}
    assert c.lottery.variants == ["imp", "random"] and c.training.batch_size == 128


def test_config_round_trips_through_toml():
    import tomllib

    c = load_preset("lenet-mnist")
    assert from_dict(tomllib.loads(c.to_toml())) == c


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.learning_rate=0.1", "unknown config key 'training.learning_rate'"),
        ("nonsense.lr=0.1", "unknown config key 'nonsense.lr'"),
        ("pruning.rates.fc=1.5", r"pruning.rates.fc must be in \[0.0, 1.0\); got 1.5"),
        ("training.steps='-5it'", "training.steps: bad step '-5it'"),
        ("training.lr='fast'", "training.lr must be of type float"),
        ("training.lr=-1", "training.lr must be more than zero"),
        ("training.batch_size=1.5", "training.batch_size must be of type int"),
        ("lottery.strategy=sometimes", "lottery.strategy must be one of reset, continue"),
        ("lottery.variants=['reinit']", "must include 'imp'"),
        ("lottery.trials=0", "lottery.trials must be 1 or more"),
        ("training.lr", "bad override 'training.lr': write key=value"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(override, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides(Config(), [override])


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown preset 'lenet-cifar'.*lenet-mnist"):
        load_preset("lenet-cifar")
