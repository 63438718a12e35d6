"""The report page, written twice from one outline: report.md (figures beside it as files) and a
self-contained report.html (figures embedded as SVG data URIs, so it can be mailed or archived
alone). Building an outline of blocks first keeps the two pages saying the same thing.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lth import layout
from lth._version import __version__
from lth.analysis.masks import MaskAnalysis
from lth.lottery import variants
from lth.report import paper as published
from lth.report.at_init import AtInit
from lth.report.contents import Report, RunReport
from lth.report.figures import FigureFile
from lth.report.load import RunData, engine_lines, record_line
from lth.report.masks import OVERLAP_NOTE, level_table
from lth.report.paired import Paired
from lth.report.stability import Stability
from lth.store import write_atomic

NO_MASKS = (
    "A record keeps no masks, so this page has no Masks section for it: `lth report` or `lth masks` "
    "on the run directory it was made from has one."
)
VERDICT_MARKS = {
    published.HOLDS: "✓ holds",
    published.PARTLY: "~ partly",
    published.FAILS: "✗ does not hold",
    published.NOT_REACHED: "– not reached",
    published.NO_DATA: "– no data",
    published.NOT_TESTABLE: "– not testable",  # + "at N iterations per level" (`_mark`)
}


# --- the outline -----------------------------------------------------------------------------------


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str
    warn: bool = False  # shown as a call-out: a caveat the reader must not miss


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    figure: FigureFile


@dataclass
class Code:
    text: str
    title: str = ""


@dataclass
class Outline:
    title: str
    blocks: list[Heading | Para | Bullets | Table | Figure | Code] = field(default_factory=list)

    def add(self, *blocks: Heading | Para | Bullets | Table | Figure | Code) -> None:
        self.blocks.extend(blocks)


def outline(report: Report) -> Outline:
    runs = report.runs
    several = len(runs) > 1
    subject = ", ".join(
        dict.fromkeys(f"{r.run.config.model.name} on {r.run.config.data.dataset}" for r in runs)
    )
    page = Outline(f"Lottery-ticket report: {subject}" + (f" ({len(runs)} runs compared)" if several else ""))
    page.add(
        Para(
            f"Written by lth {__version__} from the stored results; accuracies are percents, "
            "means over trials (± standard deviation where there are several)."
        )
    )

    page.add(Heading(2, "Runs"))
    if several:
        keys = ", ".join(f"`{k}`" for k in report.differing_keys) or "nothing (identical configs)"
        page.add(Para(f"The runs differ in {keys}; each is labelled by its values of those settings."))
    page.add(
        Table(
            ["run", "directory", "trials", "levels", "iterations per level", "status"],
            [
                [
                    r.run.label,
                    f"`{relative(r.run.path, report.out)}`",
                    str(r.run.config.lottery.trials),
                    str(r.run.config.lottery.levels),
                    f"{r.iterations:,}" if r.iterations else "?",
                    _status(r),
                ]
                for r in runs
            ],
        )
    )
    for r in runs:
        if (record := record_line(r.run)) is not None:
            page.add(Para(f"{r.run.label}: {record}." if several else f"{record}."))
            page.add(Para(NO_MASKS))
        if r.missing:
            page.add(
                Para(
                    f"{_who(r, several)}is incomplete ({_why_incomplete(r)}): the figures and "
                    f"tables show the {len(r.run.summary)} of {r.expected_rows} results stored so far. "
                    "Missing:",
                    warn=True,
                )
            )
            page.add(Bullets(r.missing))
        if r.run.notes:
            page.add(Para(f"{_who(r, several)}has files that could not be read:", warn=True))
            page.add(Bullets(sorted(set(r.run.notes))))
        if r.run.mixed_trials:
            page.add(Para(f"{_who(r, several)}was trained by more than one engine:", warn=True))
        if r.run.engines:
            page.add(Bullets([f"{r.run.label}: {line}" if several else line for line in engine_lines(r.run)]))

    page.add(Heading(2, "Findings"))
    for r in runs:
        if several:
            page.add(Heading(3, r.run.label))
        page.add(Bullets(r.findings.sentences()))

    page.add(Heading(2, "Against the paper"))
    for r in runs:
        if several:
            page.add(Heading(3, r.run.label))
        _paper_section(page, r)

    if report.paired:
        page.add(Heading(2, "Trial by trial"))
        for one in report.paired:
            _paired_section(page, one)

    if any(r.stability is not None for r in runs):
        page.add(Heading(2, "Stability to SGD noise"))
        for r in runs:
            if r.stability is not None:
                if several:
                    page.add(Heading(3, r.run.label))
                _stability_section(page, r.stability)

    if report.at_init is not None:
        page.add(Heading(2, "Pruning at initialization"))
        _at_init_section(page, report.at_init)

    if report.masks is not None:
        page.add(Heading(2, "Masks"))
        _masks_section(page, report.masks, [r.run.label for r in runs])

    page.add(Heading(2, "Figures"))
    for figure in report.figures:
        page.add(Heading(3, figure.title), Figure(figure), Para(figure.caption))

    page.add(Heading(2, "Results per variant and level"))
    for r in runs:
        for variant in r.run.variants:
            page.add(Heading(3, f"{r.run.label}: {variant}" if several else variant))
            page.add(_level_table(r.aggregate[r.aggregate.variant == variant], r.run.unpruned_weights))
        controls = _controls_table(r)
        if controls is not None:
            page.add(
                Heading(
                    3, f"{r.run.label}: IMP against its controls" if several else "IMP against its controls"
                )
            )
            page.add(
                Para(
                    "Early-stop test accuracy of the ticket minus the control's (points), and how many "
                    "times later the control stops (its early-stop iteration over IMP's), per trial "
                    "then averaged."
                )
            )
            page.add(controls)
    page.add(Para("Every number above is in `aggregate.csv` (mean, std, min and max over trials)."))

    page.add(Heading(2, "Configuration"))
    for r in runs:
        page.add(Code(_config_text(r.run), title=f"{r.run.label}: config.toml" if several else "config.toml"))
    return page


def _who(r: RunReport, several: bool) -> str:
    return f"Run {r.run.label} " if several else "This run "


def _why_incomplete(r: RunReport) -> str:
    return "trials are added as they finish" if r.run.record is not None else "still running, or interrupted"


def _status(r: RunReport) -> str:
    if r.missing:
        return f"partial: {len(r.run.summary)} of {r.expected_rows} results"
    return "complete"


def _paper_section(page: Outline, r: RunReport) -> None:
    comparison = r.paper
    if comparison is None:
        page.add(
            Para(
                "No published experiment has this run's settings, so its numbers are not set beside "
                "the paper's."
            )
        )
        if r.near_misses:
            page.add(Para("Closest published experiments:"), Bullets(r.near_misses))
        return
    page.add(
        Para(
            f"This run reproduces **{comparison.title}** (Frankle & Carbin, ICLR 2019, {comparison.source})."
        )
    )
    if comparison.shortened:
        page.add(
            Para(
                f"Shortened run: {comparison.iterations:,} training iterations per level where the paper "
                f"trains {comparison.paper_iterations:,}. Claims about the accuracy a network reaches "
                "or when it early-stops depend on the budget, so this run cannot test them; the others "
                "set the ticket beside the dense network at the same budget. Its numbers are set beside "
                "the paper's for orientation; they are not comparable one-for-one.",
                warn=True,
            )
        )
    if comparison.deviations:
        page.add(Para("Settings that differ from the paper's:"), Bullets(comparison.deviations))
    both = r.run.unpruned_weights  # then say which Pm each claim is checked against
    trials = any(c.per_trial for c in comparison.checks)
    page.add(
        Table(
            [
                "claim",
                "source",
                "paper",
                "this run",
                *(["Pm of"] if both else []),
                "verdict",
                *(["each trial alone"] if trials else []),
            ],
            [
                [
                    c.text,
                    c.source,
                    c.paper,
                    c.ours,
                    *([published.PM_WORDS.get(c.pm_counts, "–")] if both else []),
                    _mark(c, comparison),
                    *([_per_trial(c)] if trials else []),
                ]
                for c in comparison.checks
            ],
        )
    )
    page.add(
        Para(
            "A claim at Pm P is checked at the run's level nearest P (within a factor "
            f"{published.PM_TOLERANCE:g}), in the Pm the claim means: the paper's counts all weights, "
            'pruned or not (conv and linear weights; not biases or batch norm); "partly" means the effect '
            "is there but smaller than published."
            + (
                " The findings and figures use the Pm of the pruned layers; the tables give both."
                if both
                else ""
            )
            + (
                " The last column checks each claim on each trial alone and lists the trials by "
                "verdict (✓ holds, ~ partly, ✗ does not hold): how firm the means' verdict is. "
                "Each trial's own numbers:"
                if trials
                else ""
            )
        )
    )
    if trials:
        numbers = [c.per_trial for c in comparison.checks]
        page.add(
            Table(
                ["claim", *(f"trial {one.trial}" for one in numbers[0])],
                [
                    [c.text, *(f"{one.ours} {_symbol(one.verdict)}" for one in row)]
                    for c, row in zip(comparison.checks, numbers, strict=True)
                ],
            )
        )


def _per_trial(check: published.Check) -> str:
    """Each trial's verdict, trials grouped by verdict: "✓ 0, 2 · ✗ 1"."""
    by_verdict: dict[str, list[int]] = {}
    for one in check.per_trial:
        by_verdict.setdefault(one.verdict, []).append(one.trial)
    return " · ".join(f"{_symbol(v)} {', '.join(map(str, t))}" for v, t in by_verdict.items())


