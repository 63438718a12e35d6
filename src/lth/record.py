"""Records: what a run's figures and findings need, without its weights, small enough to commit,
and a check that a record's files agree with one another and with its config.

A record is the run directory's layout (`lth.layout`) without any tensor or checkpoint, for the
trials it holds, plus record.json, environment.json and a generated README.md. `write_record`
copies a run's finished trials into one, adding to a record of the same config that exists;
`lth report` reads a record as it reads a run; `check_record` re-derives what the files allow:
every summary row from its result.json (and each instability.csv or rewind.csv row from its
instability.json), the training budget, and Pm from the pruning rule's exact counts
(docs/design.md, "Contracts" and "Criteria and scopes").
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lth import layout
from lth._version import __version__
from lth.analysis import measure, rewind
from lth.analysis.instability import PathSettings
from lth.analysis.measure import instability_rows, write_instability
from lth.compose import model_options
from lth.config import Config
from lth.data.registry import get as data_source
from lth.environment import commit, signature, trial_signatures
from lth.errors import LthError, StoreError
from lth.lottery import variants, write_summary
from lth.lottery.schedules import SCHEDULES
from lth.models import build
from lth.pruning import Mask, PruningPlan
from lth.steps import Step
from lth.store import LevelDir, RunStore, write_atomic
from lth.sweep.progress import trainings_by_level

# Copied per (trial, variant, level): everything a report reads there that is not a tensor.
LEVEL_FILES = (layout.RESULT, layout.HISTORY)
RECORD_FORMAT = 1

# Any input shape builds a model with the same parameter names and layer kinds (only sizes
# follow the input), so a record's layer kinds need no data set; sizes come from the record.
_PROBE_INPUT = (3, 32, 32)


@dataclass(frozen=True)
class Record:
    """What `write_record` did: the record's trials, those it added, and those still missing
    (unfinished in the run and not in the record either)."""

    path: Path
    trials: list[int]
    added: list[int]
    unfinished: list[int]


# --- which trials -------------------------------------------------------------------------------


def planned_trainings(config: Config) -> list[tuple[str, int]]:
    """Every (variant, level) a trial of `config` stores, internal variants included."""
    return [training for level in trainings_by_level(config) for training in level]


def planned_files(config: Config) -> list[tuple[str, int, str]]:
    """Every (variant, level, file name) a record copies of a trial: each planned training's
    LEVEL_FILES, and instability.json where the config measures that training's instability."""
    files = [(v, lv, name) for v, lv in planned_trainings(config) for name in LEVEL_FILES]
    lot = config.lottery
    measured = [(v.name, lv) for lv in range(lot.levels + 1) for v in variants.measured_at(config, lv)]
    return files + [(v, lv, layout.INSTABILITY) for v, lv in measured]


def finished_trials(run: Path, config: Config) -> list[int]:
    """The trials of `run` whose every planned (variant, level) has its result.json, and its
    instability.json where the config measures one (each is written last: the work is done)."""
    needed = planned_files(config)
    return [
        trial
        for trial in range(config.lottery.trials)
        if all((layout.level_dir(run, trial, v, lv) / name).exists() for v, lv, name in needed)
    ]


def _chosen(run: Path, config: Config, trials: Sequence[int] | None, finished: list[int]) -> list[int]:
    if trials is None:
        if not finished:
            raise StoreError(
                f"{run} has no finished trial yet (every variant at every level); "
                "finish one first, e.g. `lth run CONFIG --trials 0`"
            )
        return finished
    outside = [t for t in trials if not 0 <= t < config.lottery.trials]
    if outside:
        raise StoreError(f"trial {outside[0]} is not among the config's 0..{config.lottery.trials - 1}")
    unfinished = [t for t in trials if t not in finished]
    if unfinished:
        raise StoreError(
            f"trial {unfinished[0]} of {run} is not finished; finish it with "
            f"`lth run CONFIG --trials {unfinished[0]}` or leave it out of --trials"
        )
    return sorted(set(trials))


# --- writing a record -------------------------------------------------------------------------


