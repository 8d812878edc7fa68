"""A spec's validation errors as one line naming each bad key, with the key meant where a name
is mistyped (`[cv.fold] unknown key; did you mean 'folds'?`)."""

from __future__ import annotations

import difflib
import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

MAX_KEYS_LISTED = 12


def described(exc: ValidationError, spec_model: type[BaseModel]) -> str:
    problems = []
    for error in exc.errors():
        key = _key(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key" + _hint(spec_model, error["loc"])
        elif error["type"] == "missing":
            message = "required key is missing"
        problems.append(f"[{key}] {message}" if key else message)
    return "; ".join(problems)


def _key(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _hint(spec_model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """The known key closest to the unknown one, or the keys its section takes when none is
    close and they are few."""
    keys = _keys_at(spec_model, loc[:-1])
    if not keys or not isinstance(loc[-1], str):
        return ""
    close = difflib.get_close_matches(loc[-1], keys, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if len(keys) <= MAX_KEYS_LISTED:
        return f" (this section takes: {', '.join(keys)})"
    return ""


def _keys_at(spec_model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The TOML keys the section at `loc` accepts ([] when it cannot be told)."""
    kind: Any = spec_model
    for part in loc:
        kind = _inside(kind, part)
        if kind is None:
            return []
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return []
    return [f.alias or name for name, f in kind.model_fields.items() if not f.exclude]


def _inside(kind: Any, part: int | str) -> Any:
    """The type of `part` within a value of type `kind`: a model's field, a list's item or a
    table's value."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        fields = kind.model_fields
        for name, field in fields.items():
            if part in (name, field.alias):
                return _unwrapped(field.annotation)
        return None
    origin, args = get_origin(kind), get_args(kind)
    if origin is list and isinstance(part, int) and args:
        return _unwrapped(args[0])
    if origin is dict and isinstance(part, str) and len(args) == 2:
        return _unwrapped(args[1])
    return None


def _unwrapped(kind: Any) -> Any:
    """`X | None` as X: the one alternative a section can be."""
    if get_origin(kind) in (Union, types.UnionType):
        options = [a for a in get_args(kind) if a is not type(None)]
        return options[0] if len(options) == 1 else None
    return kind
