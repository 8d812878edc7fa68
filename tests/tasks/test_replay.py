"""Replay computes a model's outputs once, in batches of rows: the same answers as one call."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.linear_model import LogisticRegression

from mallard.tasks import replay as replay_module
from mallard.tasks.replay import Replay


class _Counting(LogisticRegression):
    """Records the number of rows of every predict_proba call."""

    def predict_proba(self, X):  # type: ignore[no-untyped-def]
        self.calls_ = [*getattr(self, "calls_", []), len(X)]
        return super().predict_proba(X)


def test_outputs_come_in_batches_and_equal_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    X = pl.DataFrame({"a": rng.normal(size=53), "b": rng.normal(size=53)})
    y = (X["a"] + rng.normal(size=53) > 0).to_numpy().astype(int)
    model = _Counting().fit(X, y)
    whole = model.predict_proba(X)
    model.calls_ = []
    monkeypatch.setattr(replay_module, "PREDICT_BATCH_ROWS", 10)
    replayed = Replay(model, X)
    # Equal to the last bit or two: BLAS kernels sum a row's products in an order that can
    # depend on the batch's shape (seen with OpenBLAS on AVX-512 machines: 1.1e-16 apart).
    batched = replayed.predict_proba(np.arange(53))
    np.testing.assert_allclose(batched, whole, rtol=1e-12, atol=1e-15)
    assert model.calls_ == [10, 10, 10, 10, 10, 3]
    # Computed once: later questions are answered from the stored outputs.
    assert np.array_equal(replayed.predict_proba(np.array([52, 0])), batched[[52, 0]])
    assert model.calls_ == [10, 10, 10, 10, 10, 3]