def _symbol(verdict: str) -> str:
    """A verdict's mark alone: ✓, ~, ✗ or –."""
    return VERDICT_MARKS.get(verdict, verdict).split()[0]


def _mark(check: published.Check, comparison: published.PaperComparison) -> str:
    mark = VERDICT_MARKS.get(check.verdict, check.verdict)
    if check.verdict == published.NOT_TESTABLE:
        return f"{mark} at {comparison.iterations:,} iterations per level"
    return mark


def _paired_section(page: Outline, one: Paired) -> None:
    """A later run's IMP tickets beside the first run's, level by level, over shared trials."""
    page.add(
        Heading(3, f"{one.other} against {one.base}"),
        Bullets(one.sentences()),
        Table(
            [
                "level",
                "Pm",
                f"{one.base}: accuracy",
                f"{one.other}: accuracy",
                "difference (points)",
                f"{one.base}: early stop",
                f"{one.other}: early stop",
            ],
            [
                [
                    str(int(row.level)),
                    f"{row.percent_remaining:.1f}%",
                    f"{100 * row.base_accuracy:.2f}",
                    f"{100 * row.other_accuracy:.2f}",
                    f"{row.difference:+.2f}",
                    f"{row.base_iteration:,.0f}",
                    f"{row.other_iteration:,.0f}",
                ]
                for row in one.levels.itertuples()
            ],
        ),
        Para(
            "Early-stop test accuracy (percent) and early-stop iteration of each run's IMP ticket, "
            "means over the trials both runs hold; a trial starts from the same θ0 and batches in both."
        ),
    )


