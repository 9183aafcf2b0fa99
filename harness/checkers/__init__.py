"""Checkers judge a recorded `History` after a chaos run (Jepsen's checker).

Each answers one question with a `Verdict`: liveness (every job ends, none is lost), safety (no
unexplained re-run, no overwritten attempt, results that add up), timing (recovery within the
bound), and checks of the run itself (faults happened, the workload ran, jobs end as their kind
says). `attribution` is the one place that decides which fault hit which attempt. A checker
that cannot decide, or crashes, says "unknown", never a pass.
"""

from __future__ import annotations

from harness.checkers.attribution import FaultHits, attributed, fault_hits
from harness.checkers.evidence import Availability, FinalRead, Reconciliation
from harness.checkers.liveness import AllTerminal, NoLost
from harness.checkers.meta import ExpectedOutcome, FaultsInjected, WorkloadRan
from harness.checkers.safety import Duplicates, Reexecutions, ResultCorrect, additivity_errors
from harness.checkers.suite import DEFAULT_CHECKER_NAMES, default_checkers
from harness.checkers.timing import RecoveryTime
from harness.checkers.verdict import Checker, Verdict, compose, events_by_job, percentile, run_checker

__all__ = [
    "DEFAULT_CHECKER_NAMES",
    "AllTerminal",
    "Availability",
    "Checker",
    "Duplicates",
    "ExpectedOutcome",
    "FaultHits",
    "FaultsInjected",
    "FinalRead",
    "NoLost",
    "Reconciliation",
    "RecoveryTime",
    "Reexecutions",
    "ResultCorrect",
    "Verdict",
    "WorkloadRan",
    "additivity_errors",
    "attributed",
    "compose",
    "default_checkers",
    "events_by_job",
    "fault_hits",
    "percentile",
    "run_checker",
]
