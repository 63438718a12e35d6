"""The Python API, mirroring the CLI: `lth.run(config)`, `lth.find_tickets(model, ...)` and
`lth.instability(config, rewind=[...])`."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import inspect
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from lth import data as datasets
from lth.analysis import rewind as rewinding
from lth.compose import check_model, model_factory, model_options, open_experiment
from lth.config import Config, resolve, with_overrides
from lth.errors import ConfigError
from lth.lottery import SUMMARY_COLUMNS, Runtime, level_iterations, resolve_device
from lth.models import initialize

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
    trials: Sequence[int] | None = None,
    engine: str = "auto",
    tensorboard: str | Path | None = None,
) -> pd.DataFrame:
    """Run (or resume) a lottery experiment; returns its summary, one row per (trial, variant, level).

    `config` is a `Config`, a preset name or a path to a TOML file. Results go to
    `out/<model>-<dataset>-<hash>/`; running the same config again does no finished work twice.
    `trials` runs only those of the config's trials (all by default), e.g. one at a time so each
    finished trial can be recorded on its own; the summary holds every stored trial. `engine`
    says what computes the trainings (`lth engines`; "auto": the fastest exact one).
    `tensorboard` is a folder for TensorBoard event files of each finished level (default:
    $LTH_TENSORBOARD, else none; needs `pip install 'lth[tensorboard]'`).
    """
    config = _config(config, overrides)
    runtime = _runtime(device, progress, checkpoint_interval_s, engine, tensorboard)
    splits, make_model = _data_and_model(config, data_dir)
    return _run(config, splits, make_model, out, runtime, trials)


def instability(
    config: Config | str,
    *,
    rewind: Sequence[int],
    levels: Sequence[int] | None = None,
    overrides: list[str] | None = None,
    out: str | Path = DEFAULT_OUT,
    data_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    checkpoint_interval_s: float = 60.0,
    trials: Sequence[int] | None = None,
    engine: str = "auto",
    tensorboard: str | Path | None = None,
) -> pd.DataFrame:
    """Instability against the rewind iteration k (`lth instability`; docs/design.md,
    "Instability"): for the dense network (level 0) and the IMP subnetworks of `levels` (default:
    `lottery.instability`, else level 0), two copies from the level's mask on θk trained with
    different SGD noise, and the error barrier between them, for each k in `rewind`.

    The masks are the lottery run's: it is run (or extended) through the deepest of `levels`
    first, in its usual run directory. Returns instability/rewind.csv, stored there beside it
    (with the rows of earlier sweeps of the run); running again measures nothing twice.
    """
    config = _config(config, overrides)
    levels = rewinding.check_levels(levels if levels is not None else config.lottery.instability or [0])
    if max(levels) > config.lottery.levels:  # levels are not hashed: the same run, taken deeper
        config = dataclasses.replace(config, lottery=dataclasses.replace(config.lottery, levels=max(levels)))
    splits, make_model = _data_and_model(config, data_dir)
    ks = rewinding.check_rewinds(rewind, level_iterations(config, splits).total)  # before anything is written
    runtime = _runtime(device, progress, checkpoint_interval_s, engine, tensorboard)
    experiment = open_experiment(config, splits, make_model, out, runtime)
    experiment.run(trials, last_level=max(levels))
    chosen = range(config.lottery.trials) if trials is None else trials
    rewinding.sweep(experiment, ks, levels, list(chosen))
    table = rewinding.read(experiment.store.path)
    table.attrs["run_dir"] = str(experiment.store.path)
    return table


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
    The run directory is named by the module's structure and code, its θ0 and the tensors, so
    running again resumes, and a changed `forward` starts afresh.
    """
    config = _config(config)
    if options := list(model_options(config.model)):
        raise ConfigError(
            f"model.{options[0]} is an option of lth's models, not of your own module; "
            "build it into the module"
        )
    _check_tensors({"train": train, "val": val, "test": test})
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
    digest = _fingerprint(train_split, val_split, test_split)
    splits = datasets.Splits(
        name=f"tensors:{digest}",
        train=train_split,
        val=val_split,
        test=test_split,
        num_classes=int(labels.max()) + 1,
    )
    template = copy.deepcopy(model).cpu()
    theta0 = initialize(copy.deepcopy(template), config.lottery.seed)
    architecture = _module_key(theta0)
    check_model(theta0, splits, config.pruning)
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, dataset=splits.name),
        model=dataclasses.replace(config.model, name=f"module:{type(model).__name__}:{architecture}"),
    )
    return _run(config, splits, lambda: copy.deepcopy(template), out, _runtime(device, progress, 60.0))


def _config(config: Config | str | None, overrides: list[str] | None = None) -> Config:
    """A validated `Config` from a preset name, a TOML path or a `Config` (one built in Python
    has not been validated yet)."""
    if config is None:
        config = Config()
    elif isinstance(config, str):
        config = resolve(config)
    if overrides:
        config = with_overrides(config, overrides)
    return config.validated()


