"""SHAP explanations of a loaded model: the computation each job performs."""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import LoadedModel

__all__ = ["EXPLAINERS", "explain"]

EXPLAINERS = ("tree", "kernel")


def explain(
    model: LoadedModel,
    rows: np.ndarray,
    *,
    explainer: str = "tree",
    background_size: int = 50,
    nsamples: int = 200,
) -> dict[str, Any]:
    """Explain `rows`; the result satisfies base_value + sum(shap_values[i]) == predictions[i]."""
    import shap  # imported lazily: 1.2 s, and only workers need it

    if explainer == "tree":
        exp = shap.TreeExplainer(model.estimator)
        values = np.asarray(exp.shap_values(rows, check_additivity=True), dtype=float)
        base = float(np.ravel(exp.expected_value)[0])
    elif explainer == "kernel":
        background = model.background[:background_size]
        exp = shap.KernelExplainer(model.predict, background)
        values = np.asarray(exp.shap_values(rows, nsamples=nsamples, silent=True), dtype=float)
        base = float(np.ravel(exp.expected_value)[0])
    else:
        raise ValueError(f"unknown explainer {explainer!r}; expected one of {EXPLAINERS}")
    if values.ndim == 3:  # some shap versions return (rows, features, outputs)
        values = values[..., 0]
    predictions = model.predict(rows)
    return {
        "model": model.spec.name,
        "model_version": model.spec.config_hash,
        "explainer": explainer,
        "feature_names": model.feature_names,
        "base_value": base,
        "shap_values": values.tolist(),
        "predictions": predictions.tolist(),
        "mean_abs_shap": dict(zip(model.feature_names, np.abs(values).mean(axis=0).tolist(), strict=True)),
        "max_additivity_error": float(np.max(np.abs(base + values.sum(axis=1) - predictions))),
    }
