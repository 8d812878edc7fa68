"""Render an inferred `Draft` as a commented TOML spec, and check that it parses."""

from __future__ import annotations

import glob
import json
import math
import os
import re
from pathlib import Path

from mallard.core.spec import Spec, parse_spec
from mallard.init_spec.columns import ISIN_MIN_SHARE, MAX_CATEGORIES, Column
from mallard.init_spec.infer import AGGLOMERATIVE_MAX_ROWS, Draft
from mallard.init_spec.plan import search_draft


def render(draft: Draft, spec_path: Path) -> str:
    """The commented TOML spec for `draft`, written as the file `spec_path`."""
    source = _relative(draft.data, spec_path)
    lines = _header(draft, spec_path)
    lines += [
        "[pipeline]",
        _aligned(f"name = {_value(_pipeline_name(spec_path))}", ""),
        _aligned(f"task = {_value(draft.task)}", draft.task_reason),
    ]
    if draft.target is not None:
        lines.append(_aligned(f"target = {_value(draft.target)}", ""))
    lines += [
        "seed = 42",
        "",
        "[source]",
        _aligned(f"path = {_value(source)}", "relative to this file"),
        "",
        "[schema]",
        _aligned(
            f"max_invalid_fraction = {draft.max_invalid_fraction:g}",
            "more invalid rows than this share: the run fails (they are in ml.quarantine)",
        ),
        "[schema.columns]",
        *_schema_lines(draft.columns),
        "",
        "[features]",
    ]
    dropped = draft.dropped
    drop_note = "ID-like and unusable columns (reasons above)" if dropped else "nothing to drop"
    lines.append(_aligned(f"drop = {_value([c.name for c in dropped])}", drop_note))
    lines.append("")
    if draft.task != "clustering":
        strategy = "stratified" if draft.task == "classification" else "random"
        why = (
            "keep the class proportions in train, validation and test"
            if strategy == "stratified"
            else "shuffled, seeded"
        )
        lines += [
            "[split]",
            _aligned(f"strategy = {_value(strategy)}", why),
            "test = 0.15",
            "validation = 0.15",
            "",
            "[cv]",
            _aligned(f"folds = {draft.folds}", search_draft(draft.task, draft.rows).why),
            "",
        ]
        max_rows = search_draft(draft.task, draft.rows).max_rows
        if max_rows is not None:
            lines += [
                "[train]",
                _aligned(
                    f"max_rows = {max_rows}",
                    f"tuning + selection on a seeded sample of {draft.rows:,} rows; "
                    "evaluation uses all",
                ),
                "",
            ]
    lines += _candidate_lines(draft)
    lines += ["[evaluate]", *_evaluate_lines(draft)]
    return "\n".join(lines) + "\n"


def check(text: str, spec_path: Path) -> Spec:
    """Parse the rendered spec as if it were the file `spec_path` (a SpecError here is a bug)."""
    return parse_spec(text, spec_path)


def _header(draft: Draft, spec_path: Path) -> list[str]:
    sample = "" if draft.sampled >= draft.rows else f", checks from the first {draft.sampled:,}"
    return [
        _comment(
            f"Drafted by `mallard init` from {draft.data.name} ({draft.rows:,} rows{sample})."
        ),
        _comment(f"Review it, then train: mallard run {spec_path}"),
        "#",
        "# How [schema.columns] was inferred from the data:",
        "#   dtype     what the values parse as; ISO dates are a date (a feature, as days since",
        "#             1970-01-01); values that do not parse are quarantine rows",
        "#   nullable  false where the sample has no missing value (then a missing value is",
        "#             quarantined: set it to true if new data may have gaps)",
        "#   ge = 0    columns never negative in the sample: 0, not the observed minimum, so",
        "#             new data a little outside the sample's range is not quarantined; no upper",
        "#             bounds are set",
        f"#   isin      text columns with at most {MAX_CATEGORIES} distinct values, and the",
        "#             target's classes: a new value is quarantined (extend the list to",
        f"#             accept it); values in under {ISIN_MIN_SHARE:.1%} of the rows are left out,",
        "#             so a typo or a planted bad value is quarantined, not made allowed",
        "#   dropped   ID-like columns (named like an ID, different in every row, or a row number)",
        "#             and unusable ones are declared but listed in [features] drop",
        "",
    ]


