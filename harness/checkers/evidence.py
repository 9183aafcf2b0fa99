"""The harness's own accounting of a run: the final read happened, Redis holds no job the
history cannot explain, and submissions were accepted (Jepsen's final read and availability).

* `FinalRead`: every accepted job was read once more after the faults healed; a job that could
  not be read makes the verdict `unknown` (the others would judge stale observations).
* `Reconciliation`: at the end the runner lists every job the Redis under test holds (job
  hashes, queues, registries) in a `reconcile` event. A job the history never saw is explained
  only by a submission whose answer was lost (a timeout, a dropped connection, a 5xx): more such
  jobs than lost answers fail (a request made two jobs), and each must have ended too. A job id
  a queue or registry names with no job hash is reported.
* `Availability`: the share of submission attempts accepted, outside fault windows and during
  them, each against the scenario's bound. An attempt is "during" when its request's time on the
  wire overlaps a fault's window (injected to healed, or `AVAILABILITY_WINDOW_S` for a fault that
  heals only in the final phase).
* `DataLossReported`: after a fault that empties Redis (redis-restart-empty), the jobs accepted
  before it are gone (read as missing), the jobs accepted after it ended, and the service said
  so: the runner reads the recovery layer's record of the loss through `diagnose-worker`.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.verdict import Verdict
from harness.defaults import AVAILABILITY_WINDOW_S, MISSING, TERMINAL_STATUSES
from harness.workload.history import (
    ACCEPTED,
    FAULT_HEALED,
    FAULT_INJECTED,
    NOTE,
    RECONCILE,
    REJECTED,
    STATUS,
    SUBMITTED,
    TERMINAL,
    History,
)

__all__ = [
    "DATA_LOSS_NOTE",
    "Availability",
    "DataLossReported",
    "FinalRead",
    "Reconciliation",
    "fault_windows",
    "lost_answers",
]

FINAL_PHASE = "final phase"
DATA_LOSS_NOTE = "data loss report (diagnose-worker)"
#: Faults after which Redis holds nothing it held before.
DATA_LOSS_FAULTS = frozenset({"redis-restart-empty"})


def _final_phase_t(history: History) -> float | None:
    for e in history.events:
        if e.kind == NOTE and str(e.data.get("text", "")).startswith(FINAL_PHASE):
            return e.t
    return None


class FinalRead:
    """After the heal, every accepted job was read again; one that was not: unknown."""

    name = "final_read"

    def check(self, history: History) -> Verdict:
        t_final = _final_phase_t(history)
        if t_final is None:
            return Verdict(self.name, True, {"recorded": False, "note": "the run recorded no final phase"})
        read = {e.job_id for e in history.events if e.kind == STATUS and e.data.get("final") and e.t >= t_final}
        unread = [j for j in history.jobs() if j not in read]
        return Verdict(self.name, None if unread else True, {"read": len(read), "unread_jobs": unread})


def lost_answers(history: History) -> int:
    """Submission attempts that may have created a job nobody was told about: every attempt
    followed by another attempt of the same request (it timed out, the connection dropped, or a
    5xx came back), and the last attempt of a request that got neither accepted nor rejected."""
    attempts: dict[str, int] = {}
    answered: set[str] = set()
    for e in history.events:
        rid = str(e.data.get("request_id"))
        if e.kind == SUBMITTED:
            attempts[rid] = attempts.get(rid, 0) + 1
        elif e.kind == ACCEPTED:
            answered.add(rid)
        elif e.kind == REJECTED and e.data.get("status") is not None and int(e.data["status"]) < 500:
            answered.add(rid)  # a 4xx: refused, no job
    return sum(n - 1 + (rid not in answered) for rid, n in attempts.items())


class Reconciliation:
    """What the Redis under test holds is what the history can explain."""

    name = "reconciliation"

    def check(self, history: History) -> Verdict:
        reads = [e for e in history.events if e.kind == RECONCILE]
        if not reads:
            return Verdict(self.name, True, {"recorded": False, "note": "the run recorded no reconciliation read"})
        read = reads[-1]
        if not read.data.get("read_ok"):
            return Verdict(self.name, None, {"error": read.data.get("error")})
        held: dict[str, Any] = dict(read.data.get("jobs") or {})
        known = set(history.jobs())
        unseen = {j: s for j, s in held.items() if j not in known}
        lost = lost_answers(history)
        not_ended = {j: s for j, s in unseen.items() if s not in TERMINAL_STATUSES}
        unexplained = max(0, len(unseen) - lost)
        details = {
            "jobs_in_redis": len(held),
            "unseen_jobs": unseen,
            "lost_answers": lost,
            "unexplained": unexplained,
            "unseen_not_ended": not_ended,
            "dangling_ids": list(read.data.get("dangling") or []),
        }
        return Verdict(self.name, not unexplained and not not_ended, details)


def fault_windows(history: History) -> list[tuple[float, float, str]]:
    """(start, end, fault) for every fault: injected until its heal, or AVAILABILITY_WINDOW_S
    when it heals only in the final phase (a held worker does not stop submissions)."""
    t_final = _final_phase_t(history)
    windows = []
    open_: dict[str, list[float]] = {}
    for e in history.events:
        name = str(e.data.get("fault"))
        if e.kind == FAULT_INJECTED:
            open_.setdefault(name, []).append(e.t)
        elif e.kind == FAULT_HEALED and open_.get(name):
            start = open_[name].pop(0)
            healed_early = t_final is None or e.t < t_final
            windows.append((start, e.t if healed_early else start + AVAILABILITY_WINDOW_S, name))
    for name, starts in open_.items():
        windows += [(t, t + AVAILABILITY_WINDOW_S, name) for t in starts]
    return sorted(windows)


class Availability:
    """The share of submissions accepted outside fault windows and during them, each >= its bound."""

    name = "availability"

    def __init__(self, *, outside: float, during: float) -> None:
        self.outside = outside
        self.during = during

    def check(self, history: History) -> Verdict:
        windows = fault_windows(history)
        pending: dict[str, float] = {}  # request -> when its current attempt went out
        counts = {"outside": [0, 0], "during": [0, 0]}  # [accepted, attempts]

        def settle(rid: str, t_end: float, accepted: bool) -> None:
            t0 = pending.pop(rid)
            where = "during" if any(s <= t_end and t0 <= e for s, e, _ in windows) else "outside"
            counts[where][1] += 1
            counts[where][0] += int(accepted)

        for e in history.events:
            rid = str(e.data.get("request_id"))
            if e.kind == SUBMITTED:
                if rid in pending:
                    settle(rid, e.t, False)  # the previous attempt failed: this is its retry
                pending[rid] = e.t
            elif e.kind in (ACCEPTED, REJECTED) and rid in pending:
                settle(rid, e.t, e.kind == ACCEPTED)
        for rid in list(pending):
            settle(rid, pending[rid], False)
        share: dict[str, float | None] = {k: (a / n if n else None) for k, (a, n) in counts.items()}
        low: dict[str, float] = {}
        for k, bound in (("outside", self.outside), ("during", self.during)):
            value = share[k]
            if value is not None and value < bound:
                low[k] = value
        details = {
            "outside": share["outside"],
            "during": share["during"],
            "attempts": {k: n for k, (_, n) in counts.items()},
            "bounds": {"outside": self.outside, "during": self.during},
            "below_bound": low,
            "windows": [{"start": round(s, 3), "end": round(e, 3), "fault": f} for s, e, f in windows],
        }
        return Verdict(self.name, not low, details)


class DataLossReported:
    """After a fault that emptied Redis: what it held is gone, what came after ran, and the loss
    was reported. No such fault in the run: nothing to judge (passes)."""

    name = "data_loss_reported"

    def check(self, history: History) -> Verdict:
        losses = [e.t for e in history.events if e.kind == FAULT_INJECTED and e.data.get("fault") in DATA_LOSS_FAULTS]
        if not losses:
            return Verdict(self.name, True, {"data_loss_faults": 0})
        first, last = losses[0], losses[-1]
        healed = [e.t for e in history.events if e.kind == FAULT_HEALED and e.data.get("fault") in DATA_LOSS_FAULTS]
        back = max(healed) if healed else last
        accepted_at: dict[str, float] = {}
        last_seen: dict[str, str] = {}
        for e in history.events:
            if e.kind == ACCEPTED and e.job_id is not None:
                accepted_at.setdefault(e.job_id, e.t)
            elif e.kind in (STATUS, TERMINAL) and e.job_id is not None:
                last_seen[e.job_id] = str(e.data.get("status"))
        before = [j for j, t in accepted_at.items() if t < first]
        after = [j for j, t in accepted_at.items() if t > back]
        kept = [j for j in before if last_seen.get(j) != MISSING]  # the loss did not happen?
        unended = [j for j in after if last_seen.get(j) not in TERMINAL_STATUSES]
        notes = [e for e in history.events if e.kind == NOTE and e.data.get("text") == DATA_LOSS_NOTE]
        report = notes[-1].data.get("redis_data_loss") if notes else None
        count = int(report.get("count", 0)) if isinstance(report, dict) else 0
        details = {
            "data_loss_faults": len(losses),
            "accepted_before": len(before),
            "lost_as_expected": len(before) - len(kept),
            "still_held": kept,
            "accepted_after": len(after),
            "not_ended_after": unended,
            "reported_losses": count,
            "report": report,
        }
        if not notes:
            return Verdict(self.name, None, {**details, "why": "the loss report was never read"})
        return Verdict(self.name, not kept and not unended and count >= len(losses), details)
