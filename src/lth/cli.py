"""The `lth` command line (also `python -m lth`). Exit 0 on success; on failure, one line on
stderr naming what is wrong and how to fix it, and a non-zero status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth.errors import LthError

if TYPE_CHECKING:
    from lth.config import Config


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.command(args)
    except LthError as err:
        print(f"lth: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lth: interrupted; run the same command again to continue where it stopped", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lth", description="Find and study lottery tickets.")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run (or resume) a lottery experiment",
        description="Run a preset or a TOML config; re-running continues where it stopped.",
    )
    _run_options(run)
    run.set_defaults(command=_run)

    instability = sub.add_parser(
        "instability",
        help="instability against the rewind iteration k: dense and IMP subnetworks",
        description="Train two copies of the dense network (level 0) and of IMP subnetworks from "
        "the level's mask on θk with different SGD noise, and measure the error barrier on the "
        "straight line between them (Frankle et al., ICML 2020), for each k; the lottery run is "
        "run or extended first for its masks. Results: RUN_DIR/instability/rewind.csv. Running "
        "it again continues where it stopped.",
    )
    _run_options(instability)
    instability.add_argument(
        "--rewind",
        required=True,
        metavar="K1,K2,…",
        help="rewind iterations k, e.g. 0,100,500,2000 (each below training.steps)",
    )
    instability.add_argument(
        "--levels",
        default=None,
        metavar="L1,L2,…",
        help="levels to measure, 0 being dense (default: lottery.instability, else 0)",
    )
    instability.set_defaults(command=_instability)

    presets = sub.add_parser("presets", help="list the presets")
    presets.set_defaults(command=_presets)

    criteria = sub.add_parser("criteria", help="list the pruning criteria (pruning.criterion)")
    criteria.set_defaults(command=_criteria)

    variants = sub.add_parser("variants", help="list the variants a level trains (lottery.variants)")
    variants.set_defaults(command=_variants)

    engines = sub.add_parser("engines", help="list the engines that can compute a training (--engine)")
    engines.set_defaults(command=_engines)

    data = sub.add_parser("data", help="data sets")
    data_sub = data.add_subparsers(required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download and verify a data set")
    fetch.add_argument("name", help="mnist, fashion-mnist or cifar10")
    _data_dir(fetch)
    fetch.set_defaults(command=_fetch)

    report = sub.add_parser(
        "report",
        help="figures, findings and a page for one or more runs",
        description="Summarise run directories: the paper's figures (PNG and SVG), aggregate.csv, "
        "report.md and a self-contained report.html; several runs are overlaid and labelled by "
        "what differs between their configs.",
    )
    _run_dirs(report, "the figures and page", "report")
    report.add_argument(
        "--format", choices=("text", "json"), default="text", help="what to print: tables or JSON for scripts"
    )
    report.add_argument(
        "--levels",
        type=_int_list,
        default=None,
        metavar="L1,L2,…",
        help="levels for the accuracy-during-training figure (default: up to 5, dense to sparsest)",
    )
    report.set_defaults(command=_report)

    masks = sub.add_parser(
        "masks",
        help="what the masks keep: layer sparsity, overlaps, pixels, θ0 of survivors",
        description="Analyse the stored masks of run directories: each layer's sparsity by level; "
        "the overlap (Jaccard index) of masks across trials, across the runs given (same trial and "
        "level), across consecutive levels and between the ticket and its controls, each beside "
        "that of random masks with the same per-layer counts; the first layer's surviving weights "
        "per input pixel; and θ0 of kept against pruned weights. Writes CSV, masks.json and "
        "figures, and prints a table. A record keeps no masks: give its run directory.",
    )
    _run_dirs(masks, "the files", "masks")
    masks.add_argument(
        "--levels",
        type=_int_list,
        default=None,
        metavar="L1,L2,…",
        help="levels of the pixel maps; θ0 is compared at the deepest (default: up to 5 pruned levels)",
    )
    masks.set_defaults(command=_masks)

    record = sub.add_parser(
        "record",
        help="copy a run's finished trials, without weights, into a record to commit; or check one",
        description="Copy what a run's figures and findings need (config, summary, each level's "
        "result.json and history.csv, instability.json where measured; no weights) into a record "
        "that `lth report` reads like a run, "
        "with environment.json and a README on recomputing any one trial. Running it again adds "
        "the trials finished since.",
    )
    record.add_argument("run_dir", type=Path, nargs="?", metavar="RUN_DIR", help="the run to record")
    record.add_argument(
        "--out", type=Path, default=None, help="the record's folder, e.g. docs/reproductions/NAME"
    )
    record.add_argument(
        "--trials",
        type=_int_list,
        default=None,
        metavar="T1,T2,…",
        help="record only these finished trials (default: every finished trial)",
    )
    record.add_argument(
        "--check",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="instead, check that records (or runs) agree with themselves and their configs",
    )
    record.set_defaults(command=_record)

    export = sub.add_parser(
        "export",
        help="write one level's ticket to a file: sparse (CSR), torch prune form, or dense",
        description="Write the ticket at a finished level of a run as a safetensors file whose "
        "metadata says what it is (lth version, format, model config, data set, level, Pm): sparse "
        "(each pruned layer in CSR, about 1.5 × Pm of the dense file for LeNet; lth.load_ticket reads "
        "it), prune (the state dict of a model prepared with torch.nn.utils.prune) or dense (zeros "
        "in place).",
    )
    export.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    export.add_argument("--level", type=int, required=True, help="the level (0 is the dense network)")
    export.add_argument("--trial", type=int, default=0, help="the trial (default: 0)")
    export.add_argument("--variant", default="imp", help="imp (the ticket, default), reinit, random, …")
    export.add_argument(
        "--weights",
        choices=("final", "init"),
        default="final",
        help="the trained weights (default) or the start weights the level trained from",
    )
    export.add_argument(
        "--format", choices=("sparse", "prune", "dense"), default="sparse", help="(default: sparse)"
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the file to write")
    export.set_defaults(command=_export)

    sweep = sub.add_parser(
        "sweep",
        help="run many configs × trials, locally or on a Ray cluster",
        description="Expand a sweep file (a base config, [set] overrides, a [grid] of values, trials) "
        "into runs, each (run, trial) one unit, and hand each level's trainings to worker processes "
        "or Ray tasks once the ticket of the level before is done. "
        "Running it again finishes only what is missing.",
    )
    sweep.add_argument(
        "file",
        metavar="FILE.toml",
        type=Path,
        help="the sweep file (see the README: Sweeps), or a preset's name: its trials as one sweep",
    )
    look = sweep.add_mutually_exclusive_group()
    look.add_argument(
        "--dry-run", action="store_true", help="list the runs, their directories and what is done"
    )
    look.add_argument(
        "--status", action="store_true", help="units done / started / failed / left, and time left"
    )
    sweep.add_argument(
        "--out", type=Path, default=None, help="the results root (default: the file's `out`, else ./runs)"
    )
    sweep.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where the trainings run (default: local)",
    )
    sweep.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local: worker processes (default: one per core); ray: most tasks in flight (default: no limit)",
    )
    sweep.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="N",
        help="PyTorch threads per worker (default: 1 locally; --cpus-per-task with ray)",
    )
    sweep.add_argument(
        "--address",
        default=None,
        help="ray: the cluster to join, e.g. auto or HEAD:6379 (default: a local instance)",
    )
    sweep.add_argument(
        "--cpus-per-task", type=float, default=1.0, metavar="C", help="ray: CPUs per task (default: 1)"
    )
    sweep.add_argument(
        "--gpus-per-task", type=float, default=0.0, metavar="G", help="ray: GPUs per task (default: 0)"
    )
    sweep.add_argument(
        "--device", default="auto", help="auto (a CUDA GPU if the worker has one), cpu or cuda"
    )
    _data_dir(sweep)
    sweep.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="times to rerun a training whose worker died (default: 2)",
    )
    _training_options(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(command=_sweep)
    return parser


def _training_options(parser: argparse.ArgumentParser) -> None:
    """How trainings run, for `lth run` and `lth sweep` alike."""
    parser.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often a level under way saves its progress (default: 60)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        metavar="NAME",
        help="what computes the trainings: auto (the fastest bit-exact engine that applies) or a "
        "name from `lth engines`",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    """The options of `lth run`, which `lth instability` takes too (it runs the lottery first)."""
    parser.add_argument(
        "config", metavar="PRESET|FILE.toml", help="a preset name (see `lth presets`) or a file"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.lr=0.001 --set lottery.trials=2",
    )
    parser.add_argument("--out", default="runs", type=Path, help="where run directories go (default: ./runs)")
    _data_dir(parser)
    parser.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu or cuda")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="PyTorch threads (default: PyTorch's, one per core); numbers do not depend on it",
    )
    parser.add_argument(
        "--trials",
        type=_int_list,
        default=None,
        metavar="T1,T2,…",
        help="run only these trials (0-based; default: all of lottery.trials), e.g. one at a time",
    )
    _training_options(parser)
    parser.add_argument(
        "--tensorboard",
        type=Path,
        default=None,
        metavar="DIR",
        help="write TensorBoard event files to DIR, one stream per trial, variant and level, as each "
        "level finishes (default: $LTH_TENSORBOARD, else none; needs pip install 'lth[tensorboard]'); "
        "changes no number",
    )


def _run_dirs(parser: argparse.ArgumentParser, what: str, folder: str) -> None:
    """RUN_DIR … and --out, for a command that reads runs and writes `what` to a `folder`."""
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where {what} go (default: RUN_DIR/{folder} for one run, ./{folder} for several)",
    )


def _int_list(text: str) -> list[int]:
    """An option's numbers separated by commas, e.g. `0,3,7`; argparse reports a bad one."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"expected numbers separated by commas, e.g. 0,3,7; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data root (default: $LTH_DATA_DIR or ~/.cache/lth/data)"
    )


