"""Numbers as mallard shows them, the same in the log, the terminal tables and the report:
4 significant figures, thousands grouped from 1,000 on (an RMSE of 10,670, not 1.067e+04 or
10670.3), '—' when missing. Stored values keep every digit; only their text is short."""

from __future__ import annotations

MISSING = "—"


def figure(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return MISSING
    rounded = float(f"{value:.4g}")
    if 1000 <= abs(rounded) < 1e15:
        return f"{rounded:,.0f}"
    return f"{value:.4g}"
