"""Register tuned models: skops files with checksums, lineage, and drift reference profiles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from mallard.tasks.drift import prediction_profile, reference_profile
from mallard.tasks.features import Features
from mallard.tasks.model_files import save_model
from mallard.tasks.split import Split
from mallard.tasks.tune import Tuned


@dataclass(frozen=True)
class Lineage:
    """What every model of one run shares."""

    pipeline: str
    created_at: datetime
    data_sha256: str | None
    spec_sha256: str
    code_version: str | None
    seed: int
    versions: dict[str, str]
    target: str


@dataclass(frozen=True)
class Registered:
    models: pl.DataFrame  # ml.models rows (without run_id)
    profiles: pl.DataFrame  # ml.feature_profiles rows (without run_id)


def register_models(
    run_id: str, tuned: list[Tuned], features: Features, split: Split, lineage: Lineage
) -> Registered:
    feature_profile = reference_profile(
        features.X[split.train], features.numeric, features.categorical
    )
    rows, profiles = [], []
    for result in tuned:
        model_id = f"{run_id}:{result.name}"
        saved = save_model(result.model)
        rows.append(
            {
                "model_id": model_id,
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
            }
        )
        predictions = result.model.predict(features.X[split.test])
        profile = pl.concat([feature_profile, prediction_profile(predictions)], how="vertical")
        profiles.append(profile.with_columns(pl.lit(model_id).alias("model_id")))
    return Registered(models=pl.DataFrame(rows), profiles=pl.concat(profiles, how="vertical"))


@task(name="register", cache_policy=NO_CACHE)
def register(
    run_id: str, tuned: list[Tuned], features: Features, split: Split, lineage: Lineage
) -> Registered:
    return register_models(run_id, tuned, features, split, lineage)
