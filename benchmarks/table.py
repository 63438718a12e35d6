"""The printed table: one section per benchmark group, the ratio column first in the eye."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core import GroupResult

HEADER = ("measure", "ratio", "context (absolute: noisy, for scale only)")


def render(results: Mapping[str, GroupResult], meta: Mapping[str, Any]) -> str:
    rows = [row for result in results.values() for row in result.rows]
    width = max([len(HEADER[0])] + [len(row.measure) for row in rows])
    value_width = max([len(HEADER[1])] + [len(row.value) for row in rows])

    def line(measure: str, value: str, context: str) -> str:
        return f"  {measure:<{width}}  {value:>{value_width}}  {context}".rstrip()

    threads = meta.get("torch_threads")
    load = meta.get("load_average_start"), meta.get("load_average_end")
    commit = (meta.get("commit") or "unknown")[:12] + (
        " (+ uncommitted changes)" if meta.get("modified") else ""
    )
    quick = " (--quick)" if meta.get("quick") else ""
    out = [
        f"lth benchmarks{quick}: commit {commit}, torch {meta.get('torch')}, {threads} thread(s), "
        f"{meta.get('cpu')}",
        f"took {meta.get('wall_s')} s; load average (1, 5, 15 min) at start {load[0]}, at end {load[1]}",
        "ratios compare runs measured side by side (interleaved); (low–high) is the range over repeats",
    ]
    for name, result in results.items():
        out += ["", f"[{name}] {result.title}", line(*HEADER), line("-" * width, "-" * value_width, "-" * 10)]
        out += [line(row.measure, row.value, row.context) for row in result.rows]
    return "\n".join(out)
