"""The scikit-learn models the service explains: trained once, deterministically, cached on disk.

A model is trained at most once per training config (the cache key is a hash of it) and loaded
once per worker process, before RQ forks work-horses, so jobs share its memory copy-on-write
and never retrain (the original deployment retrained inside every job and ran out of memory).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

__all__ = ["MODELS", "LoadedModel", "ModelSpec", "load", "stats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """What to train: a dataset that ships inside scikit-learn and an estimator config."""

    name: str
    dataset: str  # sklearn.datasets loader name
    estimator: str  # "regressor" | "classifier"
    n_features: int  # known without loading the model, so the API can validate rows
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        import sklearn

        blob = json.dumps(
            {
                "spec": [self.name, self.dataset, self.estimator, self.n_features, self.params],
                "sklearn": sklearn.__version__,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


MODELS: dict[str, ModelSpec] = {
    "diabetes": ModelSpec(
        "diabetes",
        "load_diabetes",
        "regressor",
        10,
        {"n_estimators": 200, "max_depth": 3, "learning_rate": 0.05, "random_state": 0},
    ),
    "breast_cancer": ModelSpec(
        "breast_cancer",
        "load_breast_cancer",
        "classifier",
        30,
        {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1, "random_state": 0},
    ),
}


@dataclass
class LoadedModel:
    spec: ModelSpec
    estimator: Any
    feature_names: list[str]
    background: np.ndarray  # a fixed sample of training rows, for KernelExplainer

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The quantity SHAP explains: regression output, or log-odds for a classifier."""
        if self.spec.estimator == "classifier":
            return np.asarray(self.estimator.decision_function(rows), dtype=float)
        return np.asarray(self.estimator.predict(rows), dtype=float)


_lock = threading.Lock()
_loaded: dict[str, LoadedModel] = {}
_stats = {"trainings": 0, "disk_loads": 0}


def stats() -> dict[str, int]:
    """How often this process trained or read a model from disk (tests count retraining)."""
    return dict(_stats)


def _train(spec: ModelSpec) -> tuple[Any, list[str], np.ndarray]:
    from sklearn import datasets
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor

    data = getattr(datasets, spec.dataset)()
    X, y = np.asarray(data.data, dtype=float), np.asarray(data.target)
    cls = GradientBoostingRegressor if spec.estimator == "regressor" else GradientBoostingClassifier
    est = cls(**spec.params).fit(X, y)
    rng = np.random.default_rng(0)
    background = X[rng.choice(len(X), size=min(100, len(X)), replace=False)]
    return est, [str(n) for n in data.feature_names], background


def load(name: str, *, cache_dir: Path) -> LoadedModel:
    """The model `name`, from memory, else from the disk cache, else trained and cached."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        spec = MODELS[name]
        path = Path(cache_dir) / f"{name}-{spec.config_hash}.joblib"
        t0 = time.perf_counter()
        try:
            est, names, background = joblib.load(path)
            _stats["disk_loads"] += 1
            how = "loaded from cache"
        except (FileNotFoundError, EOFError, ValueError, KeyError):
            est, names, background = _train(spec)
            _stats["trainings"] += 1
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write atomically: several workers may start at once and race on the cache.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            joblib.dump((est, names, background), tmp)
            os.replace(tmp, path)
            how = "trained"
        model = LoadedModel(spec, est, names, background)
        _loaded[name] = model
        log.info("model %s %s in %.2f s (%s)", name, how, time.perf_counter() - t0, path)
        return model
