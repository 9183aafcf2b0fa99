"""An RQ app nobody here wrote: plain functions, pickled jobs, no knowledge of the fix.

Each execution leaves a witness file in the directory it is given (`<job id>.<pid>.start`,
then `.end`), so a test counts executions from its own evidence, never from the fix's account.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rq import get_current_job


def _mark(witness: str, what: str) -> None:
    job = get_current_job()
    job_id = job.id if job else "nojob"
    Path(witness, f"{job_id}.{os.getpid()}.{time.monotonic_ns()}.{what}").touch()


def work(seconds: float, witness: str) -> str:
    """Sleep, then return: the job the tests kill workers under."""
    _mark(witness, "start")
    time.sleep(seconds)
    _mark(witness, "end")
    return f"slept {seconds}"


def on_failure(job, connection, type, value, traceback) -> None:  # noqa: A002 - RQ's callback signature
    """RQ's failure callback: one witness file per call."""
    witness = job.kwargs.get("witness") or job.args[1]
    Path(witness, f"{job.id}.{os.getpid()}.{time.monotonic_ns()}.on_failure").touch()


def runs(witness: str, job_id: str, what: str = "start") -> int:
    """How many times the witness saw `what` for this job."""
    return sum(1 for p in Path(witness).iterdir() if p.name.startswith(job_id + ".") and p.name.endswith("." + what))