def _at_init_section(page: Outline, at_init: AtInit) -> None:
    """Which runs are which method, and the ICLR 2021 paper's findings checked on them."""
    page.add(
        Bullets([f"{method}: run {label}" for method, label in at_init.methods.items()]),
        Table(
            ["claim", "paper", "these runs", "verdict"],
            [[c.text, c.paper, c.ours, VERDICT_MARKS.get(c.verdict, c.verdict)] for c in at_init.checks],
        ),
        Para(
            "A gap is the method's ticket minus the other network, in points of early-stop test "
            "accuracy (means over trials), averaged over the levels the claim names. The figures "
            "`at_init_accuracy`, `at_init_ablations` and `at_init_layers` below show every level."
        ),
    )


def _masks_section(page: Outline, found: MaskAnalysis, labels: list[str]) -> None:
    """Per run with masks, `lth masks`' table per level: layer sparsity and the ticket's overlaps."""
    overlap = found.overlap_summary()
    analysed = set(found.sparsity.run)
    for label in (label for label in labels if label in analysed):
        if len(analysed) > 1:
            page.add(Heading(3, label))
        table = level_table(found.sparsity, overlap, label)
        page.add(Table([str(c) for c in table.columns], [[str(v) for v in row] for row in table.values]))
    page.add(
        Para(
            "Layer columns: percent of the layer's weights the ticket keeps (mean over trials). "
            f"{OVERLAP_NOTE} Above the random overlap, two masks agree more than chance. The `mask_` "
            "figures below draw the overlaps, the first layer per input pixel and θ0 of kept and pruned "
            "weights; `lth masks` writes every number."
        )
    )
    if found.notes:
        page.add(Bullets(found.notes))


