"""How sure a number is, and choosing and refitting the champion on stable evidence.

- `bootstrap_interval` / `holdout_intervals`: a seeded percentile-bootstrap 95 % interval of a
  metric on a holdout. The model predicts each holdout row once; the resamples reuse those
  outputs, so 1,000 resamples cost metric arithmetic only, not predictions.
- `cv_summary`: mean ± std over folds from a `Tuned.cv_results` long frame.
- `select_champion`: the champion is the best mean over CV folds on train + validation rows,
  repeated K-fold on small data. A 70-row validation split is noisier than the differences
  between candidates (issue 12: boosting was promoted over ridge while ridge was better in CV);
  the validation split stays a reported check and the place thresholds are tuned.
- `finalize`: the chosen configuration refitted on every labelled row (what gets deployed).

scikit-learn is imported inside the functions (start-up time of every command).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

from mallard.core.catalogue import BASELINE, greater_is_better
from mallard.tasks.features import Features
from mallard.tasks.metrics import Scorer, Target, from_score, resampled_metric
from mallard.tasks.threads import fit_threads, recorded_single_threaded
from mallard.tasks.tune import CORES, SearchPlan, Tuned, cv_splitter, train_view

N_BOOT = 1_000
LEVEL = 0.95
SMALL_SELECTION_ROWS = 2_000  # fewer train + validation rows: repeated K-fold for selection
SMALL_SELECTION_REPEATS = 3
SMALL_FITS_ROWS = 2_000  # up to here a fit takes milliseconds: no worker processes
# More train + validation rows: the tuning CV (K folds of the train rows, thousands each) is
# stable, and a second CV of every candidate was 20 % of a 20k-row run (31 of 155 s).
REUSE_TUNING_CV_ROWS = 10_000

MetricFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Interval:
    estimate: float  # the metric on the holdout as it is
    low: float
    high: float
    n_boot: int  # resamples the interval rests on (undefined ones, e.g. one class, left out)
    level: float = LEVEL

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_interval(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    metric: MetricFn,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> Interval:
    """Percentile bootstrap of `metric(y_true, y_pred)` over rows resampled with replacement.
    `y_pred` may be labels, numbers or a score matrix (rows first). Deterministic per seed."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("bootstrap_interval needs at least one row")
    estimate = float(metric(y_true, y_pred))
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined resamples are counted out below
        for draws in _resamples(len(y_true), n_boot, seed):
            for rows in draws:
                try:
                    values.append(float(metric(y_true[rows], y_pred[rows])))
                except ValueError:  # e.g. ROC AUC of a resample holding one class only
                    continue
    return _percentile_interval(estimate, np.asarray(values, dtype=float), level)


def holdout_intervals(
    scoring: dict[str, Scorer],
    model: Any,
    X: Any,
    y: np.ndarray,
    *,
    target: Target | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """A bootstrap interval for every metric in `scoring` (mallard's scorers from
    tasks/metrics.py), in each metric's own sign (RMSE positive), from one prediction pass.

    Metrics that are arithmetic on predictions (RMSE, MAE, MAPE, R², accuracy and, given the
    `target`, precision, recall, F1 and balanced accuracy) are computed for a block of
    resamples at once: a scikit-learn scorer call costs ~1 ms, which made 1,000 resamples of
    5 metrics of 4 candidates 7 s of a 500-row run. The others (ROC AUC, PR AUC, log loss)
    call the scorer per resample. The point estimate always comes from the scorer."""
    from mallard.tasks.replay import Replay  # a scikit-learn estimator: imported when used

    replay = Replay(model, X)
    index = np.arange(len(y)).reshape(-1, 1)
    y = np.asarray(y)
    predicted, y_coded, labels = replay.output("predict"), y, None
    if predicted is None or predicted.ndim != 1:
        predicted = None  # e.g. multi-output: the scorers only
    elif target is not None and target.task == "classification":
        labels = np.unique(np.concatenate([y, predicted]))
        y_coded, predicted = np.searchsorted(labels, y), np.searchsorted(labels, predicted)
    blockwise = {
        name: compute
        for name in scoring
        if predicted is not None and (compute := resampled_metric(name, target, labels))
    }
    # One pass over the resamples for every blockwise metric: drawing and gathering 1,000
    # resamples of a 1.2M-row holdout once per metric was most of a 10M-row run's evaluation.
    resampled: dict[str, list[np.ndarray]] = {name: [] for name in blockwise}
    if blockwise:
        assert predicted is not None
        for rows in _resamples(len(y), n_boot, seed):
            y_rows, predicted_rows = y_coded[rows], predicted[rows]
            for name, compute in blockwise.items():
                resampled[name].append(compute(y_rows, predicted_rows))
    out = {}
    for name, scorer in scoring.items():

        def metric(
            y_rows: np.ndarray, rows: np.ndarray, scorer: Scorer = scorer, name: str = name
        ) -> float:
            return from_score(name, float(scorer(replay, rows, y_rows)))

        if name in blockwise:
            values = np.concatenate(resampled.pop(name))
            out[name] = _percentile_interval(metric(y, index), values, level)
            continue
        from sklearn import config_context

        with config_context(skip_parameter_validation=True):  # a quarter of each call
            out[name] = bootstrap_interval(y, index, metric, n_boot=n_boot, seed=seed, level=level)
    return out


RESAMPLE_BLOCK_CELLS = 4_000_000  # resampled row numbers held at once (32 MB as int64)


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """`n_boot` seeded resamples of `n` row numbers, as (k, n) blocks: 1,000 resamples of a
    150k-row holdout would be 1.2 GB at once. One generator draws the blocks in turn, so the
    resamples are the same whatever the block size."""
    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, RESAMPLE_BLOCK_CELLS // max(n, 1)))
    for start in range(0, n_boot, block):
        yield rng.integers(0, n, size=(min(block, n_boot - start), n))


def _percentile_interval(estimate: float, values: np.ndarray, level: float) -> Interval:
    values = values[np.isfinite(values)]  # undefined resamples are counted out
    if values.size == 0:
        return Interval(estimate, float("nan"), float("nan"), 0, level)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), int(values.size), level)


