"""Benchmark group: issue 16's end-to-end race at the late levels, where `--engine sparse` works.

The `lenet` group races lth against the plain masked loop (DataLoader, `torch.nn.utils.prune`,
`torch.optim.Adam`) at Pm 51.3%, where no dense fp32 engine can beat the bare products by much
(benchmarks/RESULTS.md, "End to end against the arithmetic floor"). At IMP's late levels the
sparse engine computes less than the dense products, in its steps and in its evaluations, which
use its CSR layers too; the plain loop computes them all. Same protocol as `lenet`'s like-for-like
run: 5,000 iterations, validation (5K) and test (10K) every 100 and a final training-set pass, in
interleaved turns of the plain loop, lth's default engine (fused) and `--engine sparse`.
"""

from __future__ import annotations

import workloads
from comparison import lth_case, plain_case
from core import Context, GroupResult, Row, spread_text
from timing import interleaved, ratios

ROUNDS = (12, 15)  # IMP levels 12 and 15 at the paper's rates: Pm 7.0% and 3.6%
ENGINES = ("fused", "sparse")
MIN_ACCURACY = 0.9  # what 5,000 iterations of LeNet reach at these levels, by any of the three


def run(ctx: Context) -> GroupResult:
    ctx.log("sparse-e2e: loading MNIST")
    workload = workloads.lenet_mnist(device=ctx.device)
    steps, repeats = (1000, 2) if ctx.quick else (5000, 3)
    every = workload.eval_every
    rows, data = [], {"steps": steps, "eval_every": every, "repeats": repeats, "levels": {}}
    for rounds in ROUNDS:
        at = workload.masked_at(rounds)
        pm = 100 * at.mask.fraction_remaining()
        ctx.log(f"sparse-e2e: Pm {pm:.1f}%, {steps} steps, × {repeats}")
        cases = {"plain": plain_case(at, at.splits, steps, every)}
        cases |= {engine: lth_case(at, at.splits, steps, every, engine=engine) for engine in ENGINES}
        samples = interleaved(cases, repeats)
        seconds = {name: s.seconds for name, s in samples.items()}
        records = {name: s.last_output.record() for name, s in samples.items()}
        level = {"percent_remaining": pm, "seconds_per_turn": seconds, "records": records}
        for engine in ENGINES:
            speedup = ratios(seconds["plain"], seconds[engine])  # steps/s of lth ÷ steps/s of plain
            level[f"{engine}_over_plain_throughput"] = speedup.as_dict()
            rows.append(
                Row(
                    f"Pm {pm:.1f}%: lth ({engine}) steps/s ÷ plain, like for like",
                    spread_text(speedup.median, speedup.low, speedup.high),
                    f"plain {steps / min(seconds['plain']):.0f}, {engine} {steps / min(seconds[engine]):.0f} "
                    "steps/s (fastest turn)",
                )
            )
        accuracy = [records[name]["final_test_accuracy"] for name in cases]
        verdict = "ok" if min(accuracy) >= MIN_ACCURACY else f"BELOW {MIN_ACCURACY:.0%}"
        rows.append(
            Row(
                f"Pm {pm:.1f}%: check: final test accuracy, {' / '.join(cases)} (each really trains)",
                " / ".join(f"{a:.2%}" for a in accuracy),
                verdict,
            )
        )
        data["levels"][f"{pm:.1f}"] = level
    title = (
        f"sparse-e2e: {workload.description}, {steps:,} steps, val {len(workload.splits.val):,} + "
        f"test {len(workload.splits.test):,} every {every}"
    )
    return GroupResult(title=title, rows=rows, data=data)
