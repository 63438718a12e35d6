"""`lth.load_ticket`: a stored ticket as a working `nn.Module`; `lth.evaluate`: its test accuracy,
computed as the runner computed the stored one.

The network is rebuilt from the run's config through the model registry, given its stored
weights, and masked in `torch.nn.utils.prune`'s own form (`weight_orig` parameter, `weight_mask`
buffer, the product recomputed before each forward), so PyTorch's tooling works on it:
`prune.remove` makes the zeros permanent, and fine-tuning keeps pruned weights at zero.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

from lth import data as datasets
from lth import layout
from lth.compose import model_options
from lth.config import ModelConfig
from lth.data import Split
from lth.data.registry import resolve_root
from lth.errors import ConfigError
from lth.models import build, names
from lth.tickets.formats import read_file
from lth.tickets.source import About, Ticket, read_level
from lth.training.evaluate import evaluate as evaluate_split


def load_ticket(
    source: str | Path,
    level: int | None = None,
    *,
    trial: int = 0,
    variant: str = layout.TICKET,
    weights: str = "final",
    model: nn.Module | None = None,
) -> nn.Module:
    """The ticket at `level` of a run directory (trial, variant, "final" or "init" weights), or the
    one in a `sparse` or `prune` export file (`lth export`), as a module in eval mode with its mask
    applied by `torch.nn.utils.prune`.

    Its final weights give the level's stored `final_test_accuracy` exactly under `evaluate` (on
    the CPU, for a run trained on the CPU by an exact engine: `result.json`'s `trainer_exact`).
    A run of `lth.find_tickets` trained your own module: pass a fresh one as `model`.
    """
    path = Path(source)
    if path.is_file():
        ticket = read_file(path)
        if level is not None and level != ticket.about.level:
            raise ConfigError(f"{path} holds level {ticket.about.level}, not {level}")
    else:
        if level is None:
            raise ConfigError("load_ticket needs level=L for a run directory (0 is the dense network)")
        ticket = read_level(path, level, trial=trial, variant=variant, weights=weights)
    return as_module(ticket, model)


def as_module(ticket: Ticket, model: nn.Module | None = None) -> nn.Module:
    """`ticket` in a fresh network (or a copy of `model`), masked in prune's form, in eval mode."""
    net = copy.deepcopy(model) if model is not None else build_model(ticket.about)
    net.load_state_dict(ticket.weights)
    apply_mask(net, ticket.mask)
    return net.eval()


def build_model(about: About) -> nn.Module:
    """The run's network, built from its model config as `lth run` built it."""
    config = ModelConfig(**about.model)
    if config.name not in names() or about.input_shape is None or about.num_classes is None:
        raise ConfigError(
            f"this ticket's network ({config.name}) is not in lth's model registry (a run of "
            "lth.find_tickets): pass a fresh instance of your module as model="
        )
    return build(config.name, about.input_shape, about.num_classes, **model_options(config))


@torch.no_grad()  # the masked weight prune computes now is then a leaf tensor: deepcopy takes it
def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask `model`'s named weights with `torch.nn.utils.prune.custom_from_mask`."""
    for name, keep in mask.items():
        module_name, _, param = name.rpartition(".")
        module = model.get_submodule(module_name)
        prune.custom_from_mask(module, param, keep.to(getattr(module, param).device))
    return model


def evaluate(
    model: nn.Module, data: str | tuple[torch.Tensor, torch.Tensor], *, data_dir: str | Path | None = None
) -> float:
    """Test accuracy of `model` (a fraction) on a data set's test split (a name such as "mnist",
    read and normalised as training reads it, from `data_dir` or the usual root) or on
    (inputs, labels) tensors, evaluated in the batches the runner uses."""
    if isinstance(data, str):
        split = _test_split(data, str(resolve_root(data_dir)))
    elif isinstance(data, tuple | list) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        split = Split(data[0].float(), data[1].long())
    else:
        raise ConfigError("evaluate takes a data set name (e.g. 'mnist') or a pair of tensors (x, y)")
    device = next(iter(model.state_dict().values())).device
    return evaluate_split(model, split.x.to(device), split.y.to(device))[1]


@functools.lru_cache(maxsize=2)
def _test_split(name: str, root: str) -> Split:
    """A data set's normalised test split, kept for the next call (evaluating every level of a run
    reads it once). The validation size and seed do not change the test split."""
    return datasets.load(name, root).test
