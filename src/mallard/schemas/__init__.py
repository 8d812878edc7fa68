"""Dataset schemas: pandera (Polars backend) models, and the builder for inline spec columns."""
