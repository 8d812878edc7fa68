"""Card transactions, ~2% fraudulent: imbalanced binary classification with threshold tuning.

Fraud here is bigger, later at night, further from home, faster in succession and more common in
a few merchant categories; none of these alone separates the classes, together they do.
"""

from __future__ import annotations

import numpy as np
import polars as pl

CATEGORIES = ["grocery", "fuel", "restaurant", "electronics", "travel", "gaming", "pharmacy"]
_LEGIT_MIX = [0.32, 0.18, 0.2, 0.08, 0.08, 0.06, 0.08]
_FRAUD_MIX = [0.05, 0.07, 0.08, 0.3, 0.22, 0.25, 0.03]


def fraud(rows: int, seed: int = 42, fraud_rate: float = 0.02) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    is_fraud = rng.random(rows) < fraud_rate
    n_fraud = int(is_fraud.sum())
    category = rng.choice(CATEGORIES, size=rows, p=_LEGIT_MIX)
    category[is_fraud] = rng.choice(CATEGORIES, size=n_fraud, p=_FRAUD_MIX)
    amount = rng.lognormal(3.4, 0.9, size=rows)
    amount[is_fraud] = rng.lognormal(3.9, 1.0, size=n_fraud)
    hour = rng.choice(24, size=rows, p=_daytime())
    hour[is_fraud] = rng.choice(24, size=n_fraud, p=_nighttime())
    distance = rng.gamma(1.5, 6.0, size=rows)
    distance[is_fraud] = rng.gamma(1.8, 14.0, size=n_fraud)
    age_group = rng.choice(["18-29", "30-44", "45-64", "65+"], size=rows, p=[0.22, 0.3, 0.32, 0.16])
    velocity = rng.poisson(2.0, size=rows)
    velocity[is_fraud] = rng.poisson(3.5, size=n_fraud)
    frame = pl.DataFrame(
        {
            "transaction_id": np.arange(1, rows + 1),
            "customer_id": rng.integers(1, max(2, rows // 8), size=rows),
            # Personal data the spec protects: the email is dropped at ingest, the postcode
            # generalised to its district; the age group is audited for fairness.
            "email": [f"customer{n}@example.org" for n in rng.integers(1, 10**6, size=rows)],
            "postcode": [
                f"{a}{b} {c}XY"
                for a, b, c in zip(
                    rng.choice(list("ABCDEFGH"), size=rows),
                    rng.integers(1, 20, size=rows),
                    rng.integers(1, 9, size=rows),
                    strict=True,
                )
            ],
            "age_group": age_group,
            "amount": amount.round(2),
            "merchant_category": category,
            "hour": hour,
            "distance_from_home_km": distance.round(1),
            "velocity_24h": velocity,
            "is_fraud": is_fraud.astype(np.int64),
        }
    ).with_columns(pl.all().cast(pl.String))
    return _plant(frame, rng)


def _daytime() -> np.ndarray:
    weights = np.array(
        [1, 1, 1, 1, 1, 2, 4, 6, 8, 9, 9, 10, 10, 10, 9, 9, 9, 10, 10, 9, 7, 5, 3, 2]
    )
    return weights / weights.sum()


def _nighttime() -> np.ndarray:
    weights = np.array([9, 10, 10, 9, 8, 5, 3, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4, 4, 5, 6, 7, 8])
    return weights / weights.sum()


def _plant(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """A handful of export errors: a negative amount, an impossible hour, an unknown category."""
    columns = {name: frame[name].to_list() for name in frame.columns}
    defects = [("amount", "-12.50"), ("hour", "25"), ("merchant_category", "???")]
    for i, row in enumerate(
        rng.choice(frame.height, size=max(3, frame.height // 400), replace=False)
    ):
        column, value = defects[i % len(defects)]
        columns[column][int(row)] = value
    return pl.DataFrame(columns, schema=frame.schema)
