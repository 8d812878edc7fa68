"""No ml.models row, however forged, makes mallard run code: the types a load may build come from
the code (LOADABLE_TYPES), and every model mallard can train needs only those.

An attacker who can write the warehouse controls the blob, its sha256 and the stored type list
together, so each forged row below has a matching sha256 and lists exactly what its blob needs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.preprocessing import FunctionTransformer

from mallard import warehouse
from mallard.core.catalogue import ENSEMBLES
from mallard.core.errors import MallardError, ModelIntegrityError
from mallard.core.spec import Candidate, FeaturesSection
from mallard.tasks.cluster import tune_clusterer
from mallard.tasks.ensembles import build_ensemble
from mallard.tasks.families import FAMILIES
from mallard.tasks.features import Features, prepare_features
from mallard.tasks.metrics import Target
from mallard.tasks.model_files import (
    LOADABLE_TYPES,
    canonical_skops,
    load_model,
    load_model_row,
    save_model,
)
from mallard.tasks.tune import SearchPlan, Tuned, cv_splitter, tune_candidate
from tests.hostile.conftest import MODEL_ID, dump

# --- forged rows --------------------------------------------------------------------------

MARKER = "mallard-pwned"


class Payload:
    """A class whose restoration runs code: a stand-in for an attacker's module."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["path"]).write_text("ran", encoding="utf-8")


def skops_file(obj: Any) -> tuple[bytes, str, list[str]]:
    """A well-formed skops file of `obj`, its real sha256 and the exact types it needs."""
    blob = canonical_skops(sio.dumps(obj, compression=zipfile.ZIP_DEFLATED))
    return blob, hashlib.sha256(blob).hexdigest(), sorted(sio.get_untrusted_types(data=blob))


def forge(db: Path, blob: bytes, sha256: str, trusted: str) -> dict[str, Any]:
    """Rewrite the champion's ml.models row, as an attacker with write access would; return it
    as mallard reads it back."""
    with duckdb.connect(str(db)) as con:
        con.execute(
            "UPDATE ml.models SET skops_blob = ?, sha256 = ?, trusted_types = ? WHERE model_id = ?",
            [blob, sha256, trusted, MODEL_ID],
        )
    row = warehouse.champion(db, "housing")
    assert row is not None and row["model_id"] == MODEL_ID
    return row


def system_pipeline(marker: Path) -> Any:
    """What the issue saw: a model whose transform hands its input to os.system."""
    return FunctionTransformer(os.system, validate=False)


def payload_object(marker: Path) -> Any:
    payload = Payload.__new__(Payload)
    payload.__dict__["path"] = str(marker)
    return {"model": payload}


def ridge_blob(db: Path) -> tuple[bytes, str, list[str]]:
    row = warehouse.model(db, MODEL_ID)
    assert row is not None
    return bytes(row["skops_blob"]), str(row["sha256"]), json.loads(str(row["trusted_types"]))


Forgery = Callable[[Path, Path], tuple[bytes, str, str]]  # (warehouse, marker) -> row values


def _with_types(make: Callable[[Path], Any]) -> Forgery:
    def forgery(db: Path, marker: Path) -> tuple[bytes, str, str]:
        blob, sha, types = skops_file(make(marker))
        return blob, sha, json.dumps(types)

    return forgery