def cv_summary(cv_results: pl.DataFrame) -> pl.DataFrame:
    """Mean ± std over folds per candidate, params and metric, from `Tuned.cv_results`.
    Successive halving: only the last round a configuration reached (its most rows) counts."""
    last = cv_results.with_columns(
        pl.col("iteration").fill_null(-1).max().over("candidate", "params").alias("_last"),
    ).filter(pl.col("iteration").fill_null(-1) == pl.col("_last"))
    return (
        last.group_by("candidate", "family", "params", "metric", maintain_order=True)
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std(ddof=1).alias("std"),
            pl.len().cast(pl.Int32).alias("n_folds"),
        )
        .sort("candidate", "params", "metric")
    )


def best_cv(tuned: Tuned) -> dict[str, tuple[float, float]]:
    """metric -> (mean, std over folds) of the tuned candidate's best parameters."""
    shown = json.dumps(tuned.best_params, sort_keys=True)
    rows = cv_summary(tuned.cv_results).filter(pl.col("params") == shown)
    return {r["metric"]: (r["mean"], r["std"]) for r in rows.iter_rows(named=True)}


# --- choosing and refitting -----------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    champion: str  # the Tuned.name chosen
    rule: str  # how, in words, for the run record
    metric: str
    summary: pl.DataFrame  # candidate, family, mean, std, n_folds, rank (1 = champion)
    folds: pl.DataFrame  # candidate, family, fold, value: the paired per-fold scores


def selection_plan(plan: SearchPlan, n_rows: int) -> SearchPlan:
    """The CV used to choose: the run's folds, repeated on small data (random and stratified
    splits only: time and group folds have their own structure)."""
    if n_rows < SMALL_SELECTION_ROWS and plan.strategy not in ("time", "group"):
        return replace(plan, repeats=max(plan.repeats, SMALL_SELECTION_REPEATS))
    return plan


def selection_refits(
    plan: SearchPlan, n_rows: int, reuse_above: int = REUSE_TUNING_CV_ROWS
) -> SearchPlan | None:
    """The CV selection refits every candidate on over `n_rows` train + validation rows, or None
    above `reuse_above`, where the tuning CV's means are used as they are."""
    return None if n_rows > reuse_above else selection_plan(plan, n_rows)


def refitted_cv(refits: SearchPlan, n_rows: int) -> str:
    """The selection CV in words, e.g. "5-fold x 3 repeats CV on 1,683 train + validation
    rows"."""
    repeats = f" x {refits.repeats} repeats" if refits.repeats > 1 else ""
    return f"{refits.folds}-fold{repeats} CV on {n_rows:,} train + validation rows"