def write_record(run_dir: str | Path, out: str | Path, trials: Sequence[int] | None = None) -> Record:
    """Copy the finished trials of `run_dir` (or only `trials`) into the record `out`: config,
    summary, each level's result.json and history.csv, never a weight. Adds to a record of the
    same config; one of another config is refused. Running it again changes nothing."""
    run, out = Path(run_dir), Path(out)
    config = layout.read_config(run)
    held = _held_trials(out, run, config)
    finished = finished_trials(run, config)
    chosen = _chosen(run, config, trials, finished)
    # record.json first (with what was held): a directory with a config but no record.json is a
    # run directory, which is refused above, so an interrupted first call must not look like one.
    _write_record_json(out, run, held)
    write_atomic(out / layout.CONFIG, (run / layout.CONFIG).read_bytes())
    for trial in chosen:
        _copy_trial(run, out, config, trial)
    recorded = sorted(set(held) | set(chosen))
    store = RunStore.at(out, config)
    write_summary(config, store)
    write_instability(config, store)
    # `lth instability`'s sweep: its rows of the trials copied now, from the copied measurements.
    swept = [out / f.relative_to(run) for t in chosen for f in rewind.measured_folders(run, t).values()]
    if swept:
        rewind.write_rows(out, rewind.rows_from(swept))
    env = environment(out, config, recorded)
    _write_json(out / layout.ENVIRONMENT, env)
    write_atomic(out / layout.RECORD_README, readme(out, config, recorded, env).encode())
    _write_record_json(out, run, recorded)  # last: it lists only trials whose files are all in place
    return Record(
        out,
        recorded,
        sorted(set(chosen) - set(held)),
        [t for t in range(config.lottery.trials) if t not in finished and t not in recorded],
    )


def _held_trials(out: Path, run: Path, config: Config) -> list[int]:
    """The trials `out` records already, after refusing a directory that is not a record of `config`."""
    if out.resolve() == run.resolve():
        raise StoreError(f"--out {out} is the run directory itself; give a new folder for the record")
    record = layout.read_record(out)
    if (out / layout.CONFIG).exists():
        if record is None:
            raise StoreError(
                f"{out} is a run directory, not a record (no {layout.RECORD}); choose another --out"
            )
        held = layout.read_config(out, fix="delete the record and record it again")
        if held.hash() != config.hash():
            raise StoreError(
                f"record {out} holds config {held.hash()}, but {run} ran config {config.hash()}; "
                "record this run into another --out DIR"
            )
        # Instability is not hashed (it adds measurements to the same trainings), but a record
        # holds every trial's measurements or none: a run measuring others goes elsewhere.
        held_measures, run_measures = _measures(held), _measures(config)
        if held_measures != run_measures:
            raise StoreError(
                f"record {out} measures instability {held_measures}, but {run} measures it "
                f"{run_measures}; record this run into another --out DIR"
            )
    return sorted(record["trials"]) if record else []


def _measures(config: Config) -> str:
    """What a config's instability measurements are, as the refusal above names them."""
    lot = config.lottery
    if not lot.instability:
        return "at no level"
    settings = PathSettings.of(lot)
    return f"at levels {list(lot.instability)} ({settings.points} points, batch norm {settings.batch_norm})"


def _copy_trial(run: Path, out: Path, config: Config, trial: int) -> None:
    for source in _trial_files(run, config, trial):
        data = source.read_bytes()
        target = out / source.relative_to(run)
        if not target.exists() or target.read_bytes() != data:
            write_atomic(target, data)


def _trial_files(path: Path, config: Config, trial: int) -> list[Path]:
    """What a record holds of a trial: its planned files, and the instability.json of each start
    point `lth instability` measured (listed in rewind.csv), wherever it was measured."""
    planned = [layout.level_dir(path, trial, v, lv) / name for v, lv, name in planned_files(config)]
    swept = [folder / layout.INSTABILITY for folder in rewind.measured_folders(path, trial).values()]
    return planned + [f for f in swept if f not in planned]


def _write_json(path: Path, value: dict[str, Any]) -> None:
    write_atomic(path, (json.dumps(value, indent=2) + "\n").encode())


