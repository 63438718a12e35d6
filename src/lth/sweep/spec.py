"""Sweep files: a base config, fixed overrides and a grid, expanded into runs and units.

    base = "lenet-mnist"            # a preset, or a config file (relative to this file)
    trials = 5                      # each trial of each run is one unit of work
    out = "runs"                    # the results root (relative to where `lth sweep` runs)

    [set]                           # applied to every run
    "lottery.levels" = 15

    [grid]                          # every combination: 2 × 2 = 4 runs
    "lottery.strategy" = ["reset", "continue"]
    "lottery.rewind_step" = ["0it", "500it"]

Keys are config keys, quoted (`"lottery.levels"`) or as TOML dotted keys (`lottery.levels`);
a value is taken whole, so `"pruning.rates" = {fc = 0.5}` replaces the rates. `[[grid]]`,
several times, sweeps the union of several grids. Every run is validated before anything runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from lth.compose import model_options
from lth.config import Config, from_dict, load_file, load_preset, preset_names
from lth.errors import ConfigError
from lth.models import check_options
from lth.store import run_name

TOP_KEYS = ("base", "description", "grid", "out", "set", "trials")
DEFAULT_OUT = Path("runs")


@dataclass(frozen=True)
class Run:
    """One config of a sweep: a run directory with `config.lottery.trials` units in it."""

    config: Config
    path: Path  # out / <model>-<dataset>-<hash>
    settings: tuple[tuple[str, Any], ...] = ()  # the grid values that make this run

    @property
    def label(self) -> str:
        """The grid values as `--set` arguments would write them, e.g. `lottery.strategy=reset`."""
        return " ".join(f"{key}={format_value(value)}" for key, value in self.settings) or "(base)"

    @property
    def units(self) -> list[Unit]:
        return [Unit(self, trial) for trial in range(self.config.lottery.trials)]


@dataclass(frozen=True)
class Unit:
    """One (run, trial): the unit of work a worker runs, its levels in order."""

    run: Run
    trial: int

    @property
    def name(self) -> str:
        return f"{self.run.path} trial {self.trial}"


@dataclass(frozen=True)
class Sweep:
    runs: list[Run]
    out: Path
    source: str = ""  # the sweep file, for messages
    description: str = ""

    @property
    def units(self) -> list[Unit]:
        return [unit for run in self.runs for unit in run.units]


def load_sweep(path: str | Path, out: str | Path | None = None) -> Sweep:
    """Read and expand a sweep file; `out` (the command line's --out) overrides its `out`. A
    preset's name, where no such file exists, is the sweep of that one run: its trials spread over
    the workers, in the run directory `lth run PRESET` uses."""
    path = Path(path)
    if not path.exists() and str(path) in preset_names():
        return expand({"base": str(path)}, source=f"preset {path}", out=out)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read sweep file {path}: {err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"sweep file {path} is not valid TOML: {err}") from None
    return expand(spec, source=str(path), relative_to=path.parent, out=out)


def expand(
    spec: dict[str, Any],
    *,
    source: str = "sweep",
    relative_to: Path = Path("."),
    out: str | Path | None = None,
) -> Sweep:
    """The runs of a parsed sweep file, in grid order (the first grid key varies slowest)."""
    unknown = sorted(set(spec) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}; a sweep file takes {', '.join(TOP_KEYS)}")
    base = _base(spec, source, relative_to)
    fixed = _flatten(_table(spec.get("set", {}), "[set]", source), source, "[set]")
    if "trials" in spec:
        if "lottery.trials" in fixed:
            raise ConfigError(f"{source}: give the trials once, as `trials` or as lottery.trials in [set]")
        fixed["lottery.trials"] = spec["trials"]
    base = _apply(base, fixed, source, "[set]")
    root = Path(out if out is not None else _string(spec, "out", source, str(DEFAULT_OUT)))

    runs: dict[str, Run] = {}
    for grid in _grids(spec.get("grid", {}), source):
        keys = list(grid)
        for values in itertools.product(*grid.values()):
            settings = tuple(zip(keys, values, strict=True))
            config = _apply(base, dict(settings), source, _describe(settings))
            run = Run(config, root / run_name(config), settings)
            _add(runs, run, source)
    return Sweep(list(runs.values()), root, source, _string(spec, "description", source, ""))


def format_value(value: Any) -> str:
    """A value as `--set` takes it: a plain word bare, anything else as TOML."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.+-]+", value) and _parses_as_itself(value):
        return value
    return tomli_w.dumps({"v": value}).removeprefix("v = ").strip()


