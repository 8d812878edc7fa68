"""Model files: deterministic skops bytes, sha256 checked, and no type beyond the code's list
(narrowed by the stored list). Forged rows are covered in tests/hostile/test_model_forgery.py."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import zipfile
from typing import Any

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor

from mallard.core.spec import FeaturesSection
from mallard.examples import housing
from mallard.tasks.features import Features, model_pipeline, prepare_features
from mallard.tasks.model_files import (
    LOADABLE_TYPES,
    ModelFile,
    ModelIntegrityError,
    canonical_skops,
    load_model,
    save_model,
)

# What a hostile object's methods did when (if) they ran: must stay empty on a refused load.
SIDE_EFFECTS: list[str] = []


class Hostile:
    """An object whose restoration runs code: a stand-in for a malicious model file."""

    def __init__(self) -> None:
        self.payload = "rm -rf /"

    def __setstate__(self, state: dict[str, Any]) -> None:
        SIDE_EFFECTS.append(f"__setstate__ ran with {state}")
        self.__dict__.update(state)


@pytest.fixture(autouse=True)
def _no_side_effects() -> None:
    SIDE_EFFECTS.clear()


def housing_features(rows: int = 300, seed: int = 3) -> Features:
    frame = housing(rows, seed, invalid_fraction=0.0).with_columns(
        pl.col("price", "lotsize").cast(pl.Float64),
        pl.col("bedrooms", "bathrms", "stories", "garagepl", "year_built").cast(pl.Int64),
    )
    return prepare_features(frame, FeaturesSection(), "price")


def forged(obj: Any) -> ModelFile:
    """What an attacker writes: a well-formed skops file of `obj` with its real sha256 and the
    exact list of types it needs (save_model itself refuses to save such an object)."""
    blob = canonical_skops(sio.dumps(obj))
    return ModelFile(
        blob, hashlib.sha256(blob).hexdigest(), sorted(sio.get_untrusted_types(data=blob))
    )


def fitted(features: Features, estimator: Any) -> Pipeline:
    return model_pipeline(features, estimator).fit(features.X, features.y)


@pytest.fixture(scope="module")
def features() -> Features:
    return housing_features()


@pytest.mark.parametrize(
    "estimator",
    [Ridge(alpha=1.0), DecisionTreeRegressor(max_depth=5, random_state=0)],
    ids=["ridge", "tree"],
)
def test_round_trip_predicts_the_same(features: Features, estimator: Any) -> None:
    model = fitted(features, estimator)
    saved = save_model(model)

    loaded = load_model(saved.blob, saved.sha256, saved.trusted_types)

    assert type(loaded) is Pipeline and loaded is not model
    np.testing.assert_array_equal(loaded.predict(features.X), model.predict(features.X))
    assert saved.sha256 == hashlib.sha256(saved.blob).hexdigest()
    assert zipfile.is_zipfile(io.BytesIO(saved.blob))  # a skops zip, not a pickle


def test_trusted_types_list_what_the_model_needs(features: Features) -> None:
    tree = save_model(fitted(features, DecisionTreeRegressor(max_depth=3, random_state=0)))
    ridge = save_model(fitted(features, Ridge()))
    assert "sklearn.tree._tree.Tree" in tree.trusted_types
    assert "sklearn.tree._tree.Tree" not in ridge.trusted_types
    assert tree.trusted_types == sorted(tree.trusted_types)


def test_equal_models_give_identical_bytes(features: Features) -> None:
    """Two fits with the same data and seed are different Python objects (skops would name
    their arrays after different ids and stamp different times) but must give the same file."""
    first = fitted(features, DecisionTreeRegressor(max_depth=6, random_state=1))
    second = fitted(features, DecisionTreeRegressor(max_depth=6, random_state=1))
    a, b = save_model(first), save_model(second)
    assert a.blob == b.blob and a.sha256 == b.sha256
    assert save_model(first).blob == a.blob  # saving again changes nothing
    # ... while a different model gives a different checksum
    other = save_model(fitted(features, DecisionTreeRegressor(max_depth=2, random_state=1)))
    assert other.sha256 != a.sha256


def test_save_time_and_object_ids_do_not_reach_the_bytes(features: Features) -> None:
    """skops stamps each zip entry with the save time and names arrays after object ids; a
    save a minute later, in a process with other ids, must still give the same canonical file."""
    model = fitted(features, DecisionTreeRegressor(max_depth=4, random_state=0))
    raw = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)
    later = _restamp(raw, (2031, 5, 17, 13, 37, 42), id_offset=7_777)
    assert later != raw
    trusted = sio.get_untrusted_types(data=later)
    np.testing.assert_array_equal(
        sio.loads(later, trusted=trusted).predict(features.X), model.predict(features.X)
    )
    assert canonical_skops(later) == canonical_skops(raw)
    with zipfile.ZipFile(io.BytesIO(save_model(model).blob)) as zipped:
        assert {info.date_time for info in zipped.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "schema.json" in zipped.namelist()
        arrays = sorted(n for n in zipped.namelist() if n != "schema.json")
        assert all(n.removesuffix(".npy").isdigit() and int(n[:-4]) < 1000 for n in arrays)


def test_shared_objects_split_by_pickle_do_not_reach_the_bytes(features: Features) -> None:
    """A model that travelled through pickle (back from a Dask worker) has its shared np.nan
    split into copies, which skops writes differently; save_model gives it the same bytes."""
    model = fitted(features, DecisionTreeRegressor(max_depth=4, random_state=0))
    travelled = pickle.loads(pickle.dumps(model))
    raw = [
        canonical_skops(sio.dumps(m, compression=zipfile.ZIP_DEFLATED)) for m in (model, travelled)
    ]
    assert raw[0] != raw[1]  # the split the normalisation exists for
    again = pickle.loads(pickle.dumps(travelled))
    assert save_model(model) == save_model(travelled) == save_model(again)


def test_tampered_blob_is_refused(features: Features) -> None:
    saved = save_model(fitted(features, Ridge()))
    tampered = bytearray(saved.blob)
    tampered[len(tampered) // 2] ^= 0xFF

    with pytest.raises(ModelIntegrityError, match="checksum"):
        load_model(bytes(tampered), saved.sha256, saved.trusted_types)
    with pytest.raises(ModelIntegrityError, match="checksum"):
        load_model(saved.blob, "0" * 64, saved.trusted_types)


def test_tree_stored_without_its_type_is_refused(features: Features) -> None:
    saved = save_model(fitted(features, DecisionTreeRegressor(max_depth=3, random_state=0)))
    with pytest.raises(ModelIntegrityError, match=r"sklearn\.tree\._tree\.Tree") as refused:
        load_model(saved.blob, saved.sha256, [])
    assert "refusing to load" in str(refused.value)
    assert "checksum" not in str(refused.value)


def test_a_custom_class_is_refused_and_nothing_of_it_runs() -> None:
    saved = forged({"model": Hostile()})
    hostile = f"{Hostile.__module__}.Hostile"
    assert hostile in saved.trusted_types  # the forged row lists it, with the right sha256

    for stored in ([], saved.trusted_types):  # the stored list cannot widen the code's list
        with pytest.raises(ModelIntegrityError, match=hostile.replace(".", r"\.")):
            load_model(saved.blob, saved.sha256, stored)
    assert SIDE_EFFECTS == []

    # Control: with the type in the code's list the hostile method does run, so the refusals
    # above really mean "refused before anything ran".
    wider = LOADABLE_TYPES | {hostile}
    loaded = load_model(saved.blob, saved.sha256, saved.trusted_types, allowed=wider)
    assert isinstance(loaded["model"], Hostile) and len(SIDE_EFFECTS) == 1


def test_saving_a_model_mallard_would_not_load_is_refused() -> None:
    with pytest.raises(ModelIntegrityError, match=r"mallard does not load: .*Hostile"):
        save_model({"model": Hostile()})


def test_a_function_reference_is_refused() -> None:
    """A file that would hand back os.system is refused unless that exact name was stored."""
    saved = forged({"call": os.system, "arg": "echo pwned"})
    for stored in (["sklearn.tree._tree.Tree"], saved.trusted_types):
        with pytest.raises(ModelIntegrityError, match=r"system"):
            load_model(saved.blob, saved.sha256, stored)


def test_hostile_type_spliced_into_a_trusted_model_is_refused(features: Features) -> None:
    """An attacker who rewrites blob and sha256 but not the trusted list still gets nowhere:
    a ridge file whose schema now also names Hostile."""
    ridge = save_model(fitted(features, Ridge()))
    hostile = forged(Hostile())
    assert not any("Hostile" in name for name in ridge.trusted_types)

    blob = _splice(ridge.blob, hostile.blob)
    with pytest.raises(ModelIntegrityError, match="Hostile"):
        load_model(blob, hashlib.sha256(blob).hexdigest(), ridge.trusted_types)
    assert SIDE_EFFECTS == []


@pytest.mark.parametrize(
    "blob",
    [b"", b"not a zip at all", b"PK\x03\x04" + b"\x00" * 40],
    ids=["empty", "text", "broken-zip"],
)
def test_corrupt_bytes_are_refused(blob: bytes) -> None:
    with pytest.raises(ModelIntegrityError, match="not a readable skops file"):
        load_model(blob, hashlib.sha256(blob).hexdigest(), [])


def test_truncated_file_is_refused(features: Features) -> None:
    saved = save_model(fitted(features, Ridge()))
    cut = saved.blob[: len(saved.blob) // 2]
    with pytest.raises(ModelIntegrityError, match="not a readable skops file"):
        load_model(cut, hashlib.sha256(cut).hexdigest(), saved.trusted_types)


def _restamp(blob: bytes, when: tuple[int, int, int, int, int, int], id_offset: int) -> bytes:
    """The same skops file as if saved at `when` by a process whose object ids differ."""

    def shift(match: re.Match[str]) -> str:
        return f"{match[1]}{int(match[2]) + id_offset}{match[3]}"

    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    schema = entries.pop("schema.json").decode()
    schema = re.sub(r'("__id__": )(\d+)()', shift, schema)
    schema = re.sub(r'(")(\d+)(\.npy")', shift, schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        target.writestr(zipfile.ZipInfo("schema.json", date_time=when), schema)
        for name, data in entries.items():
            renamed = f"{int(name.removesuffix('.npy')) + id_offset}.npy"
            target.writestr(zipfile.ZipInfo(renamed, date_time=when), data)
    return out.getvalue()


def _splice(target: bytes, donor: bytes) -> bytes:
    """`target`'s skops zip with `donor`'s top-level object put in as the Pipeline's `memory`."""
    with zipfile.ZipFile(io.BytesIO(target)) as source:
        entries = {info.filename: source.read(info) for info in source.infolist()}
    with zipfile.ZipFile(io.BytesIO(donor)) as source:
        node = json.loads(source.read("schema.json"))
    schema = json.loads(entries["schema.json"])
    for key in ("protocol", "_skops_version"):
        node.pop(key)
    schema["content"]["content"]["memory"] = _shift_ids(node, 10_000)
    entries["schema.json"] = json.dumps(schema).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zipped:
        for name, data in entries.items():
            zipped.writestr(name, data)
    return out.getvalue()


def _shift_ids(node: Any, by: int) -> Any:
    """The node with every skops `__id__` moved out of the target's range."""
    if isinstance(node, dict):
        return {k: v + by if k == "__id__" else _shift_ids(v, by) for k, v in node.items()}
    if isinstance(node, list):
        return [_shift_ids(v, by) for v in node]
    return node


def test_splice_helper_makes_a_loadable_file_when_trusted(features: Features) -> None:
    """Control for the splice test: the spliced file is well formed, so only the type check
    stops it."""
    ridge = save_model(fitted(features, Ridge()))
    blob = _splice(ridge.blob, forged(Hostile()).blob)
    hostile = f"{Hostile.__module__}.Hostile"
    sha = hashlib.sha256(blob).hexdigest()
    stored = [*ridge.trusted_types, hostile]
    with pytest.raises(ModelIntegrityError, match="never loads"):
        load_model(blob, sha, stored)
    loaded = load_model(blob, sha, stored, allowed=LOADABLE_TYPES | {hostile})
    assert isinstance(loaded.memory, Hostile) and len(SIDE_EFFECTS) == 1