def _set_threads(threads: int) -> None:
    import torch

    from lth.errors import ConfigError

    if threads < 1:
        raise ConfigError(f"--threads must be 1 or more, got {threads}")
    torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from lth.api import run
    from lth.report import format_table

    config, options = _run_arguments(args)
    summary = run(config, **options)
    if not args.quiet:
        print(format_table(summary))
    print(f"results: {summary.attrs['run_dir']}")
    return 0


def _run_arguments(args: argparse.Namespace) -> tuple[Config, dict[str, Any]]:
    """The config and API keyword arguments that `_run_options` gives a command (threads are set
    here: they are the process's, not the API call's)."""
    from lth.config import resolve, with_overrides

    config = with_overrides(resolve(args.config), args.overrides)
    if args.threads is not None:
        _set_threads(args.threads)
    options = {
        "out": args.out,
        "data_dir": args.data_dir,
        "device": args.device,
        "progress": not args.quiet,
        "checkpoint_interval_s": args.checkpoint_every,
        "trials": args.trials,
        "engine": args.engine,
        "tensorboard": args.tensorboard,
    }
    return config, options


def _instability(args: argparse.Namespace) -> int:
    from lth.api import instability

    config, options = _run_arguments(args)
    levels = None if args.levels is None else _numbers("--levels", args.levels)
    table = instability(config, rewind=_numbers("--rewind", args.rewind), levels=levels, **options)
    if not args.quiet:
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"results: {table.attrs['run_dir']}")
    return 0