def _stability_section(page: Outline, stability: Stability) -> None:
    """Instability per level and variant, per rewind iteration, and the ICML 2020 paper's claims."""
    page.add(
        Para(
            "Instability (Frankle, Dziugaite, Roy & Carbin, ICML 2020): two copies of a network train "
            "from the same weights with different SGD noise; it is the highest test error on the straight "
            "line between them minus the mean of the two ends' (points; train error on a fixed subset of "
            f"the training set). A network is stable below {100 * stability.threshold:g} points. Means "
            "over trials, min–max in brackets where there are several."
        )
    )
    levels = stability.by_level()
    if not levels.empty:
        page.add(
            Table(
                [
                    "variant",
                    "level",
                    "Pm %",
                    "trials",
                    "instability (pt)",
                    "train instability (pt)",
                    "end test error %",
                ],
                [
                    [
                        row.variant,
                        str(row.level),
                        f"{row.percent_remaining:.1f}",
                        str(row.trials),
                        *_instability_cells(row),
                    ]
                    for row in levels.itertuples()
                ],
            )
        )
    rewinds = stability.by_rewind()
    if not rewinds.empty:
        page.add(
            Para(
                "Against the rewind iteration k (`lth instability`): the copies start from the level's "
                "mask on θk."
            )
        )
        page.add(
            Table(
                [
                    "level",
                    "Pm %",
                    "k",
                    "trials",
                    "instability (pt)",
                    "train instability (pt)",
                    "end test error %",
                ],
                [
                    [
                        str(row.level),
                        f"{row.percent_remaining:.1f}",
                        str(row.rewind_iteration),
                        str(row.trials),
                        *_instability_cells(row),
                    ]
                    for row in rewinds.itertuples()
                ],
            )
        )
    if stability.experiment is None:
        page.add(Para("No published claim on stability covers this run's model and data set."))
        return
    page.add(Para(f"Against **{stability.experiment['title']}** ({stability.experiment['source']}):"))
    page.add(
        Table(
            ["claim", "source", "paper", "this run", "verdict"],
            [
                [c.text, c.source, c.paper, c.ours, VERDICT_MARKS.get(c.verdict, c.verdict)]
                for c in stability.checks
            ],
        )
    )


def _instability_cells(row) -> list[str]:
    def spread(column: str) -> str:
        mean, low, high = (100 * getattr(row, f"{column}_{s}") for s in ("mean", "min", "max"))
        return f"{mean:.2f}" if row.trials < 2 else f"{mean:.2f} [{low:.2f}–{high:.2f}]"

    return [spread("instability"), spread("instability_train"), f"{100 * row.endpoint_test_error_mean:.2f}"]


def _level_table(rows: pd.DataFrame, both: bool) -> Table:
    """Per level of one variant; `both`: Pm over all weights beside Pm over the pruned layers."""
    body = []
    for row in rows.itertuples():
        body.append(
            [
                str(row.level),
                f"{row.percent_remaining_mean:.1f}",
                *([f"{row.percent_remaining_all_mean:.1f}"] if both else []),
                str(row.trials),
                _mean_std(row.early_stop_iteration_mean, row.early_stop_iteration_std, 1, 0),
                _mean_std(row.early_stop_test_accuracy_mean, row.early_stop_test_accuracy_std, 100, 2),
                _mean_std(row.final_test_accuracy_mean, row.final_test_accuracy_std, 100, 2),
                _mean_std(row.final_train_accuracy_mean, row.final_train_accuracy_std, 100, 2),
            ]
        )
    return Table(
        [
            "level",
            *(["Pm % (pruned layers)", "Pm % (all weights)"] if both else ["Pm %"]),
            "trials",
            "early-stop iteration",
            "early-stop test %",
            "final test %",
            "final train %",
        ],
        body,
    )


def _controls_table(r: RunReport) -> Table | None:
    table = r.findings.controls
    present = [c for c in variants.controls() if f"imp_minus_{c}" in table]
    if table.empty or not present:
        return None
    header = ["level", "Pm %"]
    for c in present:
        header += [f"IMP − {c} (pt)", f"{c} stops later (×)"]
    body = []
    for row in table.to_dict(orient="records"):
        cells = [str(int(row["level"])), f"{row['percent_remaining']:.1f}"]
        for c in present:
            cells += [_num(row[f"imp_minus_{c}"], "{:+.2f}"), _num(row[f"{c}_over_imp_iteration"], "{:.2f}")]
        body.append(cells)
    return Table(header, body)


