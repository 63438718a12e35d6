"""Benchmark group: a LeNet-300-100 run's tickets, dense against sparse, per level of trial 0's IMP.

Per level: the file `lth export` writes (`--format dense` against `--format sparse`), and
inference on MNIST test images at batch 1 (latency) and batch 1,000 (throughput) of the dense
network with zeros in place (the ticket after `prune.remove`: what one would deploy densely)
against `lth.sparse_model` of it (CSR products in every Linear layer, as one `SparseMLP`),
interleaved turn by turn; at batch 1 also both models traced and frozen by TorchScript, which
leaves out Python's cost per call (the eager forward's fixed cost hides part of what the sparse
products save).
Then the break-even Pm (the densest level from which every sparser level is faster) and the
issue's targets at Pm ≤ 3.6%: batch 1 ≥ 2× faster, file ≤ 8% of the dense one.

The run is `--run-dir` (e.g. the paper-scale record run), else a quick one made here once
(100 iterations a level, 15 levels, the ticket only; accuracy does not matter to speed).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

import lth
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth import data as lth_data
from lth import layout
from lth.tickets.source import finished_levels
from timing import Case, interleaved, ratios

QUICK_RUN = Path(__file__).resolve().parent / "results" / "tickets-run"
BATCHES = (1, 1000)
TARGET_PM, TARGET_SPEEDUP, TARGET_FILE = 3.6, 2.0, 0.08  # issue 13


def _quick_run(ctx: Context) -> Path:
    ctx.log(f"tickets: no --run-dir, so a quick LeNet run under {QUICK_RUN} (made once)")
    overrides = [
        "training.steps='100it'",
        "training.eval_every='100it'",
        "lottery.levels=15",
        "lottery.variants=['imp']",
    ]
    summary = lth.run("lenet-mnist-quick", overrides=overrides, out=QUICK_RUN, progress=False, device="cpu")
    return Path(summary.attrs["run_dir"])


def _dense(ticket: nn.Module) -> nn.Module:
    """The ticket as a plain network, zeros in place, no pruning hook."""
    net = copy.deepcopy(ticket)
    for module in net.modules():
        masked = [
            n.removesuffix("_mask") for n, _ in module.named_buffers(recurse=False) if n.endswith("_mask")
        ]
        for name in masked:
            prune.remove(module, name)
    return net.eval()


def _traced(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """`model` traced and frozen by TorchScript for inputs shaped like `x`: the same products
    without Python's cost per layer (what the dense and sparse models differ by is then the
    products alone)."""
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the tracer's note that SparseLinear's branch is fixed by x
        return torch.jit.freeze(torch.jit.trace(model, x))


def _forwards(model: nn.Module, x: torch.Tensor, n: int) -> Case:
    def run(_: object) -> None:
        with torch.inference_mode():
            for _ in range(n):
                model(x)

    return Case(run=run)


def _sizes(run: Path, level: int, folder: Path) -> dict[str, int]:
    return {
        f: lth.export_ticket(run, folder / f"{f}.safetensors", level=level, format=f).stat().st_size
        for f in ("dense", "sparse")
    }


def _break_even(levels: list[dict[str, Any]], key: str) -> float | None:
    """The highest Pm from which sparse wins (ratio > 1) at every sparser level; None if never."""
    best = None
    for level in sorted(levels, key=lambda r: r["pm"]):  # sparsest first
        if level[key]["median"] <= 1:
            break
        best = level["pm"]
    return best


def run(ctx: Context) -> GroupResult:
    run_dir = Path(ctx.run_dir) if ctx.run_dir else _quick_run(ctx)
    config = layout.read_config(run_dir)
    x_all = lth_data.load(config.data.dataset).test.x
    repeats = 3 if ctx.quick else 5
    counts = {1: 50 if ctx.quick else 200, 1000: 2 if ctx.quick else 5}  # forwards per turn
    rows: list[Row] = []
    data: dict[str, Any] = {
        "run": str(run_dir),
        "repeats": repeats,
        "forwards_per_turn": counts,
        "levels": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        for level in finished_levels(run_dir, 0, layout.TICKET):
            ticket = lth.load_ticket(run_dir, level=level)
            pm = lth.tickets.read_level(run_dir, level).about.percent_remaining
            ctx.log(f"tickets: level {level}, Pm {pm:.1f}%")
            sizes = _sizes(run_dir, level, Path(folder))
            dense, sparse = _dense(ticket), lth.sparse_model(ticket)
            cases: dict[str, Case] = {}
            for batch in BATCHES:
                x = x_all[:batch].contiguous()
                cases[f"dense {batch}"] = _forwards(dense, x, counts[batch])
                cases[f"sparse {batch}"] = _forwards(sparse, x, counts[batch])
            x = x_all[:1].contiguous()
            cases["dense traced"] = _forwards(_traced(dense, x), x, counts[1])
            cases["sparse traced"] = _forwards(_traced(sparse, x), x, counts[1])
            samples = interleaved(cases, repeats, warmup=1)
            seconds = {name: s.seconds for name, s in samples.items()}
            entry: dict[str, Any] = {"level": level, "pm": pm, "bytes": sizes, "seconds_per_turn": seconds}
            entry["file_fraction"] = sizes["sparse"] / sizes["dense"]
            rows.append(
                Row(
                    f"Pm {pm:.1f}%: sparse file ÷ dense file",
                    f"{100 * entry['file_fraction']:.1f}%",
                    f"{sizes['sparse']:,} vs {sizes['dense']:,} bytes",
                )
            )
            for batch in BATCHES:
                speed = ratios(seconds[f"dense {batch}"], seconds[f"sparse {batch}"])
                entry[f"speedup_{batch}"] = speed.as_dict()
                per = {k: min(seconds[f"{k} {batch}"]) / counts[batch] for k in ("dense", "sparse")}
                what = "latency" if batch == 1 else "throughput"
                context = (
                    f"dense {seconds_text(per['dense'])}, sparse {seconds_text(per['sparse'])} a forward"
                    if batch == 1
                    else f"dense {batch / per['dense']:,.0f}/s, sparse {batch / per['sparse']:,.0f}/s"
                )
                label = f"Pm {pm:.1f}%: batch {batch:,} {what}, sparse speed-up"
                rows.append(Row(label, spread_text(speed.median, speed.low, speed.high), context))
            traced = ratios(seconds["dense traced"], seconds["sparse traced"])
            entry["speedup_1_traced"] = traced.as_dict()
            per = {k: min(seconds[f"{k} traced"]) / counts[1] for k in ("dense", "sparse")}
            rows.append(
                Row(
                    f"Pm {pm:.1f}%: batch 1, both TorchScript-traced, sparse speed-up",
                    spread_text(traced.median, traced.low, traced.high),
                    f"dense {seconds_text(per['dense'])}, sparse {seconds_text(per['sparse'])} a forward",
                )
            )
            data["levels"].append(entry)
    rows += _summary(data["levels"])
    data["break_even_pm"] = {str(b): _break_even(data["levels"], f"speedup_{b}") for b in BATCHES}
    title = f"tickets: LeNet-300-100 ({run_dir.name}, trial 0, imp), dense vs sparse export and inference"
    return GroupResult(title=title, rows=rows, data=data)


def _summary(levels: list[dict[str, Any]]) -> list[Row]:
    """Break-even Pm per batch and for the file, and the issue's targets at the sparsest level."""
    rows = []
    fmt: Callable[[float | None], str] = lambda pm: "never" if pm is None else f"Pm ≤ {pm:.1f}%"  # noqa: E731
    for batch in BATCHES:
        rows.append(
            Row(f"sparse faster at batch {batch:,} from", fmt(_break_even(levels, f"speedup_{batch}")))
        )
    smaller = [lv["pm"] for lv in levels if lv["file_fraction"] < 1]
    rows.append(Row("sparse file smaller from", fmt(max(smaller) if smaller else None), "formula: Pm < 2/3"))
    at_target = [lv for lv in levels if lv["pm"] <= TARGET_PM + 0.05]
    if at_target:
        lv = min(at_target, key=lambda r: r["pm"])
        speed, file = lv["speedup_1"]["median"], lv["file_fraction"]
        rows.append(
            Row(
                f"target at Pm {lv['pm']:.1f}%: batch 1 ≥ {TARGET_SPEEDUP:.0f}×",
                "met" if speed >= TARGET_SPEEDUP else "not met",
                f"{speed:.2f}×",
            )
        )
        rows.append(
            Row(
                f"target at Pm {lv['pm']:.1f}%: file ≤ {100 * TARGET_FILE:.0f}%",
                "met" if file <= TARGET_FILE else "not met",
                f"{100 * file:.1f}%",
            )
        )
    return rows