def _numbers(option: str, text: str) -> list[int]:
    """`_int_list` for a command that reports a bad value as one line, as `LthError`s are (argparse's
    own error prints the usage too)."""
    from lth.errors import ConfigError

    try:
        return _int_list(text)
    except argparse.ArgumentTypeError as err:
        raise ConfigError(f"{option}: {err}") from None


def _listing(rows: list[tuple[str, str]]) -> int:
    """`lth presets`, `lth variants`, `lth criteria`: one line per name, descriptions aligned."""
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from lth.config import load_preset, preset_names

    configs = [(name, load_preset(name)) for name in preset_names()]
    return _listing([(name, f"{c.description}  [{c.expected_runtime}]") for name, c in configs])


def _variants(args: argparse.Namespace) -> int:
    from lth.lottery import variants

    def line(v: variants.Variant) -> str:
        also = f"  [also named {', '.join(v.aliases)}]" if v.aliases else ""
        return v.description + ("  [trained when the strategy needs it]" if v.internal else also)

    return _listing([(v.name, line(v)) for v in variants.table()])


def _engines(args: argparse.Namespace) -> int:
    from lth.training.engines import ONE_MODEL

    exact = {True: "autograd's numbers bit for bit", False: "equal within rounding; only when named"}
    rows = [(name, f"{e.description}; any {e.needs}  [{exact[e.exact]}]") for name, e in ONE_MODEL.items()]
    return _listing(rows)


