"""Liveness: every accepted job reaches an end, and none vanishes on the way.

RQ has 11 statuses; only `finished` and `failed` (harness.defaults.TERMINAL_STATUSES) count as
an end: `stopped` / `canceled` mean someone gave up on the job, not that it was recovered.
"""

from __future__ import annotations

from typing import Any

from harness.checkers.verdict import Verdict
from harness.defaults import MISSING, TERMINAL_STATUSES
from harness.workload.history import ACCEPTED, REJECTED, STATUS, SUBMITTED, TERMINAL, History

__all__ = ["AllTerminal", "NoLost"]


class AllTerminal:
    """Every accepted job must end finished or failed (its last terminal event)."""

    name = "all_terminal"

    def check(self, history: History) -> Verdict:
        last_seen: dict[str, str] = {}
        last_terminal: dict[str, str] = {}
        for e in history.events:
            if e.job_id is None:
                continue
            if e.kind in (STATUS, TERMINAL):
                last_seen[e.job_id] = str(e.data.get("status"))
            if e.kind == TERMINAL:
                last_terminal[e.job_id] = str(e.data.get("status"))
        jobs = history.jobs()
        counts = {"accepted": len(jobs), "finished": 0, "failed": 0, "stuck": 0}
        stuck = []
        for job_id in jobs:
            status = last_terminal.get(job_id)
            if status in TERMINAL_STATUSES:
                counts[status] += 1
            else:
                counts["stuck"] += 1
                stuck.append({"job_id": job_id, "last_status": last_seen.get(job_id, ACCEPTED)})
        return Verdict(self.name, not stuck, {**counts, "stuck_jobs": stuck})


class NoLost:
    """Every accepted job must still be known to the service afterwards.

    Lost: never observed again after acceptance, or last reported "missing".
    Submissions with neither an accept nor a reject are only reported: the
    client cannot know whether those jobs exist.
    """

    name = "no_lost"

    def check(self, history: History) -> Verdict:
        events = history.events
        accepted_at: dict[str, int] = {}
        last_obs: dict[str, str] = {}
        submitted: list[Any] = []
        answered: set[Any] = set()
        for i, e in enumerate(events):
            if e.kind == SUBMITTED:
                submitted.append(e.data.get("request_id"))
            elif e.kind in (ACCEPTED, REJECTED):
                answered.add(e.data.get("request_id"))
                if e.kind == ACCEPTED and e.job_id is not None:
                    accepted_at.setdefault(e.job_id, i)
            elif e.kind in (STATUS, TERMINAL) and e.job_id in accepted_at:
                last_obs[e.job_id] = str(e.data.get("status"))
        lost: dict[str, str] = {}
        for job_id in accepted_at:
            if job_id not in last_obs:
                lost[job_id] = "never observed"
            elif last_obs[job_id] == MISSING:
                lost[job_id] = "reported missing"
        unacked = [r for r in submitted if r not in answered]
        return Verdict(
            self.name,
            not lost,
            {
                "accepted": len(accepted_at),
                "lost": list(lost),
                "lost_reasons": lost,
                "unacknowledged": len(unacked),
                "unacknowledged_requests": unacked,
            },
        )
