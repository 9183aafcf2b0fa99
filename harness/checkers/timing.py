"""Timing: how long each job a fault broke took to reach an end, against the recovery bound."""

from __future__ import annotations

from harness.checkers.attribution import attributed
from harness.checkers.verdict import Verdict, percentile
from harness.defaults import TERMINAL_STATUSES
from harness.workload.history import STATUS, TERMINAL, History

__all__ = ["RecoveryTime"]


#: Fault targets that are services, not workers (a fault on one names no worker the job ran on).
SERVICE_TARGETS = ("redis", "api")


def _found_running_anew(first: str | None, then: str | None) -> bool:
    """A later fault that found the job running on a worker shows the earlier break was over
    (a new attempt, or an outage it survived) when the earlier fault hit another worker or a
    whole service; on the same worker it is still the same attempt."""
    if not then or then in SERVICE_TARGETS:
        return False
    return first in SERVICE_TARGETS or (bool(first) and first != then)


class RecoveryTime:
    """Time from a fault to the affected job's finished/failed, within a bound.

    A fault affects the attempts it broke (`FaultHits.broken`: the job it names, the jobs it
    lists as running when it struck, and the jobs last seen `started` on the worker it hit); a
    fault that names none of these (an API crash with nothing running on it) affects nothing. A
    job merely queued behind a backlog is not timed: its wait is capacity, not recovery
    (all_terminal still judges that it ends). A job is timed from the first fault that broke the
    attempt it ended with: a later fault on the same worker does not restart the clock; one that
    finds it running anew (seen `started` on another worker, or hit on a worker after an outage
    or on another worker) does.
    Affected jobs that never end fail the check.
    """

    name = "recovery_time"

    def __init__(self, *, bound_s: float) -> None:
        if bound_s < 0:
            raise ValueError(f"bound_s must be >= 0, got {bound_s}")
        self.bound_s = bound_s

    def check(self, history: History) -> Verdict:
        done: set[str] = set()
        pending: dict[str, tuple[float, str | None]] = {}  # job -> (t, worker) of the fault that broke its attempt
        anew: set[str] = set()  # pending jobs seen running a new attempt since
        samples: dict[str, float] = {}
        for e, fault in attributed(history):
            if e.kind == STATUS and e.job_id in pending and e.data.get("status") == "started":
                if e.data.get("worker") != pending[e.job_id][1]:
                    anew.add(e.job_id)
            elif e.kind == TERMINAL and e.data.get("status") in TERMINAL_STATUSES:
                if e.job_id is None or e.job_id in done:
                    continue
                done.add(e.job_id)
                if e.job_id in pending:
                    samples[e.job_id] = e.t - pending.pop(e.job_id)[0]
            elif fault is not None:
                for job_id in fault.broken - done:
                    before = pending.get(job_id)
                    moved = before is not None and _found_running_anew(before[1], fault.target)
                    if before is None or job_id in anew or moved:
                        pending[job_id] = (e.t, fault.target)
                        anew.discard(job_id)
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
