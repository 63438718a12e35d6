"""Benchmark group: lth's one-model engines on LeNet-300-100 / MNIST, step by step, at several Pm.

Per sparsity, turns of: the autograd engine's step, the fused engine's step, the sparse engine's
step (survivors-only optimiser, CSR products where `fused.sparse_pays`), the fused engine's step
on the dense network (the cost a ticket's should fall from), and the bare products of a dense step
(three forward products, three weight gradients and two input gradients at LeNet's shapes,
nothing else). Each turn is `steps` steps of one engine; ratios are taken per turn.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable

import bare as products
import workloads
from core import Context, GroupResult, Row, seconds_text, spread_text
from lth.config import TrainingConfig
from lth.training.autograd import OneModel
from lth.training.fused import FusedMLP
from timing import Case, interleaved, ratios

ROUNDS = (0, 3, 7, 12, 15)  # Pm 100, 51.3, 21.1, 7.0 and 3.6% under the paper's rates


def _steps(make: Callable[[], object], steps: int) -> Case:
    def run(engine) -> None:
        for it in range(steps):
            engine.step(it, 1.2e-3)

    return Case(run=run, setup=make)


def run(ctx: Context) -> GroupResult:
    ctx.log("engines: loading MNIST")
    workload = workloads.lenet_mnist(device=ctx.device)
    splits, model = workload.splits, workload.fresh_model()
    config = TrainingConfig(optimizer="adam", lr=1.2e-3, batch_size=workload.batch_size)
    steps, repeats = (100, 3) if ctx.quick else (300, 5)
    sizes = products.layer_sizes(model)
    rows, data = [], {"steps_per_turn": steps, "repeats": repeats, "levels": {}}
    for rounds in ROUNDS:
        mask = workload.masked_at(rounds).mask
        pm = 100 * mask.fraction_remaining()
        ctx.log(f"engines: Pm {pm:.1f}%")

        def engine(kind: str, mask=mask) -> Callable[[], object]:
            def make() -> object:
                m = copy.deepcopy(model)
                if kind == "autograd":
                    return OneModel(m, splits, config, seed=0, mask=mask, augment=False)
                if kind == "dense":
                    return FusedMLP(m, splits, config, seed=0, mask=None, augment=False)
                sparse = kind == "sparse"
                return FusedMLP(
                    m, splits, config, seed=0, mask=mask, augment=False, survivors=sparse, sparse=sparse
                )

            return make

        kinds = ("autograd", "fused", "sparse", "dense")
        cases = {kind: _steps(engine(kind), steps) for kind in kinds}
        bare = products.training_step(workload.batch_size, sizes)
        cases["products"] = Case(run=lambda _, bare=bare: [bare() for _ in range(steps)])
        samples = interleaved(cases, repeats, warmup=1)
        seconds = {name: s.seconds for name, s in samples.items()}
        speedup = ratios(seconds["autograd"], seconds["fused"])
        over_products = ratios(seconds["fused"], seconds["products"])
        sparse = ratios(seconds["fused"], seconds["sparse"])
        falls = ratios(seconds["dense"], seconds["sparse"])
        per_step = {name: statistics.median(v) / steps for name, v in seconds.items()}
        measured = [
            (
                "autograd ÷ fused step time",
                speedup,
                f"{seconds_text(per_step['autograd'])} vs {seconds_text(per_step['fused'])} per step",
            ),
            (
                "fused step ÷ a dense step's bare products",
                over_products,
                f"products {seconds_text(per_step['products'])} per step",
            ),
            (
                "fused ÷ sparse engine step time",
                sparse,
                f"sparse {seconds_text(per_step['sparse'])} per step",
            ),
            (
                "dense network's fused step ÷ sparse engine step",
                falls,
                f"dense {seconds_text(per_step['dense'])} per step",
            ),
        ]
        rows += [
            Row(f"Pm {pm:.1f}%: {label}", spread_text(spread.median, spread.low, spread.high), context)
            for label, spread, context in measured
        ]
        data["levels"][f"{pm:.1f}"] = {
            "rounds": rounds,
            "seconds_per_turn": seconds,
            "autograd_over_fused": speedup.as_dict(),
            "fused_over_products": over_products.as_dict(),
            "fused_over_sparse": sparse.as_dict(),
            "dense_over_sparse": falls.as_dict(),
        }
    return GroupResult(title=f"engines: {workload.description}, {steps} steps a turn", rows=rows, data=data)
