"""The harness's own model: what a SHAP result's predictions must be for the rows its request sent.

Trained here, once per process, from the data and estimator settings in
`harness.defaults.ORACLE_MODELS` (GradientBoostingRegressor on scikit-learn's diabetes data, the
model this repository's service serves). A result whose predictions differ explains other rows,
another model, or a mix of attempts, even when its SHAP values add up.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from harness.defaults import ORACLE_MODELS

__all__ = ["oracle_predictions"]

_models: dict[str, Any] = {}
_lock = threading.Lock()


def _model(name: str) -> Any:
    with _lock:
        if name not in _models:
            from sklearn import datasets
            from sklearn.ensemble import GradientBoostingRegressor

            loader, params = ORACLE_MODELS[name]
            data = getattr(datasets, loader)()
            _models[name] = GradientBoostingRegressor(**params).fit(data.data, data.target)
        return _models[name]


def oracle_predictions(model: str, rows: Sequence[Sequence[float]]) -> list[float] | None:
    """The harness model's predictions for `rows`; None when it has no model of that name."""
    if model not in ORACLE_MODELS:
        return None
    return [float(v) for v in _model(model).predict([list(map(float, r)) for r in rows])]
