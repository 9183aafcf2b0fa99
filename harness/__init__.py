"""Chaos harness for RQ services: start a real stack, break it mid-job, check every job recovers."""

from __future__ import annotations

from .stack import EnvironmentMissing, Stack, StackConfig

__all__ = ["Stack", "StackConfig", "EnvironmentMissing"]