def _write_record_json(out: Path, run: Path, trials: list[int]) -> None:
    _write_json(
        out / layout.RECORD,
        {
            "format": RECORD_FORMAT,
            "run": run.resolve().name,  # the run directory's name: model, data set and config hash
            "trials": trials,
            "recorded_by": {"lth": __version__, "lth_commit": commit()},
        },
    )


# --- what trained it --------------------------------------------------------------------------


def _results(path: Path, config: Config, trials: Iterable[int]) -> list[tuple[int, str, int, dict[str, Any]]]:
    """(trial, variant, level, result.json) of every planned training of `trials` in `path`."""
    return [
        (trial, variant, level, LevelDir(layout.level_dir(path, trial, variant, level)).load_result())
        for trial in trials
        for variant, level in planned_trainings(config)
    ]


def environment(path: Path, config: Config, trials: list[int]) -> dict[str, Any]:
    """environment.json: each engine that trained the record (from its result.json files) and
    what it trained, which trials mix engines that change numbers, and the wall times."""
    keys: dict[str, int] = {}
    trainings, engines_of, walls = [], [], {}
    for trial, variant, level, result in _results(path, config, trials):
        engine = result.get("engine")
        index = keys.setdefault(json.dumps(engine, sort_keys=True), len(keys))
        wall = result.get("wall_time_s")
        trainings.append(
            {
                "trial": trial,
                "variant": variant,
                "level": level,
                "wall_time_s": wall,
                "replicas": result.get("replicas"),
                "engine": index,
            }
        )
        engines_of.append((trial, engine))
        walls[trial] = walls.get(trial, 0.0) + (wall or 0.0)
    engines = []
    for key, index in keys.items():
        engine = json.loads(key)
        used = [t for t in trainings if t["engine"] == index]
        engines.append(
            {
                "signature": signature(engine),
                **(engine or {}),
                "trainings": len(used),
                "trials": sorted({t["trial"] for t in used}),
            }
        )
    mixed = {str(t): s for t, s in trial_signatures(engines_of).items() if len(s) > 1}
    return {
        "trials": trials,
        "engines": engines,
        # Engines whose signatures differ can change numbers beyond the last digit (see
        # `lth.environment.signature`, which names the CPU model); another commit cannot.
        "mixed_engines": len({e["signature"] for e in engines}) > 1,
        "mixed_trials": mixed,
        "wall_time_s": _totals(walls),
        "trainings": trainings,
        **(
            {"instability_wall_time_s": _totals(_measuring(path, config, trials))}
            if config.lottery.instability
            else {}
        ),
    }


def _totals(per_trial: dict[int, float]) -> dict[str, Any]:
    return {"total": sum(per_trial.values()), "per_trial": {str(t): w for t, w in per_trial.items()}}


def _measuring(path: Path, config: Config, trials: list[int]) -> dict[int, float]:
    """Each trial's wall time measuring instability (its instability.json files): the second
    copies and the error paths, which the trainings' own wall times leave out."""
    measured = [(v, lv) for v, lv, name in planned_files(config) if name == layout.INSTABILITY]
    return {
        t: sum(
            (measure.stored(layout.level_dir(path, t, v, lv)) or {}).get("wall_time_s") or 0.0
            for v, lv in measured
        )
        for t in trials
    }


