"""The workload: the generator (`plan`: what is sent), the clients (`client`: who sends it and
watches every job to its end) and the `history` they record (harness.workload.history)."""

from __future__ import annotations

from harness.workload.client import WorkloadRun
from harness.workload.plan import JobSpec, Workload, diabetes_rows

__all__ = ["JobSpec", "Workload", "WorkloadRun", "diabetes_rows"]
