"""The `lth` command line (also `python -m lth`). Exit 0 on success; on failure, one line on
stderr naming what is wrong and how to fix it, and a non-zero status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lth.errors import LthError


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
    run.add_argument("config", metavar="PRESET|FILE.toml", help="a preset name (see `lth presets`) or a file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.lr=0.001 --set lottery.trials=2",
    )
    run.add_argument("--out", default="runs", type=Path, help="where run directories go (default: ./runs)")
    _data_dir(run)
    run.add_argument("--device", default="auto", help="auto (a CUDA GPU if there is one), cpu or cuda")
    run.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    run.add_argument(
        "--checkpoint-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how often a level under way saves its progress (default: 60)",
    )
    run.set_defaults(command=_run)

    presets = sub.add_parser("presets", help="list the presets")
    presets.set_defaults(command=_presets)

    data = sub.add_parser("data", help="data sets")
    data_sub = data.add_subparsers(required=True, metavar="ACTION")
    fetch = data_sub.add_parser("fetch", help="download and verify a data set")
    fetch.add_argument("name", help="mnist, fashion-mnist or cifar10")
    _data_dir(fetch)
    fetch.set_defaults(command=_fetch)

    report = sub.add_parser("report", help="summarise a run directory")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    report.set_defaults(command=_report)
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data root (default: $LTH_DATA_DIR or ~/.cache/lth/data)"
    )


def _run(args: argparse.Namespace) -> int:
    from lth.api import run
    from lth.config import resolve, with_overrides
    from lth.report import format_table

    config = with_overrides(resolve(args.config), args.overrides)
    summary = run(
        config,
        out=args.out,
        data_dir=args.data_dir,
        device=args.device,
        progress=not args.quiet,
        checkpoint_interval_s=args.checkpoint_every,
    )
    if not args.quiet:
        print(format_table(summary))
    print(f"results: {summary.attrs['run_dir']}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from lth.config import load_preset, preset_names

    rows = [(name, load_preset(name)) for name in preset_names()]
    width = max(len(name) for name, _ in rows)
    for name, config in rows:
        print(f"{name:<{width}}  {config.description}  [{config.expected_runtime}]")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from lth.data import fetch

    folder = fetch(args.name, args.data_dir)
    print(f"{args.name}: verified in {folder}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from lth.report import format_table, read_summary

    print(format_table(read_summary(args.run_dir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
