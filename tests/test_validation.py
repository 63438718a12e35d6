"""Bad input fails up front with one line naming the fix, before any run directory is written;
and a user's module gets the run directory of what determines its numbers."""

import math

import pytest
import torch
from torch import nn

import lth
from lth.compose import model_factory
from lth.config import Config, TrainingConfig, with_overrides
from lth.errors import ConfigError
from lth.models import build
from tests.helpers import lth as cli
from tests.helpers import tiny_config, tiny_splits

DATA = tiny_splits()


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# --- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.dropout=0.5",
            "model.dropout: lenet300 takes no dropout; models with dropout: conv2, conv4, conv6",
        ),
        ("model.name=resnet1001", "unknown model 'resnet1001': choose one of conv2, conv4, conv6, lenet300"),
        ("pruning.rates={conv=0.2}", "pruning.rates names layer kind 'conv', which this model does not have"),
        ("training.lr=nan", "training.lr must be a finite number, got nan"),
        ("lottery.rewind_step='60000it'", "lottery.rewind_step (60000 iterations) must be less than"),
    ],
)
def test_a_bad_run_is_one_line_and_writes_no_run_directory(tmp_path, mnist_root, override, message):
    out = cli(
        "run", "lenet-mnist-quick", "--set", override, "--out", str(tmp_path / "runs"), data_dir=mnist_root
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(lines) == 1 and lines[0].startswith("lth: error: ") and message in lines[0], out.stderr
    assert not (tmp_path / "runs").exists()


# --- configs: every float is finite ------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [
        "training.lr=nan",
        "training.lr=inf",
        "training.momentum=nan",
        "training.weight_decay=inf",
        "training.lr_gamma=nan",
        "model.dropout=nan",
        "pruning.rates={fc=nan, output=0.1}",
        "pruning.rates={fc=0.2, output=-inf}",
    ],
)
def test_nan_and_infinite_floats_are_refused_everywhere(override):
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as err:
        with_overrides(Config(), [override])
    assert "must be a finite number" in _one_line(err)
    assert _one_line(err).startswith(key if "{" not in override else "pruning.rates.")


def test_a_config_built_in_python_is_validated_too(tmp_path):
    config = Config(training=TrainingConfig(lr=math.nan))
    with pytest.raises(ConfigError, match="training.lr must be a finite number"):
        lth.find_tickets(_Net(), train=_pair(DATA.train), test=_pair(DATA.test), config=config, out=tmp_path)
    assert not any(tmp_path.iterdir())


# --- registered models: one composition root ---------------------------------------------------


def test_an_option_a_model_does_not_take_names_the_models_that_do():
    config = with_overrides(Config(), ["model.dropout=0.5"])
    with pytest.raises(ConfigError) as err:
        model_factory(config, DATA)
    assert (
        _one_line(err) == "model.dropout: lenet300 takes no dropout; models with dropout: conv2, conv4, conv6"
    )


def test_the_factory_builds_the_configured_model():
    config = with_overrides(Config(), ["model.name=conv2", "model.dropout=0.5", "pruning.rates={conv=0.1}"])
    model = model_factory(config, DATA)()
    assert type(model).__name__ == "Conv2" and model.dropout.p == 0.5


def test_a_model_that_cannot_take_the_input_fails_before_training():
    config = with_overrides(Config(), ["model.name=vgg19", "pruning.rates={conv=0.2}"])
    with pytest.raises(ConfigError) as err:  # 8×8 cannot go through VGG's four 2×2 pools and a conv
        model_factory(config, DATA)
    assert _one_line(err).startswith("the model cannot take inputs of shape (1, 8, 8)")


def test_a_sweep_refuses_a_model_option_before_running():
    from lth.sweep import expand

    with pytest.raises(
        ConfigError, match=r"\[grid\] model.dropout=0.5: model.dropout: lenet300 takes no dropout"
    ):
        expand({"base": "lenet-mnist-quick", "grid": {"model.dropout": [0.0, 0.5]}})


# --- your own module and tensors ---------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self, outputs: int = 4, inputs: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 16), nn.ReLU())
        self.head = nn.Linear(16, outputs)

    def forward(self, x):
        return self.head(self.body(x))


def _pair(split):
    return split.x, split.y


