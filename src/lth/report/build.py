"""`lth report`: one or more run directories → aggregate.csv, figures, report.md and report.html.

Reading, computing and drawing are separate modules; this one ties them together and decides
where things go: `RUN_DIR/report/` for one run, `./report` (or `--out`) for several.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lth.analysis import masks as mask_analysis
from lth.errors import StoreError
from lth.report import at_init, compare, paired
from lth.report import paper as published
from lth.report.aggregate import aggregate
from lth.report.at_init_figures import builders as at_init_figures
from lth.report.contents import Report, RunReport
from lth.report.figures import render_all
from lth.report.findings import compute_findings
from lth.report.load import RunData, describe_missing, read_run
from lth.report.mask_figures import builders as mask_figures
from lth.report.page import relative, write_pages
from lth.report.stability import read_stability
from lth.report.stability_figures import builders as stability_figures

DEFAULT_MULTI_OUT = Path("report")


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
        stability=read_stability(run, findings),
    )


def analyse_masks(runs: Sequence[RunData]) -> mask_analysis.MaskAnalysis | None:
    """The mask analysis (`lth masks`) of the runs that store masks, labelled as the report labels
    them; a record keeps none and a run with no finished level has none yet: both are left out."""
    opened = []
    for run in runs:
        if run.record is not None:
            continue
        try:
            opened.append(mask_analysis.open_run(run.path, run.label))
        except StoreError:
            continue
    return mask_analysis.analyse(opened) if opened else None


def build_report(
    run_dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    curve_levels: Sequence[int] | None = None,
) -> Report:
    """Read the runs, compute the findings, and write aggregate.csv, figures and the page to `out`."""
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
    measured = [(r.run, r.stability) for r in report.runs if r.stability is not None]
    report.at_init = at_init.find(report.runs, report.aggregate)
    runs_data = [r.run for r in report.runs]
    report.masks = analyse_masks(runs_data)
    report.paired = paired.pair(runs_data)
    more = stability_figures(measured) + at_init_figures(report.at_init, runs_data)
    if report.masks is not None:  # layer_sparsity, `lth masks`' fourth figure, is among the report's own
        more += mask_figures(report.masks)
    report.figures = render_all(runs_data, report.aggregate, report.out, curve_levels, more)
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