def _check_tensors(pairs: dict[str, tuple[torch.Tensor, torch.Tensor] | None]) -> None:
    """Refuse tensors that training could not use, naming the split, before anything runs."""
    shapes: dict[str, tuple[int, ...]] = {}
    for name, pair in pairs.items():
        if pair is None:
            continue
        if not (isinstance(pair, tuple | list) and len(pair) == 2 and all(torch.is_tensor(t) for t in pair)):
            raise ConfigError(f"{name} must be a pair of tensors (inputs, labels)")
        x, y = pair
        if y.ndim != 1 or x.ndim < 2 or len(x) != len(y) or len(y) == 0:
            raise ConfigError(
                f"{name} has inputs of shape {tuple(x.shape)} and labels of shape {tuple(y.shape)}: "
                "give N ≥ 1 examples as inputs (N, ...) and one class index per example, labels (N,)"
            )
        if (y.is_floating_point() and not torch.equal(y, y.round())) or y.min() < 0:
            raise ConfigError(f"{name}'s labels must be class indices 0, 1, 2, …; relabel them")
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ConfigError(f"{name}'s inputs hold NaN or infinite values; clean or drop those examples")
        shapes[name] = tuple(x.shape[1:])
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ConfigError(f"train, val and test examples must all have one shape; got {listed}")


def _module_key(theta0: nn.Module) -> str:
    """What determines a user's module's numbers, short: its structure (`repr`), the code of
    its classes (a changed `forward` leaves the repr as it was) and θ0, its state after
    `initialize` for the config's seed, so two fresh instances of one class share a directory."""
    h = hashlib.sha256(repr(theta0).encode())
    for cls in _own_classes(theta0):
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        h.update(_class_code(cls))
    for name, tensor in theta0.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, tensor)
    return h.hexdigest()[:8]


def _own_classes(model: nn.Module) -> list[type]:
    """The classes of the model's modules and their bases, but PyTorch's own: the code that its
    version and the repr already pin."""
    classes: dict[type, None] = {}  # an ordered set
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls is not object and cls.__module__.partition(".")[0] != "torch":
                classes[cls] = None
    return list(classes)


def _class_code(cls: type) -> bytes:
    """The class's source and each of its functions' own. A function's source is found by its
    line number, a class's only by name (two classes of one name in one file share the first's),
    and a function without source (exec, some REPLs) is taken as its bytecode."""
    parts = [_source(cls) or b""]
    for value in vars(cls).values():
        function = getattr(value, "__func__", getattr(value, "fget", value))  # static, class, property
        if isinstance(function, types.FunctionType):
            parts.append(_source(function) or _code_bytes(function.__code__))
    return b"".join(parts)


def _source(obj: object) -> bytes | None:
    try:
        return inspect.getsource(obj).encode()
    except (OSError, TypeError):
        return None


def _code_bytes(code: types.CodeType) -> bytes:
    # co_names too: `torch.relu` and `torch.tanh` compile to the same bytecode and constants.
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:  # nested functions are code objects, whose repr is an address
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"".join(parts)


def _hash_tensor(h: hashlib._Hash, tensor: torch.Tensor) -> None:
    h.update(str((tuple(tensor.shape), tensor.dtype)).encode())
    # Raw bytes through uint8, which every dtype (bfloat16 too, unlike NumPy) can be viewed as.
    h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def _run(
    config: Config,
    splits: datasets.Splits,
    make_model,
    out: str | Path,
    runtime: Runtime,
    trials: Sequence[int] | None = None,
) -> pd.DataFrame:
    experiment = open_experiment(config, splits, make_model, out, runtime)
    rows = experiment.run(trials)
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary.attrs["run_dir"] = str(experiment.store.path)
    return summary


def _data_and_model(
    config: Config, data_dir: str | Path | None
) -> tuple[datasets.Splits, Callable[[], nn.Module]]:
    """The config's data set, split as it says, and the factory of its model, checked on it."""
    splits = datasets.load(
        config.data.dataset, data_dir, val_size=config.data.val_size, split_seed=config.data.split_seed
    )
    return splits, model_factory(config, splits)


def _runtime(
    device: str,
    progress: bool,
    checkpoint_interval_s: float,
    engine: str = "auto",
    tensorboard: str | Path | None = None,
) -> Runtime:
    """How to run; `tensorboard` None leaves Runtime's default, $LTH_TENSORBOARD."""
    where = {} if tensorboard is None else {"tensorboard": str(tensorboard)}
    return Runtime(
        device=resolve_device(device),
        progress=progress,
        checkpoint_interval_s=checkpoint_interval_s,
        engine=engine,
        **where,
    )


def _fingerprint(*splits: datasets.Split) -> str:
    """A short content hash of the user's tensors, so different data gets a different run directory."""
    h = hashlib.sha256()
    for split in splits:
        for t in (split.x, split.y):
            _hash_tensor(h, t)
    return h.hexdigest()[:12]
