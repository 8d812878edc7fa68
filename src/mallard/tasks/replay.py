"""`Replay`: a model's outputs on all rows, answered for row numbers.

Its own module because the class subclasses scikit-learn's BaseEstimator (scorers read its tags
and its available_if methods), which cannot be defined without importing scikit-learn (~1 s):
`mallard.tasks.metrics` is imported by every command, this module only by the steps that score
row subsets (tasks/importance.py, tasks/uncertainty.py, tasks/evaluate.py), when they run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

# Outputs are computed this many rows at a time: a pipeline's transforms copy and widen X
# (one-hot columns, float64), which on a 1.5M-row holdout raised a 10M-row run's peak RSS by
# ~1.2 GB. Each row's output does not depend on the other rows, so the batches change nothing.
PREDICT_BATCH_ROWS = 100_000


class Replay(BaseEstimator):
    """Answers predict / predict_proba / decision_function for row numbers of `X` from the
    model's outputs on all of `X`, each computed once, on first use: a scorer applied to many
    row subsets (bootstrap resamples, permuted copies) then costs arithmetic, not predictions."""

    def __init__(self, model: Any = None, X: Any = None) -> None:
        self.model = model
        self.X = X
        self.outputs_: dict[str, np.ndarray] = {}
        if hasattr(model, "classes_"):
            self.classes_ = model.classes_

    def __sklearn_tags__(self) -> Any:
        return self.model.__sklearn_tags__()

    def output(self, method: str) -> np.ndarray | None:
        """The model's `method` on all of X (None if it has no such method)."""
        if method not in self.outputs_:
            if not hasattr(self.model, method):
                return None
            answer, n = getattr(self.model, method), len(self.X)
            if n <= PREDICT_BATCH_ROWS:
                self.outputs_[method] = np.asarray(answer(self.X))
            else:
                batches = range(0, n, PREDICT_BATCH_ROWS)
                self.outputs_[method] = np.concatenate(
                    [np.asarray(answer(self.X[i : i + PREDICT_BATCH_ROWS])) for i in batches]
                )
        return self.outputs_[method]

    def _rows(self, method: str, rows: Any) -> np.ndarray:
        outputs = self.output(method)
        assert outputs is not None
        return outputs[np.asarray(rows).ravel()]

    @available_if(lambda self: hasattr(self.model, "predict"))
    def predict(self, rows: Any) -> np.ndarray:
        return self._rows("predict", rows)

    @available_if(lambda self: hasattr(self.model, "predict_proba"))
    def predict_proba(self, rows: Any) -> np.ndarray:
        return self._rows("predict_proba", rows)

    @available_if(lambda self: hasattr(self.model, "decision_function"))
    def decision_function(self, rows: Any) -> np.ndarray:
        return self._rows("decision_function", rows)
