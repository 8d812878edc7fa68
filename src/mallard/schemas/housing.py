"""The housing dataset: one row per sold house (the guide's running example)."""

from __future__ import annotations

import pandera.polars as pa


class Housing(pa.DataFrameModel):
    price: float = pa.Field(ge=0, description="Sale price; the regression target.")
    lotsize: float = pa.Field(ge=0, nullable=True, description="Lot size in square feet.")
    bedrooms: int = pa.Field(ge=0, le=20, nullable=True, description="Number of bedrooms.")
    bathrms: int = pa.Field(ge=0, le=10, nullable=True, description="Number of bathrooms.")
    stories: int = pa.Field(ge=1, le=6, nullable=True, description="Floors above ground.")
    driveway: str = pa.Field(isin=["yes", "no"], nullable=True, description="Has a driveway.")
    year_built: int = pa.Field(ge=1700, le=2100, nullable=True, description="Year built.")

    class Config:
        strict = False
