"""Register tuned models: skops files with checksums, lineage, and drift reference profiles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from mallard.tasks.context import RunContext
from mallard.tasks.drift import prediction_profile, reference_profile
from mallard.tasks.evaluate import model_id, positive_probability
from mallard.tasks.metrics import Target
from mallard.tasks.model_files import save_model
from mallard.tasks.sample import seeded_subset
from mallard.tasks.tune import Tuned

PROFILE_MAX_ROWS = 200_000
PROFILE_STREAM = 3  # a random stream of the run's seed of its own (tasks/sample.py uses 1, 2)


@dataclass(frozen=True)
class Lineage:
    """What every model of one run shares."""

    pipeline: str
    task: str
    created_at: datetime
    data_sha256: str | None
    spec_sha256: str
    code_version: str | None
    seed: int
    versions: dict[str, str]
    target: str | None


@dataclass(frozen=True)
class Registered:
    models: pl.DataFrame  # ml.models rows (without run_id)
    profiles: pl.DataFrame  # ml.feature_profiles rows (without run_id)


def register_models(run: RunContext, tuned: list[Tuned], *, lineage: Lineage) -> Registered:
    """ml.models rows and drift reference profiles: the features as the models learned them
    (train split; all rows for clustering), and each model's predictions on held-out rows."""
    features, split, target = run.features, run.split, run.target
    reference_rows = np.arange(features.X.height) if split is None else split.train
    # Validation and test rows both: more rows make a steadier prediction reference.
    held_out = (
        np.arange(features.X.height)
        if split is None
        else np.sort(np.concatenate([split.validation, split.test]))
    )
    held_out_X = features.X[profiled_rows(held_out, lineage.seed)]
    feature_profile = reference_profile(
        features.X[reference_rows], features.numeric, features.categorical
    )
    rows, profiles = [], []
    for result in tuned:
        mid = model_id(run.run_id, result.name)
        saved = save_model(result.model)
        rows.append(
            {
                "model_id": mid,
                "pipeline": lineage.pipeline,
                "candidate": result.name,
                "family": result.family,
                "params": json.dumps(result.best_params, sort_keys=True, default=str),
                "created_at": lineage.created_at,
                "skops_blob": saved.blob,
                "size_bytes": len(saved.blob),
                "sha256": saved.sha256,
                "trusted_types": json.dumps(saved.trusted_types),
                "data_sha256": lineage.data_sha256,
                "spec_sha256": lineage.spec_sha256,
                "code_version": lineage.code_version,
                "seed": lineage.seed,
                "versions": json.dumps(lineage.versions, sort_keys=True),
                "feature_names": json.dumps(features.X.columns),
                "target": lineage.target,
                "task": lineage.task,
                "decision_threshold": result.threshold,
                "positive_class": None if target.pos_label is None else str(target.pos_label),
            }
        )
        predicted = prediction_values(result.model, held_out_X, target)
        profile = feature_profile
        if predicted is not None:
            profile = pl.concat([profile, prediction_profile(predicted)], how="vertical")
        profiles.append(profile.with_columns(pl.lit(mid).alias("model_id")))
    models = pl.DataFrame(
        rows, schema_overrides={"decision_threshold": pl.Float64, "positive_class": pl.String}
    )
    return Registered(models=models, profiles=pl.concat(profiles, how="vertical"))


def profiled_rows(held_out: np.ndarray, seed: int) -> np.ndarray:
    """The held-out rows whose predictions make a model's drift reference: all of them, or a
    seeded sample of PROFILE_MAX_ROWS (ten decile bins need far fewer). At 10M rows predicting
    2.4M held-out rows once per model made registration 102 s."""
    if len(held_out) <= PROFILE_MAX_ROWS:
        return held_out
    return seeded_subset(held_out, PROFILE_MAX_ROWS, seed, PROFILE_STREAM)


def prediction_values(model: Any, X: pl.DataFrame, target: Target) -> np.ndarray | None:
    """The numbers whose distribution drift watches: regression predictions, the positive-class
    probability of a binary classifier; None where there is no such number (multiclass labels,
    clusterers that cannot assign new rows)."""
    if target.task == "regression":
        return np.asarray(model.predict(X), dtype=float)
    if target.task == "classification" and target.binary:
        return positive_probability(model, X, target)
    return None
