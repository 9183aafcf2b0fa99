"""Timing: how long each job a fault broke took to reach an end, against the recovery bound."""

from __future__ import annotations

from harness.checkers.attribution import attributed
from harness.checkers.verdict import Verdict, percentile
from harness.defaults import TERMINAL_STATUSES
from harness.workload.history import ACCEPTED, TERMINAL, History

__all__ = ["RecoveryTime"]


class RecoveryTime:
    """Time from a fault to the affected job's finished/failed, within a bound.

    A fault affects the attempts it broke (`FaultHits.broken`: the job it names, the jobs it
    lists as running when it struck, and the jobs last seen `started` on the worker it hit).
    Only a fault that names none of these affects every job accepted and not yet terminal
    (generous). A job merely queued behind a backlog is not timed: its wait is capacity, not
    recovery (all_terminal still judges that it ends). A job hit repeatedly is timed from the
    last fault before it ended (earlier faults were cut short by the later one). Affected jobs
    that never end fail the check.
    """

    name = "recovery_time"

    def __init__(self, *, bound_s: float) -> None:
        if bound_s < 0:
            raise ValueError(f"bound_s must be >= 0, got {bound_s}")
        self.bound_s = bound_s

    def check(self, history: History) -> Verdict:
        accepted: dict[str, None] = {}
        done: set[str] = set()
        pending: dict[str, float] = {}  # job -> t of latest affecting fault
        samples: dict[str, float] = {}
        for e, fault in attributed(history):
            if e.kind == ACCEPTED and e.job_id is not None:
                accepted.setdefault(e.job_id, None)
            elif e.kind == TERMINAL and e.data.get("status") in TERMINAL_STATUSES:
                if e.job_id is None or e.job_id in done:
                    continue
                done.add(e.job_id)
                if e.job_id in pending:
                    samples[e.job_id] = e.t - pending.pop(e.job_id)
            elif fault is not None:
                for job_id in fault.broken or list(accepted):
                    if job_id not in done:
                        pending[job_id] = e.t
        values = list(samples.values())
        worst = max(values) if values else None
        over = [j for j, s in samples.items() if s > self.bound_s]
        details = {
            "n": len(values),
            "p50": percentile(values, 50),
            "p99": percentile(values, 99),
            "max": worst,
            "bound_s": self.bound_s,
            "samples": samples,
            "over_bound": over,
            "unrecovered": list(pending),
        }
        return Verdict(self.name, not over and not pending, details)