# --- pieces ----------------------------------------------------------------------------------


def _base(spec: dict[str, Any], source: str, relative_to: Path) -> Config:
    if "base" not in spec:
        raise ConfigError(
            f'{source}: give a base config, e.g. base = "lenet-mnist" (a preset) or base = "mine.toml"'
        )
    name = _string(spec, "base", source, "")
    path = relative_to / name
    if name.endswith(".toml") or (name not in preset_names() and path.is_file()):
        return load_file(path)
    return load_preset(name)


def _grids(grid: Any, source: str) -> list[dict[str, list[Any]]]:
    tables = grid if isinstance(grid, list) else [grid]
    grids = []
    for i, table in enumerate(tables):
        where = "[grid]" if len(tables) == 1 else f"[[grid]] number {i + 1}"
        flat = _flatten(_table(table, where, source), source, where)
        for key, values in flat.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(
                    f'{source}: {where} {key} must be a non-empty list of values, e.g. ["reset", "continue"]'
                    f" (a list-valued key takes a list of lists); got {values!r}"
                )
        grids.append(flat)
    return grids


def _flatten(table: dict[str, Any], source: str, where: str) -> dict[str, Any]:
    """`{"lottery": {"levels": 3}}` and `{"lottery.levels": 3}` both → `{"lottery.levels": 3}`.

    Walks the config's sections so a key that names a field takes its value whole (a table
    value such as pruning.rates is not split into its entries).
    """
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: list[str]) -> None:
        for key, value in node.items():
            parts = [*prefix, *key.split(".")]
            kind: Any = Config
            for depth, part in enumerate(parts):
                fields = (
                    {f.name: f for f in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}
                )
                if part not in fields:
                    name = ".".join(parts[: depth + 1])
                    raise ConfigError(
                        f"{source}: unknown config key {name!r} in {where} (the keys of `lth run --set`)"
                    )
                kind = typing.get_type_hints(kind)[part]
            if dataclasses.is_dataclass(kind):
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {'.'.join(parts)} in {where} is a section: give its keys")
                walk(value, parts)
            else:
                flat[".".join(parts)] = value

    walk(table, [])
    return flat


def _apply(config: Config, values: dict[str, Any], source: str, where: str) -> Config:
    data = config.to_dict()
    for key, value in values.items():
        *path, leaf = key.split(".")
        node = data
        for part in path:
            node = node[part]
        node[leaf] = value
    try:
        config = from_dict(data)
        check_options(config.model.name, model_options(config.model))  # the data-free model checks
    except ConfigError as err:
        raise ConfigError(f"{source}: {where}: {err}") from None
    return config


def _add(runs: dict[str, Run], run: Run, source: str) -> None:
    """Same config twice (e.g. from two grids) is one run; one directory for two configs is refused."""
    key = run.config.hash()
    other = runs.get(key)
    if other is None:
        runs[key] = run
        return
    if _unhashed(other.config) != _unhashed(run.config):
        raise ConfigError(
            f"{source}: the runs {other.label} and {run.label} share the run directory {run.path} "
            "(they differ only in lottery.levels, lottery.trials or lottery.variants, which extend one "
            "run rather than make another): sweep one value of those keys"
        )


def _unhashed(config: Config) -> tuple[Any, ...]:
    lot = config.lottery
    return lot.levels, lot.trials, tuple(lot.variants)


def _describe(settings: tuple[tuple[str, Any], ...]) -> str:
    return "[grid] " + " ".join(f"{k}={format_value(v)}" for k, v in settings) if settings else "[set]"


def _table(value: Any, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where} must be a table of config keys")
    return value


def _string(spec: dict[str, Any], key: str, source: str, default: str) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
    return value


def _parses_as_itself(text: str) -> bool:
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return True
    return False
