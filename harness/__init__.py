"""Chaos harness for RQ services: start a real stack, break it mid-job, check every job recovers.

The folders name the roles (docs/ARCHITECTURE.md): `backends` start a stack, `workload` submits
and watches jobs, `nemesis` breaks things, `checkers` judge the history, `run` ties them into a
scenario, `report` writes what happened, `cli` and `pytest_plugin` are the two ways in.
Importing `harness` itself costs nothing: the names below load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["EnvironmentMissing", "Stack", "StackConfig"]

_WHERE = {
    "EnvironmentMissing": "harness.backends.base",
    "Stack": "harness.backends.local.stack",
    "StackConfig": "harness.backends.config",
}

if TYPE_CHECKING:
    from harness.backends.base import EnvironmentMissing
    from harness.backends.config import StackConfig
    from harness.backends.local.stack import Stack


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
