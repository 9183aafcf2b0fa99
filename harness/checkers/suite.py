"""The standard checker suite every chaos run is judged by, in report order."""

from __future__ import annotations

from pathlib import Path

from harness.checkers.liveness import AllTerminal, NoLost
from harness.checkers.meta import ExpectedOutcome
from harness.checkers.safety import Duplicates, Reexecutions, ResultCorrect
from harness.checkers.timing import RecoveryTime
from harness.checkers.verdict import Checker

__all__ = ["DEFAULT_CHECKER_NAMES", "default_checkers"]


def default_checkers(*, bound_s: float, result_check: str = "shap", result_path: Path | None = None) -> list[Checker]:
    """The standard suite for a chaos run (`result_check` and where it is found: the target's,
    see ResultCorrect)."""
    return [
        AllTerminal(),
        NoLost(),
        Duplicates(),
        Reexecutions(),
        ExpectedOutcome(),
        ResultCorrect(mode=result_check, path=result_path),
        RecoveryTime(bound_s=bound_s),
    ]


#: Their names: what a scenario runs unless it picks fewer (`Scenario.checkers`).
DEFAULT_CHECKER_NAMES: tuple[str, ...] = tuple(c.name for c in default_checkers(bound_s=0.0))
