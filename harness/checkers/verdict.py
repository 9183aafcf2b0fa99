"""What a checker is and how checkers combine: `Verdict`, the `Checker` protocol, `compose`.

Jepsen's rule: a checker that cannot decide, or crashes, says "unknown", which is never counted
as a pass; a run with nothing checked is unknown too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.workload.history import Event, History

__all__ = ["Checker", "Verdict", "compose", "events_by_job", "percentile", "run_checker"]


@dataclass(frozen=True)
class Verdict:
    """Outcome of one checker; `valid` None means unknown (not a pass)."""

    name: str
    valid: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.valid is None:
            return "unknown"
        return "pass" if self.valid else "fail"


@runtime_checkable
class Checker(Protocol):
    name: str

    def check(self, history: History) -> Verdict: ...


def run_checker(checker: Checker, history: History) -> Verdict:
    """Run one checker; a crash becomes an unknown verdict, never a pass."""
    name = getattr(checker, "name", type(checker).__name__)
    try:
        verdict = checker.check(history)
        if not isinstance(verdict, Verdict):
            raise TypeError(f"check() returned {type(verdict).__name__}, not Verdict")
    except Exception as exc:  # noqa: BLE001 - any bug must surface as unknown
        return Verdict(name, None, {"error": f"{type(exc).__name__}: {exc}"})
    return verdict


def compose(checkers: Iterable[Checker], history: History) -> tuple[Verdict, list[Verdict]]:
    """Run all checkers: any fail fails; else any unknown is unknown.

    No checkers at all is unknown too: nothing checked is not a pass.
    """
    verdicts = [run_checker(c, history) for c in checkers]
    by_status: dict[str, list[str]] = {"pass": [], "fail": [], "unknown": []}
    for v in verdicts:
        by_status[v.status].append(v.name)
    if by_status["fail"]:
        valid: bool | None = False
    elif by_status["unknown"] or not verdicts:
        valid = None
    else:
        valid = True
    return Verdict("overall", valid, by_status), verdicts


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def events_by_job(history: History, kind: str) -> dict[str, list[Event]]:
    """The events of one kind, grouped by job id, in order."""
    out: dict[str, list[Event]] = {}
    for e in history.events:
        if e.kind == kind and e.job_id is not None:
            out.setdefault(e.job_id, []).append(e)
    return out
