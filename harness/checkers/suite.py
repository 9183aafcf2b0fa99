"""The standard checker suite every chaos run is judged by, in report order."""

from __future__ import annotations

from pathlib import Path

from harness.checkers.evidence import Availability, FinalRead, Reconciliation
from harness.checkers.liveness import AllTerminal, NoLost
from harness.checkers.meta import ExpectedOutcome
from harness.checkers.safety import Duplicates, Reexecutions, ResultCorrect
from harness.checkers.timing import RecoveryTime
from harness.checkers.verdict import Checker
from harness.defaults import AVAILABILITY_DURING, AVAILABILITY_OUTSIDE

__all__ = ["DEFAULT_CHECKER_NAMES", "default_checkers"]


def default_checkers(
    *,
    bound_s: float,
    result_check: str = "shap",
    result_path: Path | None = None,
    availability: tuple[float, float] = (AVAILABILITY_OUTSIDE, AVAILABILITY_DURING),
) -> list[Checker]:
    """The standard suite for a chaos run (`result_check` and where it is found: the target's,
    see ResultCorrect; `availability`: the scenario's bounds outside and during fault windows)."""
    return [
        AllTerminal(),
        NoLost(),
        Duplicates(),
        Reexecutions(),
        ExpectedOutcome(),
        ResultCorrect(mode=result_check, path=result_path),
        RecoveryTime(bound_s=bound_s),
        Availability(outside=availability[0], during=availability[1]),
        Reconciliation(),
        FinalRead(),
    ]


#: Their names: what a scenario runs unless it picks fewer (`Scenario.checkers`).
DEFAULT_CHECKER_NAMES: tuple[str, ...] = tuple(c.name for c in default_checkers(bound_s=0.0))
