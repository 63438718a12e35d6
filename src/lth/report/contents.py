"""What a report says, per run and over all runs: `build.py` fills it in, `page.py` writes it out,
and `lth report` prints its text or JSON. Its own module, so that the page and the builder both
import it and neither imports the other.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lth.report import paper as published
from lth.report.aggregate import sort_rows
from lth.report.figures import FigureFile
from lth.report.findings import Findings
from lth.report.load import RunData, engine_lines, record_line
from lth.report.paired import Paired
from lth.report.stability import Stability
from lth.report.table import format_table

if TYPE_CHECKING:
    from lth.analysis.masks import MaskAnalysis
    from lth.report.at_init import AtInit


@dataclass
class RunReport:
    """Everything the page says about one run."""

    run: RunData
    aggregate: pd.DataFrame
    findings: Findings
    paper: published.PaperComparison | None
    near_misses: list[str]
    missing: list[str]  # one line per trial with missing work
    iterations: int | None
    stability: Stability | None = None  # instability results, where the run measured some

    @property
    def expected_rows(self) -> int:
        lot = self.run.config.lottery
        return lot.trials * len(lot.variants) * (lot.levels + 1)


@dataclass
class Report:
    runs: list[RunReport]
    out: Path
    differing_keys: list[str] = field(default_factory=list)
    at_init: AtInit | None = None  # where runs prune at initialization (report/at_init.py)
    masks: MaskAnalysis | None = None  # of the runs that store masks (not records): the "Masks" section
    paired: list[Paired] = field(default_factory=list)  # later runs against the first, trial by trial
    figures: list[FigureFile] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def aggregate(self) -> pd.DataFrame:
        return sort_rows(pd.concat([r.aggregate for r in self.runs], ignore_index=True))

    def to_dict(self) -> dict[str, Any]:
        """What `--format json` prints: the aggregate, the findings and the mask analysis, for
        scripts."""
        return _json_ready(
            {
                "out": str(self.out),
                "files": {k: str(v) for k, v in self.files.items()},
                "differing_keys": self.differing_keys,
                "runs": [
                    {
                        "label": r.run.label,
                        "path": str(r.run.path),
                        "complete": r.run.complete,
                        "missing": r.missing,
                        "iterations": r.iterations,
                        "findings": r.findings.to_dict(),
                        "paper": r.paper.to_dict() if r.paper else None,
                        "notes": r.run.notes,
                        "engines": r.run.engines,
                        "mixed_trials": r.run.mixed_trials,
                        "record": r.run.record,
                        "stability": r.stability.to_dict() if r.stability else None,
                    }
                    for r in self.runs
                ],
                "aggregate": self.aggregate.to_dict(orient="records"),
                "masks": self.masks.to_dict() if self.masks else None,  # the page's "Masks" section
                "paired": [p.to_dict() for p in self.paired],
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    def text(self) -> str:
        """What `lth report` prints: per run the table, the findings, and where the page is."""
        blocks = []
        for r in self.runs:
            lines = [f"== {r.run.label} ==" if len(self.runs) > 1 else f"== {r.run.path} =="]
            if len(self.runs) > 1:
                lines.append(str(r.run.path))
            if (record := record_line(r.run)) is not None:
                lines.append(record)
            if r.missing:
                lines.append(
                    f"partial run: {len(r.run.summary)} of {r.expected_rows} results stored; missing:"
                )
                lines += [f"  {m}" for m in r.missing]
            lines += ["", format_table(r.run.summary), ""]
            lines += [f"- {s}" for s in r.findings.sentences()]
            lines += [f"- {line}." for line in engine_lines(r.run)]
            if r.paper is not None:
                counts = Counter(c.verdict for c in r.paper.checks)
                tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
                lines.append(f"- Against the paper ({r.paper.title}): {tally}.")
                if r.paper.shortened:
                    lines.append(
                        f"  Shortened run: {r.paper.iterations:,} training iterations per level, the paper "
                        f"{r.paper.paper_iterations:,}; not comparable one-for-one."
                    )
            if r.stability is not None and r.stability.checks:
                counts = Counter(c.verdict for c in r.stability.checks)
                tally = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
                lines.append(f"- Stability to SGD noise ({r.stability.experiment['title']}): {tally}.")
            blocks.append("\n".join(lines))
        if self.paired:
            blocks.append("\n".join(f"- {s}" for p in self.paired for s in p.sentences()))
        where = self.files.get("html")
        if where is not None:
            blocks.append(f"report: {where}")
        return "\n\n".join(blocks)


def _json_ready(value: Any) -> Any:
    """NaN → null and numpy scalars → numbers, so the JSON is standard."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