def readme(out: Path, config: Config, trials: list[int], env: dict[str, Any]) -> str:
    """The record's README.md: what it holds and how to report, check and recompute it; the
    hours come from `env`, environment.json's contents."""
    lot, seed, where = config.lottery, config.lottery.seed, out.as_posix()
    rows = "\n".join(
        f"| {t} | {seed + t} | `lth run {where}/{layout.CONFIG} --trials {t}` | "
        f"`lth run {where}/{layout.CONFIG} --set lottery.seed={seed + t} --trials 0` |"
        for t in trials
    )
    held = f"trial{'s' * (len(trials) != 1)} {', '.join(map(str, trials))}"
    hours = f"{env['wall_time_s']['total'] / 3600:.2f} hours of training"
    if "instability_wall_time_s" in env:
        hours += f" and {env['instability_wall_time_s']['total'] / 3600:.2f} measuring instability"
    measured = (
        ", and `instability.json` (the error path between two copies) where the config measures"
        " instability, gathered in `instability.csv`"
        if lot.instability
        else ""
    )
    if (out / layout.INSTABILITY_DIR / layout.REWIND_CSV).exists():
        measured += (
            "; `instability/rewind.csv`, `lth instability`'s sweep over rewind iterations, with each"
            " of its start points' `instability.json`"
        )
    intro = textwrap.fill(
        f"Written by `lth record`. It holds {held} of the config's {lot.trials}: {lot.levels} levels, "
        f"variants {', '.join(lot.variants)}, strategy `{lot.strategy}`, schedule `{lot.schedule}`, "
        f"{config.training.steps} per level; {hours} in all. No weights: each level's `result.json` "
        "(its numbers, the surviving weights per layer, the engine and wall time) and `history.csv` "
        f"(accuracy during training){measured}, in the run directory's layout; `summary.csv` lists "
        "every (trial, variant, level); `environment.json` gathers the engines and wall times; "
        "`record.json` names the trials held. From the folder `lth record` ran in (the repository's "
        "root for docs/reproductions/):",
        width=100,
        break_on_hyphens=False,
    )
    return f"""# Record: {config.model.name} on {config.data.dataset} (config {config.hash()})

{intro}

    lth report {where}           # figures, findings and the paper check, as for a run
    lth record --check {where}   # the files agree with each other and with the config

## Recompute one trial

Trials are independent: trial t trains with seed `lottery.seed + t` = {seed} + t and reads
nothing of the other trials. So trial t alone is either command below (results go to `./runs`);
the second computes it as trial 0 of the same config with seed {seed} + t, whose rows then say
trial 0.

| trial | seed | alone | as trial 0 |
|---|---|---|---|
{rows}

On the engine `environment.json` names, the numbers are the same to the last digit. Where that
engine grouped trainings as replicas (`max_replicas` above 1), a trial run alone trains in other
groups: equal up to float rounding (docs/design.md, "Engines").
"""


# --- checking a record ------------------------------------------------------------------------


def check_record(path: str | Path) -> list[str]:
    """Every way the record (or run directory) at `path` disagrees with itself or its config, as
    one line each; an empty list means consistent. Checks that each held trial has every planned
    level's files and no weights (a record), that summary.csv has exactly the held trials' rows,
    each equal to its result.json, that each result sits where it says and trained the config's
    budget, and that each level's surviving weights are the pruning rule's exact counts."""
    path = Path(path)
    config = layout.read_config(path)
    record = layout.read_record(path)
    trials = sorted(record["trials"]) if record else finished_trials(path, config)
    problems = _missing_files(path, config, trials)
    if record is not None:
        problems += [f"{p.relative_to(path)}: a record holds no weights or checkpoints" for p in _heavy(path)]
    if problems:
        return problems  # the checks below read these files
    results = _results(path, config, trials)
    problems += _summary_problems(path, config, trials, results)
    problems += _instability_problems(path, config, trials)
    problems += _rewind_problems(path, trials)
    for trial, variant, level, result in results:
        where = f"{layout.unit_id(trial, variant, level)}/{layout.RESULT}"
        problems += [f"{where}: {p}" for p in _result_problems(path, config, trial, variant, level, result)]
    problems += _pruning_problems(config, results)
    return problems


def _missing_files(path: Path, config: Config, trials: list[int]) -> list[str]:
    return [
        f"{f.relative_to(path).as_posix()} is missing"
        for t in trials
        for f in _trial_files(path, config, t)
        if not f.exists()
    ]


def _heavy(path: Path) -> list[Path]:
    return sorted([*path.rglob(layout.tensors("*")), *path.rglob(layout.CHECKPOINT)])


