"""A SHAP explanation service on RQ, with a recovery layer that ends every job within seconds."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
