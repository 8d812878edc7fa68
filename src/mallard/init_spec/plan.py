"""The search `mallard init` writes, sized to the data: which families, which spaces, which search
strategy, how many CV folds.

Measured on this 2-core machine type (generated housing rows, one thread per fit): a ridge fit
costs ~0.03 s at 350 rows and ~0.13 s at 14k; hist gradient boosting with early stopping ~0.03 s
at 350 rows, ~0.2 s at 3.5k, ~0.6 s at 14k; an MLP(64) at Adam 0.01 ~0.06 / 0.1 / 0.5 s. So:

- under 1,000 rows every fit is cheap and the noise is large: 5 folds (the champion is then
  chosen on repeated K-fold over train + validation, tasks/uncertainty.py), the full log-spaced
  linear grid, a small random search for boosting, a small forest, no MLP (it loses to ridge
  there: holdout R² 0.78 vs 0.83 at 500 rows);
- 1,000 - 10,000 rows: 5 folds, random search for boosting (10 configurations), MLP offered;
- 10,000 - 100,000 rows: 3 folds, successive halving for boosting and the MLP (cheap rounds on
  subsets, the last on all train rows), the forest written commented out: on 16k generated
  housing rows its search took 98 s of a 155 s run and scored RMSE 22.9k against boosting's
  19.3k and the MLP's 18.9k, and boosting's 10-configuration random search over 3 folds 29 s;
- from 100,000 rows: 3 folds, halving as the fast path does (9 candidates); forests and the MLP
  are written commented out: they cost minutes per fit and lost to boosting in every measured run.

Logistic regression searches C over LogisticRegressionCV's range (1e-4 .. 1e4, steps of 3) and
picks it on log loss (`scoring`), the family still being chosen on the primary metric: on a few
hundred CV rows F1 and accuracy are step functions of C that tie and jump. On 60 seeded
breast_cancer holdouts the F1-picked C ranged 0.1-10 (class_weight "balanced" in 32 of 60) and
scored 0.0037 below LogisticRegressionCV; picked on log loss, 0.0011 below (not significant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SMALL_ROWS = 1_000
MEDIUM_ROWS = 10_000
LARGE_ROWS = 100_000
MLP_MAX_ROWS = 50_000
# Above this many rows init writes [train] max_rows = TRAIN_MAX_ROWS: tuning and selection fit on
# a seeded sample (boosting on a 1M-row sample of 10M rows: R² 0.948 vs 0.946 on 100k).
TRAIN_MAX_ROWS = 1_000_000

LOG_GRID = [0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
# Logistic C over LogisticRegressionCV's default range (1e-4 .. 1e4), in steps of 3 and 3.3,
# chosen on log loss: accuracy and F1 are step functions of C on a few hundred rows.
LOGISTIC_C = [
    0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0,
    3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0,
]  # fmt: skip
MLP_LAYERS = [[64], [128, 64]]
MLP_ALPHA = [0.0001, 0.001, 0.01, 0.1, 1.0]


@dataclass(frozen=True)
class CandidateDraft:
    family: str
    params: dict[str, list[Any]]
    search: str = "grid"
    n_iter: int | None = None  # random / halving_random only
    note: str = ""
    active: bool = True  # False: written commented out, with `why_not`
    why_not: str = ""
    scoring: str | None = None  # the metric the search optimises (None: the primary metric)


@dataclass(frozen=True)
class SearchDraft:
    size: str  # small | medium | large | huge: the tier the rules below chose
    folds: int
    repeats: int
    candidates: tuple[CandidateDraft, ...] = field(default_factory=tuple)
    max_rows: int | None = None  # [train] max_rows: None below TRAIN_MAX_ROWS rows

    @property
    def why(self) -> str:
        return {
            "small": f"under {SMALL_ROWS:,} rows: 5 folds, cheap fits, noisy scores",
            "medium": f"{SMALL_ROWS:,}-{MEDIUM_ROWS:,} rows: 5 folds",
            "large": f"{MEDIUM_ROWS:,}-{LARGE_ROWS:,} rows: 3 folds, successive halving",
            "huge": f"{LARGE_ROWS:,}+ rows: 3 folds, successive halving, no forest or MLP",
        }[self.size]


def size_of(rows: int) -> str:
    if rows < SMALL_ROWS:
        return "small"
    if rows < MEDIUM_ROWS:
        return "medium"
    if rows < LARGE_ROWS:
        return "large"
    return "huge"


def search_draft(task: str, rows: int, imbalanced: bool = False) -> SearchDraft:
    """The folds and candidates init writes for a table of `rows` rows."""
    size = size_of(rows)
    folds = 5 if size in ("small", "medium") else 3
    if task == "clustering":
        return SearchDraft(size, folds, 1, _clustering())
    balance: dict[str, list[Any]] = (
        {"class_weight": ["none", "balanced"]} if imbalanced or task == "classification" else {}
    )
    linear = _linear(task, size, balance)
    boosting = _boosting(size, {"class_weight": ["none", "balanced"]} if imbalanced else {})
    forest = _forest(size)
    mlp = _mlp(size, rows)
    max_rows = TRAIN_MAX_ROWS if rows > TRAIN_MAX_ROWS else None
    return SearchDraft(size, folds, 1, (linear, boosting, forest, mlp), max_rows)


def _linear(task: str, size: str, balance: dict[str, list[Any]]) -> CandidateDraft:
    knob = "alpha" if task == "regression" else "C"
    family = "ridge" if task == "regression" else "logistic_regression"
    note = "regularisation on a log scale" + (
        "; balanced: classes weighted by their rarity" if balance else ""
    )
    grid = LOG_GRID if task == "regression" else LOGISTIC_C
    scoring = None if task == "regression" else "log_loss"
    params = {knob: grid, **balance}
    if size == "huge":
        return CandidateDraft(family, params, "random", 4, note, scoring=scoring)
    return CandidateDraft(family, params, "grid", None, note, scoring=scoring)


def _boosting(size: str, balance: dict[str, list[Any]]) -> CandidateDraft:
    params: dict[str, list[Any]] = {
        "learning_rate": [0.03, 0.05, 0.1, 0.2],
        "max_leaf_nodes": [15, 31, 63],
        "min_samples_leaf": [5, 10, 20] if size == "small" else [20, 50, 100],
        "l2_regularization": [0.0, 0.1, 1.0, 10.0],
        **balance,
    }
    note = "stops early on 10% of each fit's rows"
    if size == "small":
        return CandidateDraft("hist_gradient_boosting", params, "random", 6, note)
    if size == "medium":
        return CandidateDraft("hist_gradient_boosting", params, "random", 10, note)
    if size == "large":
        return CandidateDraft("hist_gradient_boosting", params, "halving_random", 12, note)
    return CandidateDraft("hist_gradient_boosting", params, "halving_random", 9, note)


def _forest(size: str) -> CandidateDraft:
    note = "depth and leaf size bounded: fast, small model files"
    if size == "small":
        params: dict[str, list[Any]] = {
            "n_estimators": [100],
            "max_depth": [12],
            "min_samples_leaf": [1, 3],
        }
    elif size == "medium":
        params = {"n_estimators": [100], "max_depth": [8, 16], "min_samples_leaf": [2, 5]}
    else:
        params = {"n_estimators": [100], "max_depth": [12], "min_samples_leaf": [5]}
    if size == "huge":
        why = f"forests cost minutes per fit from {LARGE_ROWS:,} rows and lost to boosting"
        return CandidateDraft("random_forest", params, note=note, active=False, why_not=why)
    if size == "large":
        why = f"from {MEDIUM_ROWS:,} rows the forest was the slowest search and lost to boosting"
        return CandidateDraft("random_forest", params, note=note, active=False, why_not=why)
    return CandidateDraft("random_forest", params, note=note)


def _mlp(size: str, rows: int) -> CandidateDraft:
    params: dict[str, list[Any]] = {"hidden_layer_sizes": MLP_LAYERS, "alpha": MLP_ALPHA}
    note = "neural network on standardised inputs, stops early"
    if size == "small":
        why = f"an MLP needs more than {SMALL_ROWS:,} rows to beat a linear model"
        return CandidateDraft("mlp", params, "random", 4, note, active=False, why_not=why)
    if rows > MLP_MAX_ROWS:
        why = f"above {MLP_MAX_ROWS:,} rows an MLP costs much more than boosting"
        return CandidateDraft("mlp", params, "halving_random", 4, note, False, why)
    search = "random" if size == "medium" else "halving_random"
    return CandidateDraft("mlp", params, search, 4, note)


def _clustering() -> tuple[CandidateDraft, ...]:
    return (
        CandidateDraft("kmeans", {"n_clusters": [2, 3, 4, 5, 6]}, note="the best k by silhouette"),
        CandidateDraft("agglomerative", {"n_clusters": [2, 3, 4, 5, 6], "linkage": ["ward"]}),
    )