def _summary_problems(
    path: Path, config: Config, trials: list[int], results: list[tuple[int, str, int, dict[str, Any]]]
) -> list[str]:
    """summary.csv against the results: one row per held (trial, variant, level), equal cell by
    cell (level 0 is the dense result under every variant's name)."""
    stored = {(t, v, lv): r for t, v, lv, r in results}
    lot = config.lottery
    rows = [(t, v, lv) for t in trials for v in lot.variants for lv in range(lot.levels + 1)]
    sources = {row: (row[0], layout.TICKET, 0) if row[2] == 0 else row for row in rows}
    expected = {row: stored[source] for row, source in sources.items() if source in stored}
    return _table_problems(path / layout.SUMMARY, layout.SUMMARY_COLUMNS, expected, layout.RESULT)


def _instability_problems(path: Path, config: Config, trials: list[int]) -> list[str]:
    """instability.csv against the measurements (instability.json): the rows `write_instability`
    makes of them, for the held trials, equal cell by cell; no file where nothing is measured."""
    expected = {
        (int(r["trial"]), r["variant"], int(r["level"])): r
        for r in instability_rows(config, RunStore.at(path, config))
        if int(r["trial"]) in trials
    }
    table = path / layout.INSTABILITY_CSV
    if not expected and not table.exists():
        return []
    return _table_problems(table, layout.INSTABILITY_COLUMNS, expected, layout.INSTABILITY)


# What names a row of summary.csv and instability.csv: a training (rewind.csv's: `rewind.KEY`).
_TRAINING_KEY = ("trial", "variant", "level")


def _rewind_problems(path: Path, trials: list[int]) -> list[str]:
    """instability/rewind.csv (`lth instability`'s sweep) against its measurements, for the held
    trials: each row equal to the instability.json it lists, no row of another trial."""
    table = path / layout.INSTABILITY_DIR / layout.REWIND_CSV
    if not table.exists():
        return []
    expected = {}
    for trial in trials:
        for row in rewind.rows_from(rewind.measured_folders(path, trial).values()):
            expected[tuple(int(row[c]) for c in rewind.KEY)] = row
    return _table_problems(table, layout.INSTABILITY_COLUMNS, expected, layout.INSTABILITY, rewind.KEY)


def _table_problems(
    table: Path,
    columns: list[str],
    expected: dict[tuple[int | str, ...], dict[str, Any]],
    source: str,
    key_columns: tuple[str, ...] = _TRAINING_KEY,
) -> list[str]:
    """A table of rows named by `key_columns` against the values each row should hold (from its
    `source` file): exactly the expected rows, equal cell by cell."""
    if not table.exists():
        return [f"{table.name} is missing"]
    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    problems, seen = [], set()
    for line, row in enumerate(rows, start=2):
        key = tuple(row[c] if c == "variant" else int(row[c]) for c in key_columns)
        seen.add(key)
        if key not in expected:
            problems.append(f"{table.name} line {line}: {key} is not a result this holds")
            continue
        problems += [
            f"{table.name} line {line}: {column} is {row.get(column)!r}, its {source} says "
            f"{expected[key].get(column)!r}"
            for column in columns
            if column != "variant" and not _same(row.get(column), expected[key].get(column))
        ]
    problems += [f"{table.name} has no row for {key}" for key in sorted(expected.keys() - seen)]
    return problems


def _same(cell: str | None, value: Any) -> bool:
    """A summary cell equals its result's value: csv writes floats exactly (Python's repr), and
    an absent value as an empty cell."""
    if cell is None:
        return False
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return cell == ""
    try:
        return float(cell) == float(value)
    except ValueError:
        return cell == str(value)


