"""Benchmark group: whole LeNet-300-100 levels of the `lenet-mnist` preset, fused against sparse.

A level's training as `lth run lenet-mnist` runs it (`lth.training.train` with the preset's
training config: 50,000 iterations, validation every 100, the test set at each new validation
minimum), under the mask of the level's Pm (the paper's rates on θ0's magnitudes), by the fused
engine and by the sparse one (`--engine sparse`), in turns. At the levels where the sparse engine
defers to the fused one (no layer at ≤ 10% density) both run the same code, so only the sparse
levels are timed. `--quick` trains 5,000 iterations a turn. The preset's whole time is projected
from these ratios and the record's per-level wall times (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import copy
import dataclasses

import workloads
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth.config import load_preset
from lth.training import train
from lth.training.engines import engine_for
from timing import Case, interleaved, ratios

LEVELS = (11, 12, 13, 14, 15)  # Pm 8.7, 7.0, 5.6, 4.5, 3.6%: every level the sparse engine computes


def run(ctx: Context) -> GroupResult:
    ctx.log("levels: loading MNIST")
    workload = workloads.lenet_mnist(device=ctx.device)
    splits, model = workload.splits, workload.fresh_model()
    config = load_preset("lenet-mnist").training
    if ctx.quick:
        config = dataclasses.replace(config, steps="5000it")
    levels, repeats = (LEVELS[1::2], 2) if ctx.quick else (LEVELS, 2)
    rows, data = [], {"steps": config.steps, "repeats": repeats, "levels": {}}
    for level in levels:
        mask = workload.masked_at(level).mask
        pm = 100 * mask.fraction_remaining()
        assert engine_for("sparse", model, mask) == "sparse", f"level {level} would not run sparse"
        ctx.log(f"levels: level {level}, Pm {pm:.1f}%")

        def case(engine: str, mask=mask) -> Case:
            return Case(
                setup=lambda: copy.deepcopy(model),
                run=lambda m: train(m, splits, config, seed=0, mask=mask, engine=engine),
            )

        samples = interleaved({"fused": case("fused"), "sparse": case("sparse")}, repeats, warmup=0)
        seconds = {name: s.seconds for name, s in samples.items()}
        speedup = ratios(seconds["fused"], seconds["sparse"])
        fused_s, sparse_s = (min(seconds[k]) for k in ("fused", "sparse"))
        rows.append(
            Row(
                f"level {level}, Pm {pm:.1f}%: fused ÷ sparse, a whole level",
                spread_text(speedup.median, speedup.low, speedup.high),
                f"fused {seconds_text(fused_s)}, sparse {seconds_text(sparse_s)} (fastest turn)",
            )
        )
        data["levels"][str(level)] = {
            "percent_remaining": pm,
            "seconds_per_turn": seconds,
            "fused_over_sparse": speedup.as_dict(),
        }
    title = f"levels: {workload.description}, the lenet-mnist preset's training ({config.steps} a turn)"
    return GroupResult(title=title, rows=rows, data=data)