def _bad_tensors():
    x, y = DATA.train.x, DATA.train.y
    return {
        "labels beyond the outputs": (
            dict(train=(x, y * 11 // 3)),  # labels 0..11 for a model with 10 outputs
            _Net(outputs=10),
            "the labels go up to 11 but the model has 10 outputs: give its output layer 12 outputs, "
            "or use labels 0 to 9",
        ),
        "inputs the model cannot take": (
            {name: (torch.randn(10, 1, 9, 9), y[:10]) for name in ("train", "val", "test")},
            _Net(),
            "the model cannot take inputs of shape (1, 9, 9) (RuntimeError: mat1 and mat2 shapes cannot be "
            "multiplied",
        ),
        "train and test shapes differ": (
            dict(test=(torch.randn(10, 1, 9, 9), y[:10])),
            _Net(),
            "train, val and test examples must all have one shape; "
            "got train (1, 8, 8), val (1, 8, 8), test (1, 9, 9)",
        ),
        "more inputs than labels": (
            dict(train=(x, y[:-10])),
            _Net(),
            "train has inputs of shape (600, 1, 8, 8) and labels of shape (590,): give N ≥ 1 examples",
        ),
        "negative labels": (
            dict(val=(DATA.val.x, DATA.val.y - 1)),
            _Net(),
            "val's labels must be class indices",
        ),
        "fractional labels": (
            dict(train=(x, y.float() / 2)),
            _Net(),
            "train's labels must be class indices 0, 1, 2, …; relabel them",
        ),
        "non-finite inputs": (
            dict(test=(DATA.test.x.clone().index_fill_(0, torch.tensor([3]), math.nan), DATA.test.y)),
            _Net(),
            "test's inputs hold NaN or infinite values",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_tensors()))
def test_bad_tensors_fail_before_training_with_one_line(tmp_path, case):
    tensors, model, message = _bad_tensors()[case]
    splits = {"train": _pair(DATA.train), "val": _pair(DATA.val), "test": _pair(DATA.test)} | tensors
    with pytest.raises(ConfigError) as err:
        lth.find_tickets(model, **splits, config=tiny_config(), out=tmp_path / "runs", progress=False)
    assert message in _one_line(err)
    assert not (tmp_path / "runs").exists()


def test_a_model_option_in_the_config_is_refused_for_your_own_module(tmp_path):
    with pytest.raises(
        ConfigError, match="model.dropout is an option of lth's models, not of your own module"
    ):
        lth.find_tickets(
            _Net(), train=_pair(DATA.train), test=_pair(DATA.test), config=tiny_config("model.dropout=0.5")
        )


# --- the run directory of your own module ------------------------------------------------------


class _Tanh(_Net):
    def forward(self, x):  # the same submodules, so the same repr but for the class name
        return self.head(torch.tanh(self.body[1](self.body[0](x))))


def _named_net(activation):
    """Two classes both called `Net`, with equal reprs, that differ only in `forward`."""
    if activation == "relu":

        class Net(_Net):
            def forward(self, x):
                return self.head(self.body(x))

    else:

        class Net(_Net):
            def forward(self, x):
                return self.head(torch.sigmoid(self.body(x)))

    return Net


def _exec_net(activation: str) -> type[nn.Module]:
    """A class defined where `inspect` finds no source (as by exec in some REPLs)."""
    namespace = {"__name__": "not_a_module", "_Net": _Net, "torch": torch}
    code = (
        "class Net(_Net):\n"
        "    def forward(self, x):\n"
        f"        return self.head(torch.{activation}(self.body(x)))\n"
    )
    exec(code, namespace)
    return namespace["Net"]


def _run_dir(tmp_path, model: nn.Module) -> str:
    config = tiny_config("lottery.levels=0", "lottery.variants=['imp']", "training.steps='2it'")
    summary = lth.find_tickets(
        model,
        train=_pair(DATA.train),
        val=_pair(DATA.val),
        test=_pair(DATA.test),
        config=config,
        out=tmp_path,
        progress=False,
        device="cpu",
    )
    return summary.attrs["run_dir"]


def test_two_fresh_instances_of_one_module_share_a_run_directory(tmp_path):
    first = _run_dir(tmp_path, _Net())
    torch.manual_seed(123)  # the passed module's own random weights do not matter: θ0 is the seed's
    assert _run_dir(tmp_path, _Net()) == first


@pytest.mark.parametrize(
    "classes",
    [
        (_Net, _Tanh),  # a subclass that changes only forward
        (_named_net("relu"), _named_net("sigmoid")),  # the same name and repr: only the source differs
        (_exec_net("relu"), _exec_net("sigmoid")),  # no source: the bytecode differs
    ],
    ids=["subclass", "same-name", "no-source"],
)
def test_a_module_with_another_forward_gets_another_run_directory(tmp_path, classes):
    first, second = classes
    assert repr(first()).partition("(")[2] == repr(second()).partition("(")[2]
    assert _run_dir(tmp_path, first()) != _run_dir(tmp_path, second())


def test_a_module_without_source_keeps_its_run_directory(tmp_path):
    assert _run_dir(tmp_path, _exec_net("relu")()) == _run_dir(tmp_path, _exec_net("relu")())


def test_build_refuses_an_option_the_model_does_not_take():
    with pytest.raises(ConfigError, match="model.hidden: vgg19 takes no hidden; models with hidden: conv2"):
        build("vgg19", (3, 32, 32), 10, hidden=(8,))
