"""Typed experiment configs: TOML presets + `--set key=value` overrides, validated and hashed.

A config is a tree of dataclasses. Its *hash* names the run directory, so it must stay stable
across releases: only fields that change what is computed are hashed (`hashed=False` marks the
rest, e.g. how many trials or levels to run), and a field is left out of the hash while it
holds its default, so adding a field with a default never changes an existing hash. Never
change a default: add a new field instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from lth.errors import ConfigError
from lth.steps import Step

# Field metadata for what does not change what is computed, so is not part of the run's hash.
UNHASHED = {"hashed": False}


@dataclass
class DataConfig:
    dataset: str = "mnist"
    val_size: int = 5000  # held out of the training set for early stopping (paper protocol)
    split_seed: int = 0  # fixes which examples are held out, for every trial
    augment: bool = False  # random flips and 4-pixel pad-and-crop on whole batches


@dataclass
class ModelConfig:
    name: str = "lenet300"
    dropout: float = 0.0


@dataclass
class TrainingConfig:
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 1.2e-3
    momentum: float = 0.0  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 60
    steps: str = "50000it"  # the whole training budget of one level
    eval_every: str = "100it"  # validation metrics every so often (the early-stopping signal)
    # The test set is evaluated where the validation loss reaches a new minimum and at the end,
    # which is all the early-stop record needs and costs a fraction of evaluating it every time.
    # `test_curve = true` evaluates it at every evaluation, for plots of test accuracy during
    # training; the record is the same either way, so this is not part of the run's hash.
    test_curve: bool = field(default=False, metadata=UNHASHED)
    warmup: str = "0it"  # linear learning-rate warmup from 0 over this many steps
    lr_milestones: list[str] = field(default_factory=list)  # multiply lr by lr_gamma at each
    lr_gamma: float = 0.1


@dataclass
class PruningConfig:
    method: str = "layerwise"  # "layerwise" (a rate per layer kind) or "global" (one pool)
    # Fraction of the *remaining* weights pruned per round, by layer kind; kinds not named
    # are not pruned. With method "global" every named kind shares one pool and one rate.
    rates: dict[str, float] = field(default_factory=lambda: {"fc": 0.2, "output": 0.1})
    # What ranks the weights: a name in the criteria registry (`lth criteria`); the lowest-scored
    # survivors are pruned, layer by layer or globally as `method` says.
    criterion: str = "magnitude"


@dataclass
class LotteryConfig:
    strategy: str = "reset"  # "reset" (Strategy 1) or "continue" (Strategy 2)
    # "iterative", "oneshot" (each level pruned from the trained dense net) or "init" (each level
    # pruned from θ0, before training): lottery/schedules.py
    schedule: str = "iterative"
    rewind_step: str = "0it"  # survivors reset to θk; 0 is the original paper
    # How survivors are retrained after pruning: "weights" (reset to θk, the 2019 paper's),
    # "lr" (learning-rate rewinding) or "finetune" (see `lth variants` and lottery/variants.py).
    retrain: str = "weights"
    seed: int = 0  # trial t uses seed + t
    levels: int = field(default=15, metadata=UNHASHED)  # pruning rounds after the dense level 0
    trials: int = field(default=1, metadata=UNHASHED)
    variants: list[str] = field(default_factory=lambda: ["imp", "reinit", "random"], metadata=UNHASHED)
    # How many of a level's trainings (trials, a ticket and its controls) may train at once as
    # one vectorised model: 0 picks what pays on the device, 1 trains one model at a time.
    # Replicas equal separate runs up to float rounding, so this is not part of the run's hash.
    replicas: int = field(default=0, metadata=UNHASHED)
    # Levels at which to measure the instability of the ticket and each control (docs/design.md,
    # "Instability"): e.g. [0, 3, 7, 12]; [] measures none, and levels past `levels` are not
    # reached. It adds measurements beside the results and changes none of them (its trainings
    # keep to their own seeds and random state), so it is not part of the run's hash; nor are
    # how many points α the error path has (the paper's 30) and which batch norm statistics the
    # interpolated networks use ("interpolated" or "reestimated").
    instability: list[int] = field(default_factory=list, metadata=UNHASHED)
    instability_points: int = field(default=30, metadata=UNHASHED)
    instability_bn: str = field(default="interpolated", metadata=UNHASHED)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    lottery: LotteryConfig = field(default_factory=LotteryConfig)
    description: str = field(default="", metadata=UNHASHED)
    expected_runtime: str = field(default="", metadata=UNHASHED)

    def hash(self) -> str:
        """Content hash of what this config computes: names its run directory."""
        text = json.dumps(_hashed_dict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def validated(self) -> Config:
        _validate(self)
        return self


# --- building configs ----------------------------------------------------------------------


def from_dict(data: dict[str, Any]) -> Config:
    """A validated `Config` from nested dicts (as TOML parses); unknown keys are errors."""
    return _build(Config, data, "").validated()


def load_file(path: str | Path) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    return from_dict(data)


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml")
        for p in resources.files("lth.presets").iterdir()
        if p.name.endswith(".toml")
    )


def load_preset(name: str) -> Config:
    """The named preset (see `lth presets`) as a validated `Config`."""
    if name not in preset_names():
        raise ConfigError(
            f"unknown preset {name!r}: choose one of {', '.join(preset_names())} "
            "(or give a path to a .toml file)"
        )
    text = resources.files("lth.presets").joinpath(f"{name}.toml").read_text()
    return from_dict(tomllib.loads(text))


def resolve(preset_or_file: str) -> Config:
    """A preset name, or a path to a TOML config file."""
    if preset_or_file.endswith(".toml") or Path(preset_or_file).is_file():
        return load_file(preset_or_file)
    return load_preset(preset_or_file)


def with_overrides(config: Config, assignments: list[str]) -> Config:
    """Apply `section.key=value` overrides; values are TOML (`0.1`, `"sgd"`, `["a", "b"]`)."""
    data = config.to_dict()
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad override {assignment!r}: write key=value, e.g. training.lr=0.001")
        *path, leaf = key.strip().split(".")
        node = data
        for part in path:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"unknown config key {key.strip()!r}: see `lth run --help` for the keys")
            node = node[part]
        node[leaf] = _parse_value(raw.strip())
    return from_dict(data)


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word such as sgd is a string


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where or 'top level'!r} must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        name = f"{where}.{unknown[0]}" if where else unknown[0]
        options = ", ".join(sorted(known))
        raise ConfigError(f"unknown config key {name!r}: {where or 'the top level'} takes {options}")
    values = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else key
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _build(kind, value, name)
        else:
            values[key] = _check_type(value, kind, name)
    return cls(**values)


def _check_type(value: Any, kind: Any, name: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [_check_type(v, item, f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a table such as {{fc = 0.2}}, got {value!r}")
        return {str(k): _check_type(v, item, f"{name}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"config field {name} has a union type, which configs do not support")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name} must be of type {kind.__name__}, got {value!r}")
    return value


# --- validation ----------------------------------------------------------------------------


def _validate(config: Config) -> None:
    from lth.pruning import criteria  # here, not at the top: lth.pruning imports this module

    _finite(config, "")
    t, p, lot, d = config.training, config.pruning, config.lottery, config.data
    _choice("training.optimizer", t.optimizer, ("adam", "sgd"))
    _choice("pruning.method", p.method, ("layerwise", "global"))
    try:
        criteria.get(p.criterion)
    except ConfigError as err:
        raise ConfigError(f"pruning.criterion: {err}") from None
    _choice("lottery.strategy", lot.strategy, ("reset", "continue"))
    from lth.lottery import variants  # the table imports pruning, which imports this module
    from lth.lottery.schedules import SCHEDULES

    _choice("lottery.schedule", lot.schedule, tuple(SCHEDULES))

    variants.validate(config)
    steps: dict[str, Step] = {}  # each parsed once, here; the zero checks below read these
    for name, value in (
        ("training.steps", t.steps),
        ("training.eval_every", t.eval_every),
        ("training.warmup", t.warmup),
        ("lottery.rewind_step", lot.rewind_step),
        *((f"training.lr_milestones[{i}]", m) for i, m in enumerate(t.lr_milestones)),
    ):
        try:
            steps[name] = Step.parse(value)
        except ConfigError as err:
            raise ConfigError(f"{name}: {err}") from None
    if steps["training.steps"].value == 0:
        raise ConfigError("training.steps must be more than zero, e.g. '50000it'")
    if steps["training.eval_every"].value == 0:
        raise ConfigError("training.eval_every must be more than zero, e.g. '100it'")
    _positive("training.lr", t.lr)
    _positive("training.batch_size", t.batch_size)
    _in_range("training.momentum", t.momentum, 0.0, 1.0, high_open=True)
    _in_range("training.weight_decay", t.weight_decay, 0.0, float("inf"))
    _in_range("training.lr_gamma", t.lr_gamma, 0.0, float("inf"), low_open=True)
    _in_range("model.dropout", config.model.dropout, 0.0, 1.0, high_open=True)
    if not p.rates:
        raise ConfigError("pruning.rates is empty: give a rate per layer kind, e.g. {fc = 0.2, output = 0.1}")
    for kind, rate in p.rates.items():
        _in_range(f"pruning.rates.{kind}", rate, 0.0, 1.0, high_open=True)
    if p.method == "global" and len(set(p.rates.values())) != 1:
        raise ConfigError(
            "pruning.method 'global' prunes one pool at one rate: give every kind in "
            "pruning.rates the same rate"
        )
    if lot.levels < 0:
        raise ConfigError(f"lottery.levels must be 0 or more, got {lot.levels}")
    if lot.trials < 1:
        raise ConfigError(f"lottery.trials must be 1 or more, got {lot.trials}")
    if lot.replicas < 0:
        raise ConfigError(f"lottery.replicas must be 0 (auto), 1 (off) or more, got {lot.replicas}")
    if lot.seed < 0:
        raise ConfigError(f"lottery.seed must be 0 or more, got {lot.seed}")
    if any(level < 0 for level in lot.instability):
        raise ConfigError(
            f"lottery.instability lists levels 0 or more, e.g. [0, 3, 7]; got {lot.instability}"
        )
    from lth.analysis.instability import PathSettings  # it imports training, which imports this module

    PathSettings.of(lot)  # lottery.instability_points and lottery.instability_bn
    if d.val_size < 1:
        raise ConfigError(
            f"data.val_size must be 1 or more (early stopping needs a validation set), got {d.val_size}"
        )
    if SCHEDULES[lot.schedule].from_dense and lot.strategy == "continue":
        raise ConfigError(
            f"lottery.schedule {lot.schedule!r} prunes once from the dense network, so it takes "
            "lottery.strategy 'reset', not 'continue'"
        )


def _finite(value: Any, name: str) -> None:
    """Refuse NaN and ±inf in every float of the tree, in lists and tables too: NaN passes every
    range check below (its comparisons are all False) and inf passes the open-ended ones."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _finite(getattr(value, f.name), f"{name}.{f.name}" if name else f.name)
    elif isinstance(value, dict):
        for key, item in value.items():
            _finite(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _finite(item, f"{name}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value}")


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be more than zero, got {value}")


def _in_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        raise ConfigError(f"{name} must be in {lo}{low}, {high}{hi}; got {value}")


# --- hashing -------------------------------------------------------------------------------


def _hashed_dict(obj: Any) -> dict[str, Any]:
    """The hashed fields of a config tree that differ from their defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if not f.metadata.get("hashed", True):
            continue
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            nested = _hashed_dict(value)
            if nested:
                out[f.name] = nested
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if value != default:
            out[f.name] = value
    return out
