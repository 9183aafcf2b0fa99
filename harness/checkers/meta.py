"""Checks of the run itself and of the workload's intent: did the faults happen, did the clients
do their part, did each job end the way its kind says it should."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from harness.checkers.attribution import attributed
from harness.checkers.verdict import Verdict
from harness.defaults import EXPECTED_ENDING
from harness.workload.history import ACCEPTED, FAULT_HEALED, FAULT_INJECTED, NOTE, TERMINAL, History

__all__ = ["ExpectedOutcome", "FaultsInjected", "WorkloadRan"]


class ExpectedOutcome:
    """Each job ends the way its kind says: a valid request finishes, a hanging one fails.

    all_terminal accepts `failed` as an ending; this one catches a recovery layer that fails
    good jobs (gives up too early, or keeps killing live work until attempts run out). Kinds
    come from the workload's `accepted` events (`job_kind`); unknown kinds are not judged.

    One exception, the retry policy itself: a job whose every attempt a fault cut short (its
    worker or horse killed, paused, cut off, or Redis killed while it ran; at least as many such
    hits as it had executions) may end `failed` with its attempts exhausted. Listed, not failed.
    """

    name = "expected_outcome"
    EXPECTED = EXPECTED_ENDING

    def check(self, history: History) -> Verdict:
        kinds: dict[str, str] = {}
        final: dict[str, str] = {}
        executions: dict[str, int] = {}
        hits: dict[str, int] = {}
        for e, fault in attributed(history):
            if e.kind == ACCEPTED and e.job_id is not None and e.data.get("job_kind"):
                kinds[e.job_id] = str(e.data["job_kind"])
            elif e.kind == TERMINAL and e.job_id is not None:
                final[e.job_id] = str(e.data.get("status"))
                executions[e.job_id] = max(executions.get(e.job_id, 0), int(e.data.get("executions") or 0))
            elif fault is not None:
                for job_id in fault.cut_short:
                    hits[job_id] = hits.get(job_id, 0) + 1
        wrong: dict[str, dict[str, Any]] = {}
        exhausted: dict[str, dict[str, int]] = {}
        for j, k in kinds.items():
            if k not in self.EXPECTED or j not in final or final[j] == self.EXPECTED[k]:
                continue
            n, hit = executions.get(j, 0), hits.get(j, 0)
            if self.EXPECTED[k] == "finished" and final[j] == "failed" and 0 < n <= hit:
                exhausted[j] = {"executions": n, "faults": hit}
                continue
            wrong[j] = {"kind": k, "expected": self.EXPECTED[k], "got": final[j]}
        return Verdict(
            self.name,
            not wrong,
            {
                "wrong": wrong,
                "judged": sum(k in self.EXPECTED for k in kinds.values()),
                "attempts_exhausted_by_faults": exhausted,
            },
        )


class FaultsInjected:
    """Every scheduled fault really happened and was healed; a run whose nemesis missed is not
    a pass (unknown), nor one whose final phase could not heal (the checks would judge a
    broken stack)."""

    name = "faults_injected"

    def __init__(self, expected: Sequence[str]) -> None:
        self.expected = list(expected)

    def check(self, history: History) -> Verdict:
        def counted(kind: str) -> dict[str, int]:
            return dict(Counter(str(e.data.get("fault")) for e in history.events if e.kind == kind))

        seen, healed, want = counted(FAULT_INJECTED), counted(FAULT_HEALED), dict(Counter(self.expected))
        missing = {n: c - seen.get(n, 0) for n, c in want.items() if seen.get(n, 0) < c}
        unhealed = {n: c - healed.get(n, 0) for n, c in want.items() if healed.get(n, 0) < c}
        notes = [e.data.get("text") for e in history.events if e.kind == NOTE and "fault" in e.data]
        details = {"expected": want, "injected": seen, "missing": missing, "unhealed": unhealed, "notes": notes}
        return Verdict(self.name, None if missing or unhealed else True, details)


class WorkloadRan:
    """The clients did their part: jobs were accepted and no client crashed."""

    name = "workload_ran"

    def check(self, history: History) -> Verdict:
        accepted = len(history.jobs())
        crashes = [
            e.data.get("text") for e in history.events if e.kind == NOTE and "crashed" in str(e.data.get("text"))
        ]
        ok = accepted > 0 and not crashes
        return Verdict(self.name, True if ok else None, {"accepted": accepted, "client_crashes": crashes})
