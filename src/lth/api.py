"""The Python API, mirroring the CLI: `lth.run(config)` and `lth.find_tickets(model, ...)`."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lth import data as datasets
from lth.config import Config, resolve, with_overrides
from lth.errors import ConfigError
from lth.lottery import SUMMARY_COLUMNS, Experiment, Runtime, resolve_device
from lth.models import build
from lth.store import RunStore

DEFAULT_OUT = Path("runs")


def run(
    config: Config | str,
    *,
    overrides: list[str] | None = None,
    out: str | Path = DEFAULT_OUT,
    data_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    checkpoint_interval_s: float = 60.0,
) -> pd.DataFrame:
    """Run (or resume) a lottery experiment; returns its summary, one row per (trial, variant, level).

    `config` is a `Config`, a preset name or a path to a TOML file. Results go to
    `out/<model>-<dataset>-<hash>/`; running the same config again does no finished work twice.
    """
    if isinstance(config, str):
        config = resolve(config)
    if overrides:
        config = with_overrides(config, overrides)
    splits = datasets.load(
        config.data.dataset, data_dir, val_size=config.data.val_size, split_seed=config.data.split_seed
    )
    options = {"dropout": config.model.dropout} if config.model.dropout else {}

    def make_model() -> nn.Module:
        return build(config.model.name, splits.input_shape, splits.num_classes, **options)

    return _run(config, splits, make_model, out, device, progress, checkpoint_interval_s)


def find_tickets(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    config: Config | str | None = None,
    out: str | Path = DEFAULT_OUT,
    device: str = "auto",
    progress: bool = True,
) -> pd.DataFrame:
    """Iterative magnitude pruning on your own `nn.Module` and tensors.

    `train`, `test` (and optionally `val`) are (inputs, integer labels). Without `val`,
    `config.data.val_size` examples are held out of `train`. Prunable layers are the model's
    `prunable()` if it has one, else every Conv/Linear weight, the last Linear being `output`.
    Each trial's θ0 comes from the submodules' `reset_parameters()` under the trial's seed.
    """
    config = Config() if config is None else (resolve(config) if isinstance(config, str) else config)
    x_train, y_train = train[0].float(), train[1].long()
    if val is None:
        train_split, val_split = datasets.split_train_val(
            x_train, y_train, config.data.val_size, config.data.split_seed
        )
    else:
        train_split = datasets.Split(x_train, y_train)
        val_split = datasets.Split(val[0].float(), val[1].long())
    test_split = datasets.Split(test[0].float(), test[1].long())
    labels = torch.cat([train_split.y, val_split.y, test_split.y])
    if labels.numel() == 0 or labels.min() < 0:
        raise ConfigError("labels must be non-negative class indices")
    digest = _fingerprint(train_split, val_split, test_split)
    splits = datasets.Splits(
        name=f"tensors:{digest}",
        train=train_split,
        val=val_split,
        test=test_split,
        num_classes=int(labels.max()) + 1,
    )
    architecture = hashlib.sha256(repr(model).encode()).hexdigest()[:8]
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, dataset=splits.name),
        model=dataclasses.replace(config.model, name=f"module:{type(model).__name__}:{architecture}"),
    )
    template = copy.deepcopy(model).cpu()
    return _run(config, splits, lambda: copy.deepcopy(template), out, device, progress, 60.0)


def _run(
    config: Config,
    splits: datasets.Splits,
    make_model,
    out: str | Path,
    device: str,
    progress: bool,
    checkpoint_interval_s: float,
) -> pd.DataFrame:
    store = RunStore(out, config)
    runtime = Runtime(
        device=resolve_device(device), progress=progress, checkpoint_interval_s=checkpoint_interval_s
    )
    rows = Experiment(config, splits, make_model, store, runtime).run()
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary.attrs["run_dir"] = str(store.path)
    return summary


def _fingerprint(*splits: datasets.Split) -> str:
    """A short content hash of the user's tensors, so different data gets a different run directory."""
    h = hashlib.sha256()
    for split in splits:
        for t in (split.x, split.y):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]