def _extra_listed(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob, sha, types = skops_file(payload_object(marker))
    return blob, sha, json.dumps([*types, "posix.system", "builtins.eval", "builtins.exec"])


def _narrowed(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob, sha, _types = skops_file(payload_object(marker))
    return blob, sha, "[]"


def _truncated(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob, _, types = ridge_blob(db)
    cut = blob[: len(blob) // 2]
    return cut, hashlib.sha256(cut).hexdigest(), json.dumps(types)


def _corrupt(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob = b"PK\x03\x04" + os.urandom(64)
    return blob, hashlib.sha256(blob).hexdigest(), "[]"


def _pickle(db: Path, marker: Path) -> tuple[bytes, str, str]:
    import pickle

    blob = pickle.dumps(payload_object(marker))
    return blob, hashlib.sha256(blob).hexdigest(), json.dumps(["__main__.Payload"])


def _sha_mismatch(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob, _sha, types = skops_file(system_pipeline(marker))
    _, ridge_sha, _ = ridge_blob(db)
    return blob, ridge_sha, json.dumps(types)


def _types_not_json(db: Path, marker: Path) -> tuple[bytes, str, str]:
    blob, sha, _ = ridge_blob(db)
    return blob, sha, '"posix.system"'  # valid JSON for the column, but not a list


def _schema_swapped(db: Path, marker: Path) -> tuple[bytes, str, str]:
    """The ridge file with the payload's schema.json: same arrays, hostile tree."""
    blob, _, _ = skops_file(payload_object(marker))
    return blob, hashlib.sha256(blob).hexdigest(), json.dumps(["sklearn.tree._tree.Tree"])


FORGERIES: list[tuple[str, Forgery, str]] = [
    ("os-system-matching-sha-and-types", _with_types(system_pipeline), "never loads: .*system"),
    ("class-with-setstate", _with_types(payload_object), "never loads: .*Payload"),
    ("row-lists-extra-types", _extra_listed, "never loads: .*Payload"),
    ("narrowed-list", _narrowed, "never loads"),
    ("truncated-blob", _truncated, "not a readable skops file"),
    ("corrupt-zip", _corrupt, "not a readable skops file"),
    ("pickle-not-skops", _pickle, "not a readable skops file"),
    ("sha-mismatch", _sha_mismatch, "checksum mismatch"),
    ("trusted-types-not-a-list", _types_not_json, "trusted_types is unreadable"),
    ("tree-type-listed-hostile-schema", _schema_swapped, "never loads: .*Payload"),
]


@pytest.mark.parametrize(
    ("forgery", "phrase"), [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES]
)
def test_forged_champion_row_is_refused_before_anything_runs(
    wh: Path, tmp_path: Path, forgery: Forgery, phrase: str
) -> None:
    marker = tmp_path / MARKER
    row = forge(wh, *forgery(wh, marker))
    before = dump(wh)

    with pytest.raises(ModelIntegrityError, match=phrase) as refused:
        load_model_row(row)

    message = str(refused.value)
    assert "\n" not in message and isinstance(refused.value, MallardError)
    assert refused.value.exit_code == 2
    assert MODEL_ID in message  # names the model
    assert "refusing" in message
    assert not marker.exists()  # nothing of the payload ran
    assert dump(wh) == before


@pytest.mark.parametrize("stored", ["[]", '["posix.system"]', "[1, 2]", "not json"])
def test_the_stored_list_only_narrows_even_for_a_genuine_model(wh: Path, stored: str) -> None:
    """A ridge needs no extra type: a list naming dangerous ones widens nothing, a list that is
    not a list of names is refused."""
    blob, sha, _ = ridge_blob(wh)
    row = {"model_id": MODEL_ID, "skops_blob": blob, "sha256": sha, "trusted_types": stored}
    if stored in ("[]", '["posix.system"]'):
        assert load_model_row(row).predict(pl.DataFrame({"a": [0.0], "b": [0.0]})).shape == (1,)
    else:
        with pytest.raises(ModelIntegrityError, match=f"model {MODEL_ID}: trusted_types"):
            load_model_row(row)


def test_control_the_os_system_forgery_does_run_code_when_its_type_is_allowed(
    tmp_path: Path,
) -> None:
    """Without the code's list the forged file would execute: widened by hand, it does."""
    marker = tmp_path / MARKER
    blob, sha, types = skops_file(system_pipeline(marker))
    assert "posix.system" in types or "os.system" in types, types
    model = load_model(blob, sha, types, allowed=LOADABLE_TYPES | set(types))
    model.transform(f"touch {marker}")
    assert marker.exists()


def test_control_the_setstate_payload_runs_when_allowed(tmp_path: Path) -> None:
    marker = tmp_path / MARKER
    blob, sha, types = skops_file(payload_object(marker))
    load_model(blob, sha, types, allowed=LOADABLE_TYPES | set(types))
    assert marker.exists()


def test_the_genuine_champion_still_loads(wh: Path) -> None:
    row = warehouse.champion(wh, "housing")
    assert row is not None
    model = load_model_row(row)
    assert model.predict(pl.DataFrame({"a": [1.0], "b": [0.0]}))[0] == pytest.approx(2, abs=0.3)


# --- the code's list ------------------------------------------------------------------------

DANGEROUS = (
    "builtins.",
    "os.",
    "posix.",
    "subprocess",
    "sys.",
    "importlib",
    "pickle",
    "shutil",
    "eval",
    "exec",
    "runpy",
    "socket",
    "io.",
    "pathlib",
    "ctypes",
    "operator.",
)


@pytest.mark.parametrize("name", sorted(LOADABLE_TYPES))
def test_every_loadable_type_exists_and_is_harmless(name: str) -> None:
    module, _, attr = name.rpartition(".")
    assert hasattr(importlib.import_module(module), attr), f"{name} does not exist (typo?)"
    assert not name.startswith(DANGEROUS) and "eval" not in name and "exec" not in name


ROWS = 120
TRAIN = np.arange(90)
SMALL = {"n_estimators": [5], "max_iter": [20]}


def _table() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=ROWS), rng.normal(size=ROWS)
    colour = rng.choice(["red", "green", "blue"], ROWS)
    return pl.DataFrame(
        {
            "a": a,
            "b": b,
            "colour": colour,
            "price": np.abs(3 * a - 2 * b) + 1 + (colour == "red"),
            "bought": np.where(a + b + rng.normal(0, 0.5, ROWS) > 0, "yes", "no"),
            "band": np.where(a < -0.4, "low", np.where(a < 0.4, "mid", "high")),
        }
    )


SECTIONS = {
    "default": {},
    "minmax-ordinal-pca": {"scale": "minmax", "encode": "ordinal", "pca": 2},
    "native-log-target": {"scale": "none", "encode": "native", "log_target": True},
}


def _data(task: str, section: dict[str, Any], classes: int = 2) -> tuple[Features, FeaturesSection]:
    target = {"regression": "price", "classification": "bought" if classes == 2 else "band"}
    drop = [c for c in ("price", "bought", "band") if c != target.get(task)]
    if task != "regression":
        section = {k: v for k, v in section.items() if k != "log_target"}
    data = prepare_features(_table(), FeaturesSection(drop=drop), target.get(task), task=task)
    return data, FeaturesSection(**section)


def _plan(
    task: str, features: FeaturesSection, threshold: str | None = None, classes: int = 2
) -> SearchPlan:
    if task == "classification":
        labels = ("no", "yes") if classes == 2 else ("high", "low", "mid")
        target = Target(task, labels, "yes" if classes == 2 else None)
    else:
        target = Target(task)
    primary = {"regression": "rmse", "classification": "f1_macro", "clustering": "silhouette"}
    return SearchPlan(
        target=target,
        primary=primary[task],
        folds=3,
        seed=1,
        features=features,
        tune_threshold=threshold,
    )


def _one_config(task: str, name: str) -> dict[str, list[Any]]:
    space = FAMILIES[task][name].default_space
    params = {key: SMALL.get(key, values[:1]) for key, values in space.items()}
    return {**params, "n_clusters": [3]} if task == "clustering" else params


def _tuned(
    task: str, name: str, section: str, threshold: str | None = None, classes: int = 2
) -> Tuned:
    data, features = _data(task, SECTIONS[section], classes)
    plan = _plan(task, features, threshold, classes)
    candidate = Candidate(family=name, params=_one_config(task, name))
    if task == "clustering":
        return tune_clusterer(name, candidate, data, plan)
    return tune_candidate(name, candidate, data, TRAIN, plan)


def assert_saved_and_loaded(model: Any) -> None:
    saved = save_model(model)  # refuses a model needing a type outside LOADABLE_TYPES
    needed = set(sio.get_untrusted_types(data=saved.blob))
    assert needed <= LOADABLE_TYPES, sorted(needed - LOADABLE_TYPES)
    loaded = load_model(saved.blob, saved.sha256, saved.trusted_types)
    assert type(loaded) is type(model)


CASES = [
    (task, name, section)
    for task in FAMILIES
    for name in sorted(FAMILIES[task])
    for section in SECTIONS
    if section == "default" or task != "clustering"
]


@pytest.mark.parametrize(("task", "name", "section"), CASES, ids=["/".join(c) for c in CASES])
def test_every_family_saves_only_loadable_types(task: str, name: str, section: str) -> None:
    if section != "default" and name in ("dummy", "svm", "knn", "bagging", "adaboost"):
        pytest.skip("preprocessing variants add no type for these; covered by the others")
    assert_saved_and_loaded(_tuned(task, name, section).model)


@pytest.mark.parametrize("name", sorted(FAMILIES["classification"]))
def test_every_classifier_on_three_classes_saves_only_loadable_types(name: str) -> None:
    assert_saved_and_loaded(_tuned("classification", name, "default", classes=3).model)


THRESHOLDS = [
    "f1",
    "balanced_accuracy",
    "max_recall_at_precision:0.6",
    "max_precision_at_recall:0.6",
]


@pytest.mark.parametrize("objective", THRESHOLDS)
def test_threshold_tuned_models_save_only_loadable_types(objective: str) -> None:
    tuned = _tuned("classification", "logistic_regression", "default", objective)
    assert tuned.threshold is not None
    assert_saved_and_loaded(tuned.model)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("kind", ENSEMBLES)
def test_ensembles_save_only_loadable_types(task: str, kind: str) -> None:
    members = [
        _tuned(task, name, "default", "f1" if task == "classification" else None)
        for name in ("knn", "decision_tree", "hist_gradient_boosting")
    ]
    data, features = _data(task, {})
    plan = _plan(task, features)
    ensemble = build_ensemble(
        kind, Candidate(family=kind, params={"top": [3]}), members, data, TRAIN, plan
    )
    assert_saved_and_loaded(ensemble.model)


@pytest.mark.parametrize(
    ("task", "strategy", "repeats"),
    [
        (task, strategy, repeats)
        for task in ("regression", "classification")
        for strategy in ("random", "group", "time")
        for repeats in (1, 2)
        if repeats == 1 or strategy == "random"
    ],
)
def test_every_cv_splitter_a_threshold_tuner_keeps_is_loadable(
    task: str, strategy: str, repeats: int
) -> None:
    """TunedThresholdClassifierCV stores its `cv`: whichever kind tune.cv_splitter makes."""
    plan = SearchPlan(
        target=_plan(task, FeaturesSection()).target,
        primary="rmse",
        folds=3,
        seed=1,
        strategy=strategy,
        repeats=repeats,
    )
    splitter = cv_splitter(plan)
    saved = save_model({"cv": splitter})
    assert set(saved.trusted_types) <= LOADABLE_TYPES
