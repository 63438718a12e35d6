"""The registered architectures: sizes pinned to the paper, shapes, prunable layers, seeded init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lth.models
from lth.errors import ConfigError
from lth.models import build, initialize, prunable_layers

CIFAR = (3, 32, 32)
MNIST = (1, 28, 28)
CONV_NETS = ["conv2", "conv4", "conv6"]
CIFAR_NETS = [*CONV_NETS, "vgg19", "resnet20"]

# name, input shape, prunable weights (conv + fc + output + shortcut), all parameters.
SIZES = [
    # LeNet-300-100: 784·300 + 300·100 + 100·10 = 235,200 + 30,000 + 1,000 = 266,200 weights;
    # biases 300 + 100 + 10 = 410; total 266,610 (the paper: 266K).
    ("lenet300", MNIST, 266_200, 266_610),
    # Conv-2: convs 3·64·9 + 64·64·9 = 1,728 + 36,864 = 38,592; fc 16·16·64·256 + 256·256 + 256·10
    # = 4,194,304 + 65,536 + 2,560 = 4,262,400; weights 4,300,992 (the paper: 4.3M);
    # biases 64 + 64 + 256 + 256 + 10 = 650; total 4,301,642.
    ("conv2", CIFAR, 4_300_992, 4_301_642),
    # Conv-4: convs 38,592 + 64·128·9 + 128·128·9 = 38,592 + 73,728 + 147,456 = 259,776;
    # fc 8·8·128·256 + 65,536 + 2,560 = 2,097,152 + 68,096 = 2,165,248; weights 2,425,024
    # (the paper: 2.4M); biases 650 + 128 + 128 = 906; total 2,425,930.
    ("conv4", CIFAR, 2_425_024, 2_425_930),
    # Conv-6: convs 259,776 + 128·256·9 + 256·256·9 = 259,776 + 294,912 + 589,824 = 1,144,512;
    # fc 4·4·256·256 + 68,096 = 1,048,576 + 68,096 = 1,116,672; weights 2,261,184 (the paper's 1.7M
    # is not reachable with same padding: see lth/models/conv.py); biases 906 + 512 = 1,418;
    # total 2,262,602.
    ("conv6", CIFAR, 2_261_184, 2_262_602),
    # ResNet-20: 3×3 convs 432 + 6·2,304 + (4,608 + 5·9,216) + (18,432 + 5·36,864)
    # = 432 + 13,824 + 50,688 + 202,752 = 267,696; shortcuts 16·32 + 32·64 = 2,560; output 640;
    # weights 270,896. Batch norm 2·(16 + 6·16 + 6·32 + 6·64 + 32 + 64) = 2·784 = 1,568;
    # output bias 10; total 272,474 (the paper: 274K).
    ("resnet20", CIFAR, 270_896, 272_474),
    # VGG-19: convs 3·64·9 + 64·64·9 + 64·128·9 + 128·128·9 + 128·256·9 + 3·256·256·9
    # + 256·512·9 + 3·512·512·9 + 4·512·512·9 = 1,728 + 36,864 + 73,728 + 147,456 + 294,912
    # + 1,769,472 + 1,179,648 + 7,077,888 + 9,437,184 = 20,018,880; output 512·10 = 5,120;
    # weights 20,024,000 (the paper: 20.0M). Batch norm 2·(2·64 + 2·128 + 4·256 + 8·512) = 11,008;
    # output bias 10; total 20,035,018.
    ("vgg19", CIFAR, 20_024_000, 20_035_018),
]


def _prunable_count(model: nn.Module) -> int:
    params = dict(model.named_parameters())
    return sum(params[name].numel() for name in prunable_layers(model))


def _kinds_count(model: nn.Module) -> dict[str, int]:
    params = dict(model.named_parameters())
    counts: dict[str, int] = {}
    for name, kind in prunable_layers(model).items():
        counts[kind] = counts.get(kind, 0) + params[name].numel()
    return counts


@pytest.fixture(scope="module")
def cifar_models() -> dict[str, nn.Module]:
    """One instance of each CIFAR network, built once: VGG-19 alone has 20M parameters."""
    return {name: build(name, CIFAR, 10) for name in CIFAR_NETS}


def _model(name: str, shape: tuple[int, int, int], cifar_models: dict[str, nn.Module]) -> nn.Module:
    return cifar_models[name] if shape == CIFAR and name in cifar_models else build(name, shape, 10)


@pytest.mark.parametrize(("name", "shape", "weights", "total"), SIZES, ids=[s[0] for s in SIZES])
def test_parameter_counts_match_the_paper(name, shape, weights, total, cifar_models):
    model = _model(name, shape, cifar_models)
    assert _prunable_count(model) == weights
    assert sum(p.numel() for p in model.parameters()) == total


def test_all_architectures_are_registered():
    assert {"lenet300", *CIFAR_NETS} <= set(lth.models.names())


def test_resnet_kinds_hold_the_papers_unpruned_layers(cifar_models):
    # The paper: ResNet-18 leaves its output (640) and 1×1 shortcuts (2,560) unpruned.
    kinds = prunable_layers(cifar_models["resnet20"])
    shortcuts = [name for name, kind in kinds.items() if kind == "shortcut"]
    assert len(shortcuts) == 2
    assert [name for name, kind in kinds.items() if kind == "output"] == ["output.weight"]
    assert _kinds_count(cifar_models["resnet20"]) == {"conv": 267_696, "shortcut": 2_560, "output": 640}
    params = dict(cifar_models["resnet20"].named_parameters())
    assert all(params[name].shape[2:] == (1, 1) for name in shortcuts)
    assert sum(1 for kind in kinds.values() if kind == "conv") == 19


def test_vgg_kinds_are_sixteen_convs_and_an_output(cifar_models):
    kinds = prunable_layers(cifar_models["vgg19"])
    assert sum(1 for kind in kinds.values() if kind == "conv") == 16
    assert _kinds_count(cifar_models["vgg19"]) == {"conv": 20_018_880, "output": 5_120}


@pytest.mark.parametrize("name", CONV_NETS)
def test_conv_net_kinds(name, cifar_models):
    kinds = list(prunable_layers(cifar_models[name]).values())
    n_conv = {"conv2": 2, "conv4": 4, "conv6": 6}[name]
    assert kinds == ["conv"] * n_conv + ["fc", "fc", "output"]


@pytest.mark.parametrize("name", ["lenet300", *CIFAR_NETS])
def test_prunable_names_are_weights_not_biases_or_batch_norm(name, cifar_models):
    model = _model(name, CIFAR, cifar_models)
    params = dict(model.named_parameters())
    kinds = prunable_layers(model)
    assert set(kinds) <= set(params)
    assert list(kinds) == [n for n in params if n in kinds]  # in parameter order
    assert set(kinds.values()) <= {"conv", "fc", "output", "shortcut"}
    # Every conv and linear weight is listed; nothing else is.
    layer_weights = {
        f"{module_name}.weight"
        for module_name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }
    assert set(kinds) == layer_weights
    bn_params = {
        f"{module_name}.{p}"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
        for p in ("weight", "bias")
    }
    assert not set(kinds) & bn_params
    assert not any(n.endswith(".bias") for n in kinds)


@pytest.mark.parametrize(
    ("name", "shape"),
    [*((name, CIFAR) for name in CIFAR_NETS), *((name, MNIST) for name in CONV_NETS)],
)
def test_forward_and_backward_shapes(name, shape, cifar_models):
    model = _model(name, shape, cifar_models)
    model.train()
    x = torch.randn(2, *shape)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    for param in model.parameters():
        assert param.grad is not None and param.grad.shape == param.shape
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", ["conv2", "resnet20"])
def test_initialize_is_deterministic_per_seed(name):
    a = initialize(build(name, CIFAR, 10), seed=7).state_dict()
    b = initialize(build(name, CIFAR, 10), seed=7).state_dict()
    c = initialize(build(name, CIFAR, 10), seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_init_is_glorot_normal_with_zero_biases():
    model = initialize(build("conv4", CIFAR, 10), seed=0)
    weight = model.convs[2].weight  # 64 → 128, 3×3
    fan_in, fan_out = 64 * 9, 128 * 9
    expected_std = (2.0 / (fan_in + fan_out)) ** 0.5
    assert weight.std().item() == pytest.approx(expected_std, rel=0.05)
    assert all(not torch.any(m.bias) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_dropout_changes_training_outputs_but_not_evaluation():
    torch.manual_seed(0)
    x = torch.randn(4, *CIFAR)
    plain = initialize(build("conv2", CIFAR, 10), seed=0)
    dropped = initialize(build("conv2", CIFAR, 10, dropout=0.5), seed=0)

    dropped.train()
    assert not torch.equal(dropped(x), dropped(x))  # a fresh dropout mask each pass
    plain.train()
    assert torch.equal(plain(x), plain(x))

    dropped.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(dropped(x), dropped(x))
        assert torch.equal(dropped(x), plain(x))  # dropout has no weights and is off in eval


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_dropout_out_of_range_is_a_config_error(dropout):
    with pytest.raises(ConfigError, match="dropout"):
        build("conv4", CIFAR, 10, dropout=dropout)


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown model"):
        build("resnet1001", CIFAR, 10)


def test_conv6_on_a_too_small_input_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        build("conv6", (3, 4, 4), 10)
