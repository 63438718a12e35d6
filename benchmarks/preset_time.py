"""The `lenet-mnist` preset's wall time on W workers, projected from whole measured levels:

    .venv/bin/python benchmarks/preset_time.py RECORD --trial T --levels LEVELS.json [--workers 2]

RECORD is a committed record (`docs/reproductions/lenet-mnist`): its environment.json holds each
training's wall time, trained by the fused engine. LEVELS.json is a `benchmarks/run.py --only
levels` result: the fused ÷ sparse ratio of a whole level at each level the sparse engine
computes. A trial under `--engine sparse` takes the record trial's time at the other levels
(there the sparse engine runs the fused one's code) and that time ÷ the ratio at these. A sweep
hands out every training once the level before is stored (sweep/pieces.py), so W workers finish
the trials' work in its total ÷ W plus at most the longest training.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("record", type=Path)
    parser.add_argument("--trial", type=int, required=True, help="the record's trial whose times to use")
    parser.add_argument("--levels", type=Path, required=True, help="benchmarks/run.py --only levels JSON")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    environment = json.loads((args.record / "environment.json").read_text())
    trials = json.loads((args.record / "record.json").read_text())["trials"]
    walls: dict[int, list[float]] = defaultdict(list)
    for training in environment["trainings"]:
        if training["trial"] == args.trial:
            walls[training["level"]].append(training["wall_time_s"])
    benchmark = json.loads(args.levels.read_text())
    if benchmark["meta"]["quick"]:
        parser.error(f"{args.levels} is a --quick run, which times only some of the sparse levels")
    measured = benchmark["results"]["levels"]["levels"]
    ratio = {int(level): m["fused_over_sparse"]["median"] for level, m in measured.items()}

    print(f"{args.record}, trial {args.trial} (fused), and {args.levels} (fused ÷ sparse per level)")
    print("level  trainings  fused s  ratio  sparse s")
    fused = sparse = 0.0
    for level in sorted(walls):
        f = sum(walls[level])
        s = f / ratio.get(level, 1.0)
        fused, sparse = fused + f, sparse + s
        print(f"{level:5d}  {len(walls[level]):9d}  {f:7.0f}  {ratio.get(level, 1.0):5.2f}  {s:8.0f}")
    longest = max(max(w) for w in walls.values())
    n = len(trials)
    for name, trial in (("fused", fused), ("sparse", sparse)):
        total = n * trial
        print(
            f"{name}: a trial {trial / 3600:.2f} h; {n} trials on {args.workers} workers "
            f"{total / args.workers / 3600:.2f} h to {(total / args.workers + longest) / 3600:.2f} h"
        )


if __name__ == "__main__":
    main()