def _criteria(args: argparse.Namespace) -> int:
    from lth.pruning import criteria

    rows = [criteria.get(name) for name in criteria.names()]
    needs = {True: "scores the network on training batches", False: "weights only"}
    return _listing([(c.name, f"{c.description}  [{needs[c.needs_data]}]") for c in rows])


def _fetch(args: argparse.Namespace) -> int:
    from lth.data import fetch

    folder = fetch(args.name, args.data_dir)
    print(f"{args.name}: verified in {folder}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lth.report import build_report

    report = build_report(args.run_dirs, args.out, curve_levels=args.levels)
    print(report.to_json() if args.format == "json" else report.text())
    return 0


def _masks(args: argparse.Namespace) -> int:
    from lth.report.masks import write_masks

    print(write_masks(args.run_dirs, args.out, levels=args.levels).text())
    return 0


def _record(args: argparse.Namespace) -> int:
    from lth.record import write_record

    if args.check is not None:
        return _check_records(args.check)
    if args.run_dir is None or args.out is None:
        raise LthError("lth record needs RUN_DIR and --out DIR (or --check DIR to check a record)")
    record = write_record(args.run_dir, args.out, trials=args.trials)
    added = ", ".join(map(str, record.added)) or "none new"
    print(f"record {record.path}: trials {', '.join(map(str, record.trials))} (added: {added})")
    if record.unfinished:
        print(f"not finished yet, so not recorded: trials {', '.join(map(str, record.unfinished))}")
    return 0


def _check_records(folders: list[Path]) -> int:
    """`lth record --check`: one line per consistent folder, every problem of the others."""
    from lth.record import check_record

    failed = 0
    for folder in folders:
        problems = check_record(folder)
        failed += bool(problems)
        print(f"{folder}: " + ("consistent" if not problems else f"{len(problems)} problems"))
        print("".join(f"  {p}\n" for p in problems), end="")
    if failed:
        raise LthError(f"{failed} of {len(folders)} folders are inconsistent (listed above)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from lth.tickets import export_ticket, read_file

    path = export_ticket(
        args.run_dir,
        args.out,
        level=args.level,
        trial=args.trial,
        variant=args.variant,
        weights=args.weights,
        format=args.format,
    )
    pm = "" if args.format == "dense" else f", Pm {read_file(path).about.percent_remaining:.1f}%"
    print(f"{path}: {args.format}, {path.stat().st_size:,} bytes{pm}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from lth.errors import LthError
    from lth.sweep import cores, format_runs, format_tally, load_sweep, run_sweep, sweep_states, time_left_s
    from lth.sweep.progress import format_duration

    sweep = load_sweep(args.file, out=args.out)
    units = len(sweep.units)
    print(f"sweep {args.file}: {len(sweep.runs)} runs, {units} units (run × trial), results in {sweep.out}")
    if args.dry_run or args.status:
        states = sweep_states(sweep, timings=args.status)
        print("\n".join(format_runs(sweep, states)))
        print(format_tally(states))
        if args.status:
            parallel = args.workers or cores()
            left = time_left_s(states, parallel)
            if left is not None and any(not s.done and s.failure is None for s in states):
                print(
                    f"about {format_duration(left)} left, {parallel} units at a time (from the stored times)"
                )
            for s in states:
                if s.state == "failed":
                    print(f"failed: {s.unit.name}: {s.failure.get('error', '?')}")
        return 0
    result = run_sweep(
        sweep,
        backend=args.backend,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        address=args.address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        device=args.device,
        data_dir=args.data_dir,
        retries=args.retries,
        checkpoint_interval_s=args.checkpoint_every,
        engine=args.engine,
        progress_bar=not args.quiet,
    )
    states = sweep_states(sweep)
    print("\n".join(format_runs(sweep, states)))
    print(format_tally(states))
    for unit, error in result.failed:
        print(f"failed: {unit.name}: {error}")
    if result.failed:
        raise LthError(
            f"{len(result.failed)} of {units} units failed (listed above); fix the cause and run the same "
            "command again to finish the sweep"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
