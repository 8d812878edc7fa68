"""Model files: skops bytes (never pickle) with a sha256, loaded only with types from the code.

skops refuses to build any object whose type is not trusted. Which types mallard trusts comes
from this module (`LOADABLE_TYPES`: what the model families, pipelines, ensembles and threshold
tuning can produce, checked by tests/hostile/test_model_forgery.py), never from the warehouse:
whoever can write an ml.models row can forge its blob, sha256 and stored type list together, so
the stored list may only narrow the code's list. A model needing anything else is refused before
any of it is built, and never saved in the first place.

skops names the arrays in its zip after Python object ids and stamps the current time, so two
dumps of the same model differ. `canonical_skops` renumbers the ids in order of appearance and
fixes the timestamps, so the same model always gives the same bytes and the same sha256.
skops also writes an object that several attributes share once and refers back to it, so the
bytes depend on object identity: pickle (a Dask worker sending its model back) splits a shared
float such as `np.nan` into copies. `save_model` therefore saves an in-memory pickle round trip
of the model (idempotent: a model that already travelled gives the same bytes), so a model
trained in the flow process and one trained on a worker have the same sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mallard.core.errors import ModelIntegrityError

if TYPE_CHECKING:
    from types import ModuleType


def _skops_io() -> ModuleType:
    """skops.io, imported on first use: importing it walks scikit-learn's modules for its
    trusted-type list (~1-3 s), which flows that never save or load a model should not pay."""
    import skops.io

    return skops.io


__all__ = [
    "LOADABLE_TYPES",
    "ModelFile",
    "ModelIntegrityError",
    "canonical_skops",
    "load_model",
    "load_model_row",
    "save_model",
]

_ID = re.compile(r'("__id__": |")(\d+)(\.npy")?')
_EPOCH = (1980, 1, 1, 0, 0, 0)

# Every type beyond skops' default-trusted set that a mallard model may need. Each entry is data
# or a pure function; none runs a command, opens a file or imports a module. A new family,
# wrapper or scorer that needs more fails tests/hostile/test_model_forgery.py until it is added.
LOADABLE_TYPES: frozenset[str] = frozenset(
    {
        # trees, forests, boosting
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # nearest neighbours: the index and the distance metrics its algorithms may pick
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        # dtypes, stacking's named estimators, TransformedTargetRegressor's check_array partial
        "numpy.dtype",
        "sklearn.utils._bunch.Bunch",
        "functools.partial",
        "sklearn.utils.validation.check_array",
        # neural networks: the optimiser state MLPs keep after fitting
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        # TunedThresholdClassifierCV: the CV splitter it keeps (tune.cv_splitter's kinds), its
        # scorer and the metric functions that scorer calls
        "sklearn.model_selection._split.KFold",
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.model_selection._split.GroupKFold",
        "sklearn.model_selection._split.TimeSeriesSplit",
        "sklearn.model_selection._split.RepeatedKFold",
        "sklearn.model_selection._split.RepeatedStratifiedKFold",
        "sklearn.metrics._scorer._CurveScorer",
        "sklearn.metrics._scorer._Scorer",
        "sklearn.utils._metadata_requests.MetadataRequest",
        "sklearn.utils._metadata_requests.MethodMetadataRequest",
        "sklearn.metrics._classification.f1_score",
        "sklearn.metrics._classification.balanced_accuracy_score",
        "mallard.tasks.tune._constrained",
    }
)


@dataclass(frozen=True)
class ModelFile:
    blob: bytes
    sha256: str
    trusted_types: list[str]  # types outside skops' default-trusted set that this file needs


def save_model(model: Any, allowed: frozenset[str] = LOADABLE_TYPES) -> ModelFile:
    """The canonical skops file of `model`; refused if loading it would need a type outside
    `allowed` (such a model could never be scored, so it is not stored)."""
    # Our own object, pickled and unpickled in memory only: nothing untrusted is loaded.
    travelled = pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    blob = canonical_skops(_skops_io().dumps(travelled, compression=zipfile.ZIP_DEFLATED))
    needed = sorted(_skops_io().get_untrusted_types(data=blob))
    outside = [name for name in needed if name not in allowed]
    if outside:
        raise ModelIntegrityError(
            f"{type(model).__name__} needs type(s) mallard does not load: {', '.join(outside)}; "
            "choose other parameters or family (or add the type to LOADABLE_TYPES if it is safe)"
        )
    return ModelFile(blob=blob, sha256=hashlib.sha256(blob).hexdigest(), trusted_types=needed)


def load_model(
    blob: bytes,
    sha256: str,
    trusted_types: Iterable[str],
    *,
    model_id: str | None = None,
    allowed: frozenset[str] = LOADABLE_TYPES,
) -> Any:
    """Load a blob whose sha256 matches, trusting only types in both `allowed` (the code's list)
    and `trusted_types` (the row's list, which can only narrow it)."""
    name = f"model {model_id}" if model_id else "model file"
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise ModelIntegrityError(
            f"{name} checksum mismatch (stored {str(sha256)[:12]}…, actual {actual[:12]}…): "
            "it was changed after it was saved; refusing to load it"
        )
    try:
        needed = set(_skops_io().get_untrusted_types(data=blob))
    except Exception as exc:  # a corrupt zip or schema: nothing in it may run
        raise ModelIntegrityError(
            f"{name} is not a readable skops file ({_one_line(exc)}); refusing to load it"
        ) from None
    outside = sorted(needed - allowed)
    if outside:
        raise ModelIntegrityError(
            f"{name} needs type(s) mallard never loads: {', '.join(outside)}; refusing to load it"
        )
    stored = set(trusted_types)
    unexpected = sorted(needed - stored)
    if unexpected:
        raise ModelIntegrityError(
            f"{name} needs type(s) it was not saved with: {', '.join(unexpected)}; "
            "refusing to load it"
        )
    try:
        # skops checks every node again while loading, against this same intersection.
        return _skops_io().loads(blob, trusted=sorted(allowed & stored))
    except Exception as exc:
        raise ModelIntegrityError(
            f"{name} could not be loaded: {_one_line(exc)}; refusing to use it"
        ) from None


def load_model_row(row: Mapping[str, Any], allowed: frozenset[str] = LOADABLE_TYPES) -> Any:
    """Load the model of an ml.models row (skops_blob, sha256, trusted_types JSON, model_id)."""
    model_id = str(row.get("model_id") or "") or None
    try:
        stored = json.loads(str(row["trusted_types"]))
        if not isinstance(stored, list) or not all(isinstance(t, str) for t in stored):
            raise ValueError("not a list of type names")
    except (KeyError, ValueError) as exc:
        raise ModelIntegrityError(
            f"model {model_id}: trusted_types is unreadable ({_one_line(exc)}); refusing to load it"
        ) from None
    blob = row.get("skops_blob")
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise ModelIntegrityError(f"model {model_id} has no model file; refusing to load it")
    return load_model(
        bytes(blob), str(row.get("sha256")), stored, model_id=model_id, allowed=allowed
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def canonical_skops(blob: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        schema = source.read("schema.json").decode()
        numbering: dict[str, str] = {}

        def renumber(match: re.Match[str]) -> str:
            number = numbering.setdefault(match[2], str(len(numbering) + 1))
            return f"{match[1]}{number}{match[3] or ''}"

        schema = _ID.sub(lambda m: renumber(m) if m[1] == '"__id__": ' or m[3] else m[0], schema)
        entries = {"schema.json": schema.encode()}
        for info in source.infolist():
            if info.filename == "schema.json":
                continue
            stem = info.filename.removesuffix(".npy")
            name = f"{numbering[stem]}.npy" if stem in numbering else info.filename
            entries[name] = source.read(info)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            target.writestr(info, entries[name])
    return out.getvalue()
