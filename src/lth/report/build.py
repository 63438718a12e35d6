"""`lth report`: one or more run directories → aggregate.csv, figures, report.md and report.html.

Reading, computing and drawing are separate modules; this one ties them together and decides
where things go: `RUN_DIR/report/` for one run, `./report` (or `--out`) for several.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lth.errors import StoreError
from lth.report import compare
from lth.report import paper as published
from lth.report.aggregate import aggregate, sort_rows
from lth.report.figures import FigureFile, render_all
from lth.report.findings import Findings, compute_findings
from lth.report.load import RunData, describe_missing, engine_lines, read_run
from lth.report.table import format_table

DEFAULT_MULTI_OUT = Path("report")


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

    @property
    def expected_rows(self) -> int:
        lot = self.run.config.lottery
        return lot.trials * len(lot.variants) * (lot.levels + 1)


@dataclass
class Report:
    runs: list[RunReport]
    out: Path
    differing_keys: list[str] = field(default_factory=list)
    figures: list[FigureFile] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def aggregate(self) -> pd.DataFrame:
        return sort_rows(pd.concat([r.aggregate for r in self.runs], ignore_index=True))

    def to_dict(self) -> dict[str, Any]:
        """What `--format json` prints: the aggregate and the findings, for scripts."""
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
                    }
                    for r in self.runs
                ],
                "aggregate": self.aggregate.to_dict(orient="records"),
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
            blocks.append("\n".join(lines))
        where = self.files.get("html")
        if where is not None:
            blocks.append(f"report: {where}")
        return "\n\n".join(blocks)


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    return Path(run_dirs[0]) / "report" if len(run_dirs) == 1 else DEFAULT_MULTI_OUT


def load_runs(run_dirs: Sequence[str | Path]) -> list[RunData]:
    """Read each run once (the same directory named twice is one run) and label them."""
    unique = list(dict.fromkeys(Path(d).resolve() if Path(d).exists() else Path(d) for d in run_dirs))
    runs = [read_run(d) for d in unique]
    names = [r.name for r in runs]
    for run, label in zip(runs, compare.labels([r.config for r in runs], names), strict=True):
        run.label = label
    return runs


def analyse(run: RunData) -> RunReport:
    iterations = run.iterations()
    findings = compute_findings(run.summary, iterations)
    table = aggregate(run.summary, run=run.label)
    table.insert(1, "run_dir", str(run.path))
    return RunReport(
        run=run,
        aggregate=table,
        findings=findings,
        paper=published.compare(run.config, run.summary, iterations),
        near_misses=[] if published.match_experiment(run.config) else published.near_misses(run.config),
        missing=describe_missing(run),
        iterations=iterations,
    )


def build_report(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    curve_levels: Sequence[int] | None = None,
) -> Report:
    """Read the runs, compute the findings, and write aggregate.csv, figures and the page to `out`."""
    from lth.report.page import relative, write_pages  # the page imports this module's types

    if not run_dirs:
        raise StoreError("no run directory given: name one or more, e.g. `lth report runs/lenet300-mnist-…`")
    runs = load_runs(run_dirs)
    report = Report(
        runs=[analyse(r) for r in runs],
        out=Path(out) if out is not None else default_out(run_dirs),
        differing_keys=compare.differing_keys([r.config for r in runs]) if len(runs) > 1 else [],
    )
    _writable(report.out)
    report.files["aggregate"] = report.out / "aggregate.csv"
    table = report.aggregate  # naming each run's directory as the page does: from the report's folder
    table["run_dir"] = [relative(Path(p), report.out) for p in table.run_dir]
    table.to_csv(report.files["aggregate"], index=False)
    report.figures = render_all([r.run for r in report.runs], report.aggregate, report.out, curve_levels)
    report.files.update(write_pages(report))
    return report


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise StoreError(
            f"cannot write the report to {out} ({err.strerror}); choose another with --out DIR"
        ) from None


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