def select_champion(
    tuned: Sequence[Tuned],
    features: Features,
    rows: np.ndarray,
    plan: SearchPlan,
    scorer: Scorer,
    *,
    metric: str | None = None,
    exclude_families: tuple[str, ...] = (BASELINE,),
    reuse_above: int = REUSE_TUNING_CV_ROWS,
) -> Selection:
    """Choose among `tuned` on CV over `rows` (train + validation positions), each candidate's
    best configuration refitted per fold, every candidate on the same folds. `scorer` is the
    primary metric's scorer (tasks/metrics.scorers(...)[metric]). Above `reuse_above` rows the
    tuning CV means (over the train rows) are used as they are: stable, and refits cost minutes.
    `exclude_families` are scored and shown but never chosen (the dummy baseline)."""
    metric = metric or plan.primary
    eligible = [t for t in tuned if t.family not in exclude_families] or list(tuned)
    if not eligible:
        raise ValueError("select_champion needs at least one tuned candidate")
    chosen_plan = selection_refits(plan, len(rows), reuse_above)
    if chosen_plan is None:
        folds = pl.concat(
            [
                t.cv_results.filter(
                    (pl.col("metric") == metric)
                    & (pl.col("params") == json.dumps(t.best_params, sort_keys=True))
                )
                .filter(
                    pl.col("iteration").fill_null(-1) == pl.col("iteration").fill_null(-1).max()
                )
                .select("candidate", "family", "fold", "value")
                for t in tuned
            ]
        )
        how = (
            f"the tuning CV on the train split ({len(rows):,} train + validation rows, over "
            f"{reuse_above:,}: stable enough)"
        )
    else:
        refits = chosen_plan  # not None here; the closure below does not see the narrowing

        def scores(t: Tuned) -> pl.DataFrame:
            return _fold_scores(t, features, rows, refits, scorer, metric)

        if len(rows) > SMALL_FITS_ROWS:  # each CV spreads its folds over worker processes
            folds = pl.concat([scores(t) for t in tuned])
        else:  # small fits: worker processes cost more than the fits; candidates on threads
            with threadpool_limits(limits=1), ThreadPoolExecutor(CORES) as pool:
                folds = pl.concat(list(pool.map(scores, tuned)))
        how = (
            f"{refitted_cv(chosen_plan, len(rows))}, each candidate's best parameters, the same "
            "folds for every candidate"
        )
    best_first = not greater_is_better(metric)
    summary = (
        folds.group_by("candidate", "family", maintain_order=True)
        .agg(
            pl.col("value").mean().alias("mean"),
            pl.col("value").std(ddof=1).alias("std"),
            pl.len().cast(pl.Int32).alias("n_folds"),
        )
        .sort("mean", descending=not best_first, nulls_last=True)
    )
    names = {t.name for t in eligible}
    champion = next(c for c in summary["candidate"] if c in names)
    summary = summary.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"))
    direction = "lowest" if best_first else "highest"
    excluded = f"; never chosen: {', '.join(exclude_families)}" if exclude_families else ""
    rule = f"{direction} mean {metric} over {how}{excluded}"
    return Selection(champion=champion, rule=rule, metric=metric, summary=summary, folds=folds)


def finalize(tuned: Tuned, features: Features, rows: np.ndarray, plan: SearchPlan) -> Any:
    """The tuned candidate's fitted configuration (same parameters, and threshold tuning if it
    had it), cloned and fitted on `rows`: every labelled row (train + validation + test)."""
    if features.y is None:
        raise ValueError("finalize needs a target: clustering models are fitted on all rows")
    X, y, _ = train_view(features, np.sort(rows), plan)
    from sklearn.base import clone

    model = clone(tuned.model)
    # No search runs any more: boosting may take every core (tasks/threads.py).
    openmp = fit_threads(tuned.family, len(rows))
    with threadpool_limits(limits={"blas": 1, "openmp": openmp}):
        return recorded_single_threaded(model.fit(X, y))


def _fold_scores(
    tuned: Tuned,
    features: Features,
    rows: np.ndarray,
    plan: SearchPlan,
    scorer: Scorer,
    metric: str,
) -> pl.DataFrame:
    from sklearn.base import clone
    from sklearn.model_selection import cross_validate

    X, y, groups = train_view(features, np.sort(rows), plan)
    with threadpool_limits(limits=1):
        result = cross_validate(
            clone(tuned.model),
            X,
            y,
            groups=groups,
            cv=cv_splitter(plan),
            scoring=scorer,
            n_jobs=CORES if len(rows) > SMALL_FITS_ROWS else None,
            error_score="raise",
        )
    values = [from_score(metric, float(v)) for v in result["test_score"]]
    return pl.DataFrame(
        {
            "candidate": [tuned.name] * len(values),
            "family": [tuned.family] * len(values),
            "fold": list(range(len(values))),
            "value": values,
        },
        schema={"candidate": pl.String, "family": pl.String, "fold": pl.Int32, "value": pl.Float64},
    )
