"""Customers for segmentation: recency, frequency, monetary value, tenure and channel, drawn from
four latent segments (loyal high spenders, bargain regulars, new app users, lapsed customers)."""

from __future__ import annotations

import numpy as np
import polars as pl

# recency days, orders per year, mean order value, tenure months, channel mix (web, store, app)
_SEGMENTS = {
    "loyal": (12, 30, 120.0, 60, (0.4, 0.5, 0.1)),
    "bargain": (25, 18, 35.0, 36, (0.5, 0.4, 0.1)),
    "new_app": (8, 6, 55.0, 4, (0.15, 0.05, 0.8)),
    "lapsed": (240, 2, 60.0, 48, (0.5, 0.45, 0.05)),
}
_WEIGHTS = [0.2, 0.35, 0.2, 0.25]


def segments(rows: int, seed: int = 42) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    names = list(_SEGMENTS)
    which = rng.choice(len(names), size=rows, p=_WEIGHTS)
    recency, frequency, monetary, tenure, channel = [], [], [], [], []
    for k in which:
        r, f, m, t, mix = _SEGMENTS[names[k]]
        recency.append(max(0, round(rng.gamma(4.0, r / 4.0))))
        frequency.append(int(rng.poisson(f)))
        monetary.append(round(float(rng.lognormal(np.log(m), 0.3)), 2))
        tenure.append(max(1, round(rng.normal(t, t * 0.25))))
        channel.append(str(rng.choice(["web", "store", "app"], p=mix)))
    frame = pl.DataFrame(
        {
            "customer_id": np.arange(1, rows + 1),
            "recency_days": recency,
            "frequency": frequency,
            "monetary": monetary,
            "tenure_months": tenure,
            "channel": channel,
        }
    ).with_columns(pl.all().cast(pl.String))
    columns = {name: frame[name].to_list() for name in frame.columns}
    for i, row in enumerate(rng.choice(rows, size=max(2, rows // 300), replace=False)):
        column, value = [("recency_days", "-5"), ("channel", "fax")][i % 2]
        columns[column][int(row)] = value
    return pl.DataFrame(columns, schema=frame.schema)
