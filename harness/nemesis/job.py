"""Job faults: the job itself misbehaves (workload kind "hang"); no process is touched."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.nemesis.base import FaultContext

__all__ = ["HangJob"]


@dataclass
class HangJob:
    """The job hangs by itself (workload kind "hang"); this marks when one is seen running.

    Only a job timeout or a job-level heartbeat can end it; nothing is done to any process.
    """

    kinds: tuple[str, ...] | None = ("hang",)
    for_s: float | None = None
    name: ClassVar[str] = "hang-job"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        return {"target": target.worker, "job_id": target.job_id, "how": "job code blocks (chaos hang)"}

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the service's timeout policy must end the job."""
