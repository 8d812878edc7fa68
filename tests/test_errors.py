"""Every error class says whose mistake it is through its exit code; the base is never raised."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from mallard.core import errors

SRC = Path(__file__).resolve().parents[1] / "src" / "mallard"
EXIT_CODES = {
    "SpecError": 2,
    "InputError": 2,
    "WarehouseError": 2,
    "DataValidationError": 3,
}


def _error_classes() -> dict[str, type[errors.MallardError]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.MallardError)
        and value is not errors.MallardError
    }


@pytest.mark.parametrize(("name", "code"), sorted(EXIT_CODES.items()))
def test_each_error_class_has_its_exit_code(name: str, code: int) -> None:
    assert getattr(errors, name).exit_code == code


def test_every_user_error_exits_2_or_3_never_1() -> None:
    classes = _error_classes()

    assert set(EXIT_CODES) <= set(classes)
    for name, cls in classes.items():
        assert cls.exit_code in (2, 3), f"{name} exits {cls.exit_code}"


def test_every_error_class_lives_in_core_errors() -> None:
    defined = []
    for path in SRC.rglob("*.py"):
        for match in re.finditer(r"^class (\w+)\((\w*Error)\)", path.read_text(), re.M):
            if path != SRC / "core" / "errors.py":
                defined.append(f"{path.relative_to(SRC)}: {match.group(1)}")

    assert defined == []


def test_the_base_class_is_never_raised_directly() -> None:
    raised = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"raise MallardError\(", line)
    ]

    assert raised == []
