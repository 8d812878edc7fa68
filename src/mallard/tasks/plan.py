"""What a train run will search, decided from the spec and the prepared features: the
candidates (plus the dummy baseline), the columns kept out of the model, and the search plan."""

from __future__ import annotations

import numpy as np

from mallard.core.catalogue import BASELINE
from mallard.core.errors import SpecError
from mallard.core.spec import Candidate, Spec
from mallard.tasks.features import Features
from mallard.tasks.metrics import Target
from mallard.tasks.tune import SearchPlan


def not_features(spec: Spec) -> tuple[str, ...]:
    """A group id would let a model recognise groups instead of learning, and a row id only
    memorises rows; audited attributes stay out of the model unless the spec says they may be
    used."""
    excluded = [] if spec.source.id is None else [spec.source.id]
    if spec.split.strategy == "group" and spec.split.column:
        excluded.append(spec.split.column)
    if not spec.fairness.use_as_feature:
        excluded += spec.fairness.sensitive
    return tuple(excluded)


def split_column(spec: Spec) -> str | None:
    """The column that orders (time) or groups (group) the rows, when the split needs one."""
    return spec.split.column if spec.split.strategy in ("time", "group") else None


def candidates_with_baseline(spec: Spec) -> list[tuple[str, Candidate]]:
    """The spec's candidates plus a dummy baseline, so a useless model is visible."""
    named = list(zip(spec.candidate_names(), spec.candidates, strict=True))
    needs = spec.pipeline.task != "clustering"
    if needs and not any(candidate.family == BASELINE for candidate in spec.candidates):
        named.append(("baseline", Candidate(family=BASELINE)))
    return named


def search_plan(spec: Spec, features: Features) -> SearchPlan:
    task = spec.pipeline.task
    target = Target(task)
    if task == "classification":
        assert features.y is not None
        classes = tuple(sorted(np.unique(features.y).tolist(), key=str))
        target = Target(task, classes, positive_class(spec.evaluate.positive_class, features.y))
    return SearchPlan(
        target=target,
        primary=spec.primary_metric,
        folds=spec.cv.folds,
        seed=spec.pipeline.seed,
        strategy=spec.split.strategy,
        repeats=spec.cv.repeats,
        features=spec.features,
        tune_threshold=spec.evaluate.tune_threshold,
    )


def positive_class(wanted: str | None, y: np.ndarray) -> object:
    """The spec's positive_class, else the rarer class: in imbalanced data the one that matters.
    None for multiclass targets."""
    classes = tuple(sorted(np.unique(y).tolist(), key=str))
    if len(classes) != 2:
        return None
    if wanted is not None:
        matches = [c for c in classes if str(c) == wanted]
        if not matches:
            shown = ", ".join(repr(str(c)) for c in classes)
            raise SpecError(
                f"[evaluate.positive_class] '{wanted}' is not a class of the target ({shown})"
            )
        return matches[0]
    counts = {c: int(np.sum(y == c)) for c in classes}
    return min(classes, key=lambda c: (counts[c], str(c)))
