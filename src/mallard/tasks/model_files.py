"""Model files: skops bytes (never pickle) with a sha256 and the exact list of types they need.

skops names the arrays in its zip after Python object ids and stamps the current time, so two
dumps of the same model differ. `canonical_skops` renumbers the ids in order of appearance and
fixes the timestamps, so the same model always gives the same bytes and the same sha256.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import skops.io as sio

from mallard.core.errors import MallardError

_ID = re.compile(r'("__id__": |")(\d+)(\.npy")?')
_EPOCH = (1980, 1, 1, 0, 0, 0)


class ModelIntegrityError(MallardError):
    """A stored model does not match its checksum or needs a type it was not saved with."""

    exit_code = 2


@dataclass(frozen=True)
class ModelFile:
    blob: bytes
    sha256: str
    trusted_types: list[str]  # types outside skops' default-trusted set that this file needs


def save_model(model: Any) -> ModelFile:
    blob = canonical_skops(sio.dumps(model, compression=zipfile.ZIP_DEFLATED))
    return ModelFile(
        blob=blob,
        sha256=hashlib.sha256(blob).hexdigest(),
        trusted_types=sorted(sio.get_untrusted_types(data=blob)),
    )


def load_model(blob: bytes, sha256: str, trusted_types: list[str]) -> Any:
    """Load only a blob whose sha256 matches, needing no type beyond the stored list."""
    actual = hashlib.sha256(blob).hexdigest()
    if actual != sha256:
        raise ModelIntegrityError(
            f"model file checksum mismatch (stored {sha256[:12]}…, actual {actual[:12]}…): "
            "it was changed after it was saved; refusing to load it"
        )
    try:
        needed = set(sio.get_untrusted_types(data=blob))
    except Exception as exc:  # a corrupt zip or schema: nothing in it may run
        raise ModelIntegrityError(f"model file is not a readable skops file: {exc}") from None
    unexpected = sorted(needed - set(trusted_types))
    if unexpected:
        raise ModelIntegrityError(
            f"model file needs type(s) it was not saved with: {', '.join(unexpected)}; "
            "refusing to load it"
        )
    return sio.loads(blob, trusted=sorted(needed))


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
