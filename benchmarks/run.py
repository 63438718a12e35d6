"""Benchmarks of lth against a plain PyTorch loop: `make bench`, or

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...] [--threads N] [--out PATH]
                                       [--run-dir RUN_DIR]

Prints a table of ratios measured side by side in this run (absolute times only as context:
the machine is shared and noisy) and writes everything measured, with what was run and on
what, as JSON (default benchmarks/results/latest.json).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import conv2_cifar
import conv2_profile
import engines
import environment
import lenet_mnist
import levels
import replicas
import sparse_end_to_end
import sums
import tickets
from core import Context, GroupResult
from table import render

# A benchmark group is a function Context -> GroupResult; adding one is one entry here.
# They run in this order.
BENCHMARKS: dict[str, Callable[[Context], GroupResult]] = {
    "lenet": lenet_mnist.run,
    "conv2": conv2_cifar.run,
    "conv2-profile": conv2_profile.run,
    "replicas": replicas.run,
    "sums": sums.run,
    "engines": engines.run,
    "levels": levels.run,
    "sparse-e2e": sparse_end_to_end.run,
    "tickets": tickets.run,
}

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs: fewer steps and repeats in every group"
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"the JSON results (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only these: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--threads", type=int, help="PyTorch threads for everything (default: PyTorch's default)"
    )
    parser.add_argument(
        "--device", default="cpu", help="where both implementations run: cpu (default), cuda or cuda:N"
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="tickets: a LeNet run directory to read (default: a quick run made once for it)",
    )
    return parser.parse_args(argv)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            sys.exit("--threads must be at least 1")
        torch.set_num_threads(args.threads)  # before any work, so both implementations share it
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: no CUDA GPU is available")
    if device.type == "cuda":
        # What `lth run --device cuda` sets: the same kernels every run.
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    ctx = Context(quick=args.quick, device=device, run_dir=args.run_dir)
    names = args.only or list(BENCHMARKS)
    meta = environment.describe() | {"quick": args.quick, "argv": argv or sys.argv[1:], "benchmarks": names}
    meta["device"] = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
    meta["load_average_start"] = environment.load_average()
    start = time.monotonic()
    results: dict[str, GroupResult] = {}
    for name in names:
        results[name] = BENCHMARKS[name](ctx)
    meta["wall_s"] = round(time.monotonic() - start, 1)
    meta["load_average_end"] = environment.load_average()

    print(render(results, meta))
    document = {
        "meta": meta,
        "results": {
            name: {"title": r.title, "table": [asdict(row) for row in r.rows], **r.data}
            for name, r in results.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_json_safe(document), indent=2, ensure_ascii=False) + "\n")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
