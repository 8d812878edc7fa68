"""One run as a self-contained HTML document, and as a short markdown summary.

Every value reaches the HTML through jinja2 autoescaping; plots are PNG data URIs. Nothing in the
document points outside it, so it opens offline and can be mailed or stored in ml.reports.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from pathlib import Path

import jinja2

from mallard.report import sections, task_sections
from mallard.report.data import ReportData
from mallard.report.sections import Section, cell


def render_report(db: Path, run_id: str) -> str:
    """The HTML report of `run_id`: one document, inline CSS and plots, no scripts, no URLs."""
    data = ReportData.load(db, run_id)
    return _template().render(
        title=f"mallard run {data.run['run_id']}",
        run=data.run,
        sections=build_sections(data),
    )


def build_sections(data: ReportData) -> list[Section]:
    """Every run: lineage, validation. A failed run adds its error and stops (it stored nothing
    else). Otherwise leaderboard, CV spread, the sections of its task (ml.runs.task), then
    importance and fairness when those tables have rows."""
    result = [sections.lineage(data), sections.validation(data)]
    if data.run.get("status") == "failed":
        error = str(data.run.get("error") or "(no error message stored)")
        return [*result, Section("error", "Error", pre=error)]
    result += [sections.leaderboard(data), sections.cv(data)]
    result += task_sections.build(data)
    if data.feature_importance.height:
        result.append(task_sections.importance(data))
    if data.fairness.height or data.fairness_summary.height:
        result.append(sections.fairness(data))
    return result


@cache
def _template() -> jinja2.Template:
    # autoescape=True for every template, whatever its name: the report holds user text
    # (candidate names, check names, failure values, error messages).
    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    source = files("mallard.report").joinpath("template.html.j2").read_text(encoding="utf-8")
    return env.from_string(source)


# Characters that make markdown (or the HTML it may carry) out of a name; backslash-escaped.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|&~#])")


def _md(value: object) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", cell(value))


def markdown_summary(db: Path, run_id: str) -> str:
    """A few lines for a Prefect markdown artifact: status, best model, the leaderboard."""
    data = ReportData.load(db, run_id)
    run = data.run
    lines = [
        f"## mallard run {_md(run['run_id'])}",
        "",
        f"pipeline **{_md(run['pipeline'])}** · task {_md(run['task'])} · "
        f"status **{_md(run['status'])}** · {_md(run.get('n_rows'))} rows, "
        f"{_md(run.get('n_invalid'))} quarantined",
        "",
    ]
    if run.get("error"):
        lines += [f"error: {_md(run['error'])}", ""]
    board = data.leaderboard
    if not board.height:
        lines.append("no leaderboard rows for this run")
        return "\n".join(lines) + "\n"
    metric = _md(board["metric"][0])
    best = board.row(0, named=True)
    direction = "higher" if data.greater_is_better else "lower"
    lines += [
        f"best model on {data.ranked_on}: **{_md(best['model_id'])}** "
        f"({metric} on {data.reported_on} = {_md(best['value'])}, {direction} is better)",
        "",
        f"| rank | model | family | {metric} ({data.reported_on}) | validation {metric} "
        f"| cv {metric} |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for row in board.iter_rows(named=True):
        cells = ("rank", "candidate", "family", "value", "validation_value", "cv_value")
        lines.append("| " + " | ".join(_md(row[c]) for c in cells) + " |")
    return "\n".join(lines) + "\n"