def _schema_lines(columns: tuple[Column, ...]) -> list[str]:
    entries = []
    width = max(len(_key(c.name)) for c in columns)
    for c in columns:
        if c.dtype is None:
            entries.append((_comment(f"{c.name}: not declared, dropped: {c.note}"), ""))
            continue
        fields = [f"dtype = {_value(c.dtype)}"]
        if not c.nullable:
            fields.append("nullable = false")
        if c.ge is not None:
            fields.append(f"ge = {c.ge:g}")
        if c.isin is not None:
            fields.append(f"isin = {_value(list(c.isin))}")
        role = {"target": "the target", "drop": "dropped"}.get(c.role, "")
        note = ": ".join(part for part in (role, c.note) if part)
        entries.append((f"{_key(c.name).ljust(width)} = {{ {', '.join(fields)} }}", note))
    return [_aligned(code, note, _comment_column(entries)) for code, note in entries]


def _candidate_lines(draft: Draft) -> list[str]:
    plan = search_draft(draft.task, draft.rows, draft.positive_class is not None)
    lines = [
        f"# The search is sized to the data ({plan.why}).",
        "# Lists are tried as a grid, or sampled `n_iter` times (random search, successive",
        "# halving); widen `params` (or add families) once it runs.",
    ]
    if draft.task != "clustering":
        lines.append("# A dummy baseline is always trained too, so a useless model is visible.")
    for candidate in plan.candidates:
        params = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in candidate.params.items())
        block = [
            "[[candidates]]",
            _aligned(f"family = {_value(candidate.family)}", candidate.note),
        ]
        if candidate.search != "grid":
            block.append(f"search = {_value(candidate.search)}")
        if candidate.n_iter is not None and candidate.search != "grid":
            block.append(f"n_iter = {candidate.n_iter}")
        if candidate.scoring is not None:
            block.append(f"scoring = {_value(candidate.scoring)}")
        block.append(f"params = {{ {params} }}")
        if not candidate.active:
            lines.append(f"# {candidate.family} left out: {candidate.why_not}")
            block = ["# " + line for line in block]
        elif candidate.family == "agglomerative" and draft.rows > AGGLOMERATIVE_MAX_ROWS:
            lines.append(
                f"# agglomerative clustering needs memory quadratic in the rows; left out above "
                f"{AGGLOMERATIVE_MAX_ROWS:,} rows:"
            )
            block = ["# " + line for line in block]
        lines += [*block, ""]
    return lines


def _evaluate_lines(draft: Draft) -> list[str]:
    metric_note = {
        "rmse": "rmse | mae | r2 | mape",
        "f1_macro": "F1 averaged over the classes; also accuracy, balanced_accuracy, roc_auc, ...",
        "pr_auc": "imbalanced binary target: precision-recall AUC (ROC-AUC flatters it)",
        "silhouette": "silhouette | davies_bouldin | calinski_harabasz",
    }[draft.primary_metric]
    lines = [_aligned(f"primary_metric = {_value(draft.primary_metric)}", metric_note)]
    if draft.positive_class is not None:
        lines += [
            _aligned('tune_threshold = "f1"', "decision threshold tuned on CV, not 0.5"),
            _aligned(
                f"positive_class = {_value(draft.positive_class)}",
                "the rare class: precision / recall / F1 refer to it",
            ),
        ]
    return lines


def _pipeline_name(spec_path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]+", "_", spec_path.stem).strip("_")
    return name or "pipeline"


def _relative(data: Path, spec_path: Path) -> str:
    """The data file as seen from the spec's folder, escaped (source.path is a glob)."""
    try:
        path = os.path.relpath(data.resolve(), spec_path.resolve().parent)
    except ValueError:  # another drive (Windows): no relative path exists
        path = str(data.resolve())
    return glob.escape(Path(path).as_posix())


_COMMENT_AT = 40
_MAX_COMMENT_AT = 72


def _comment_column(entries: list[tuple[str, str]]) -> int:
    widest = max((len(code) for code, note in entries if note), default=0)
    return min(max(_COMMENT_AT, widest + 2), _MAX_COMMENT_AT)


def _aligned(code: str, note: str, at: int = 31) -> str:
    if not note:
        return code
    return f"{code.ljust(at - 1)} {_comment(note)}"


def _comment(text: str) -> str:
    """A TOML comment: control characters (a newline in a column name) would end or break it."""
    return "# " + re.sub(r"[\x00-\x08\x0a-\x1f\x7f]", " ", text)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_\-]+", name) else _string(name)


def _string(text: str) -> str:
    # JSON strings are TOML basic strings, except that TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
