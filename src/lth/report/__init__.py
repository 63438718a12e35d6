"""Reports read the store (never the trainer): tables, findings, the paper's figures and a page.

>>> from lth.report import build_report
>>> report = build_report(["runs/lenet300-mnist-…"])   # same as `lth report RUN_DIR`
>>> report.files["html"]                                 # RUN_DIR/report/report.html
"""

from lth.report.build import build_report, default_out
from lth.report.contents import Report
from lth.report.table import format_table, level_table, read_summary

__all__ = ["Report", "build_report", "default_out", "format_table", "level_table", "read_summary"]
