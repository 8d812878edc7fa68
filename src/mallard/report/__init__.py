"""The self-contained HTML report of one run (and its markdown summary for Prefect artifacts)."""

from mallard.report.render import markdown_summary, render_report

__all__ = ["markdown_summary", "render_report"]