def _mean_std(mean: float, std: float, scale: float, digits: int) -> str:
    text = f"{scale * mean:.{digits}f}"
    return text if pd.isna(std) else f"{text} ± {scale * std:.{digits}f}"


def _num(value: float, fmt: str) -> str:
    return "–" if pd.isna(value) else fmt.format(value)


def _config_text(run: RunData) -> str:
    try:
        return (run.path / layout.CONFIG).read_text().strip()
    except OSError:
        return run.config.to_toml().strip()


# --- Markdown ------------------------------------------------------------------------------------


def to_markdown(page: Outline, out: Path) -> str:
    lines = [f"# {page.title}", ""]
    for block in page.blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Para):
            lines += [f"> **Note.** {block.text}" if block.warn else block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines += [_md_row(block.header), _md_row(["---"] * len(block.header))]
            lines += [_md_row(row) for row in block.rows] + [""]
        elif isinstance(block, Figure):
            lines += [f"![{block.figure.title}]({relative(block.figure.png, out)})", ""]
        elif isinstance(block, Code):
            lines += ([f"**{block.title}**", ""] if block.title else []) + ["```toml", block.text, "```", ""]
    return "\n".join(lines)


def _md_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def relative(path: Path, folder: Path) -> str:
    """`path` as a report's files name it: relative to `folder`, the report's, so that a page
    moved along with its runs, or committed, names no folder of the machine that made it."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # on another drive (Windows): there is no relative path
        return path.as_posix()


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; } h3 { margin-top: 1.3em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td { font-variant-numeric: tabular-nums; }
.warn { background: #fff4e0; border-left: 4px solid #f0a020; padding: 0.5em 0.8em; }
figure { margin: 0.5em 0; } figure img { max-width: 100%; height: auto; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
code { font-size: 0.9em; }
.v-holds { color: #1a7f37; } .v-does-not-hold { color: #c62828; } .v-partly { color: #9a6700; }
.v-not-testable { color: #666; }
"""


def to_html(page: Outline) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(page.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
    ]
    for block in page.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            parts.append(
                f'<p class="warn">{_inline(block.text)}</p>'
                if block.warn
                else f"<p>{_inline(block.text)}</p>"
            )
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.figure.svg.read_bytes()).decode("ascii")
            alt = html.escape(block.figure.title)
            parts.append(f'<figure><img alt="{alt}" src="data:image/svg+xml;base64,{data}"></figure>')
        elif isinstance(block, Code):
            title = f"<p><strong>{html.escape(block.title)}</strong></p>" if block.title else ""
            parts.append(f"{title}<pre><code>{html.escape(block.text)}</code></pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _td(cell: str) -> str:
    for verdict, mark in VERDICT_MARKS.items():
        if cell.startswith(mark):  # "– not testable at …" too
            return f'<td class="v-{verdict.replace(" ", "-")}">{html.escape(cell)}</td>'
    return f"<td>{_inline(cell)}</td>"


def _inline(text: str) -> str:
    """The little Markdown the outline uses (`code` and **bold**), as HTML."""
    out, code, bold = [], False, False
    pieces = text.replace("**", "\0").split("`")
    for i, piece in enumerate(pieces):
        code = i % 2 == 1
        escaped = html.escape(piece)
        if code:
            out.append(f"<code>{escaped.replace(chr(0), '**')}</code>")
            continue
        segments = escaped.split("\0")
        for j, segment in enumerate(segments):
            if j:
                bold = not bold
                out.append("<strong>" if bold else "</strong>")
            out.append(segment)
    if bold:
        out.append("</strong>")
    return "".join(out)


def write_pages(report: Report) -> dict[str, Path]:
    page = outline(report)
    md, page_html = report.out / "report.md", report.out / "report.html"
    for path, text in ((md, to_markdown(page, report.out)), (page_html, to_html(page))):
        write_atomic(path, text.encode())
        path.chmod(0o644)  # a page is for reading: not the private mode of the atomic temp file
    return {"markdown": md, "html": page_html}
