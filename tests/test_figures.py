"""One way to show a number: the log, the terminal tables and the report agree."""

from __future__ import annotations

import math

import pytest

from mallard.cli.output import cell_text
from mallard.core.figures import figure
from mallard.report.sections import cell


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (10670.3, "10,670"),  # not 1.067e+04 (the log) nor 10,670.3 (the report)
        (1033.2, "1,033"),
        (-12345.6, "-12,350"),
        (999.96, "1,000"),  # rounded to 4 figures first, then grouped
        (0.8123456, "0.8123"),
        (1e-5, "1e-05"),
        (2.5e16, "2.5e+16"),
        (None, "—"),
        (math.nan, "—"),
    ],
)
def test_a_figure_reads_the_same_everywhere(value: float | None, shown: str) -> None:
    assert figure(value) == shown
    assert cell_text(value) == shown
    assert cell(value) == shown
