"""Which fault hit which attempt: the one place that reads a `fault_injected` event.

A fault event names what it broke in up to three ways: the job it aimed at (`job_id`), the jobs
it lists as running when it struck (`running_jobs`: a Redis kill, an API crash), and the worker
it hit (`target`), on which the history may have seen other jobs `started`. Checkers ask
different questions of the same reading, so `FaultHits` keeps the three apart:

* `broken`: every attempt the fault names in any of the three ways (recovery-time times these,
  each from the first fault that broke its attempt);
* `excused`: the jobs whose extra execution it explains (re-executions credit these): the
  attempts it cut short, and the jobs last seen running on the worker it hit. A fault that names
  no job excuses only what ran on what it hit: a Redis kill its listed running jobs, an API
  crash nothing (workers carry on);
* `cut_short`: the attempts it surely killed: its job, or for a Redis kill the listed running
  jobs. An API crash cuts none (expected-outcome counts these).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from harness.workload.history import FAULT_INJECTED, STATUS, Event, History

__all__ = ["FaultHits", "attributed", "fault_hits"]


@dataclass(frozen=True)
class FaultHits:
    """What one fault event says it broke (see the module docstring for the three readings)."""

    named: str | None
    listed: tuple[str, ...]
    on_target: frozenset[str]
    target: str | None

    @property
    def broken(self) -> set[str]:
        """Its job, its listed running jobs and the jobs last seen running on its target worker;
        empty when it names none of these."""
        hit = {self.named} if self.named is not None else set()
        return hit | set(self.listed) | self.on_target

    @property
    def excused(self) -> set[str]:
        """Jobs whose re-execution this fault explains: what it cut short, and what ran on the
        worker it hit."""
        return set(self.cut_short) | self.on_target

    @property
    def cut_short(self) -> list[str]:
        """Jobs whose running attempt it killed: the job it names, or a Redis kill's running jobs."""
        if self.named is not None:
            return [self.named]
        return list(self.listed) if self.target == "redis" else []


def fault_hits(event: Event, running_on: Mapping[str, str] | None = None) -> FaultHits:
    """Read a fault event; `running_on` maps a job to the worker it was last seen `started` on."""
    # record(..., job_id=x) puts the target job in Event.job_id; a hand-written history may put it in data.
    named = event.job_id if event.job_id is not None else event.data.get("job_id")
    target = event.data.get("target")
    on_target = frozenset(j for j, w in (running_on or {}).items() if target and w == target)
    return FaultHits(
        named=str(named) if named is not None else None,
        listed=tuple(str(j) for j in event.data.get("running_jobs") or []),
        on_target=on_target,
        target=str(target) if target else None,
    )


def attributed(history: History) -> Iterator[tuple[Event, FaultHits | None]]:
    """Every event in order, a fault paired with its `FaultHits` (others with None), read against
    where each job was last seen running at that moment."""
    running_on: dict[str, str] = {}
    for e in history.events:
        if e.kind == STATUS and e.job_id is not None:
            if e.data.get("status") == "started" and e.data.get("worker"):
                running_on[e.job_id] = str(e.data["worker"])
            else:
                running_on.pop(e.job_id, None)
        yield e, fault_hits(e, running_on) if e.kind == FAULT_INJECTED else None