def _result_problems(
    path: Path, config: Config, trial: int, variant: str, level: int, result: dict[str, Any]
) -> list[str]:
    """A result sits where it says, with the trial's seed, and trained the config's budget."""
    problems = []
    said = (result.get("trial"), result.get("variant"), result.get("level"), result.get("seed"))
    if said != (trial, variant, level, config.lottery.seed + trial):
        problems.append(
            f"says (trial, variant, level, seed) = {said}, not ({trial}, {variant}, {level}, "
            f"{config.lottery.seed + trial})"
        )
    budget = Step.parse(config.training.steps)
    iterations = result.get("iterations")
    if budget.unit == "it" and iterations != budget.value:
        problems.append(f"trained {iterations} iterations, the config's budget is {budget.value}")
    with (layout.level_dir(path, trial, variant, level) / layout.HISTORY).open(newline="") as f:
        last = list(csv.DictReader(f))[-1:]
    if not last or int(float(last[0]["iteration"])) != iterations:
        end = last[0]["iteration"] if last else "nothing"
        problems.append(f"its history.csv ends at {end}, not at iteration {iterations}")
    return problems


def _pruning_problems(config: Config, results: list[tuple[int, str, int, dict[str, Any]]]) -> list[str]:
    """Each level's surviving weights against the pruning rule's exact counts: per layer for
    layer-wise pruning, in total for global pruning (where layers share the pool by score)."""
    try:
        plan = pruning_plan(config)
    except (LthError, TypeError, ValueError, RuntimeError) as err:
        return [
            f"cannot build {config.model.name} to learn its layers' pruning rates ({err}): Pm not checked"
        ]
    dense = {trial: r["remaining_per_layer"] for trial, _, level, r in results if level == 0}
    for trial, sizes in dense.items():
        if set(sizes) != set(plan.layer_rates):
            return [
                f"trial {trial}: layers {sorted(sizes)} are not the pruned layers of "
                f"{config.model.name}, {sorted(plan.layer_rates)}"
            ]
    expected: dict[str, list[dict[str, int]]] = {}  # by the layers' sizes: trials share them
    problems = []
    for trial, variant, level, result in results:
        key = json.dumps(dense[trial], sort_keys=True)
        if key not in expected:
            expected[key] = expected_remaining(config, plan, dense[trial])
        problems += [
            f"{layout.unit_id(trial, variant, level)}/{layout.RESULT}: {p}"
            for p in _counts_problems(plan, dense[trial], expected[key][level], result)
        ]
    return problems


def _counts_problems(
    plan: PruningPlan, sizes: dict[str, int], expected: dict[str, int], result: dict[str, Any]
) -> list[str]:
    remaining = result["remaining_per_layer"]
    if plan.method == "layerwise" and remaining != expected:
        return [f"surviving weights per layer {remaining}, the pruning rule gives {expected}"]
    if sum(remaining.values()) != sum(expected.values()):
        return [
            f"{sum(remaining.values())} surviving weights, the pruning rule gives {sum(expected.values())}"
        ]
    pm = 100 * sum(expected.values()) / sum(sizes.values())
    if not math.isclose(result["percent_remaining"], pm, rel_tol=1e-12):
        return [f"percent_remaining is {result['percent_remaining']}, the pruning rule gives {pm}"]
    return []


def pruning_plan(config: Config) -> PruningPlan:
    """The config's pruning plan, its layers and rates by name, from a model built on a probe input."""
    source = data_source(config.data.dataset)
    model = build(config.model.name, _PROBE_INPUT, source.num_classes, **model_options(config.model))
    return PruningPlan.for_model(model, config.pruning)


def expected_remaining(config: Config, plan: PruningPlan, sizes: dict[str, int]) -> list[dict[str, int]]:
    """Surviving weights per pruned layer at levels 0..L under `plan`, from the layers' sizes: the
    plan's own pruning of all-tied scores, since how many weights a round prunes (the exact
    counts, rounded half up, of the remaining weights) does not depend on which."""
    counts_only = dataclasses.replace(plan, criterion="magnitude")  # scores from weights alone
    dense = Mask({name: torch.ones(size) for name, size in sizes.items()})
    weights = {name: torch.zeros(size) for name, size in sizes.items()}
    levels, mask = [dense.remaining()], dense
    for level in range(1, config.lottery.levels + 1):
        if SCHEDULES[config.lottery.schedule].from_dense:  # straight from dense, as the runner
            mask = counts_only.prune(dense, weights, rounds=level)
        else:
            mask = counts_only.prune(mask, weights)
        levels.append(mask.remaining())
    return levels
