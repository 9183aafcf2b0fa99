"""Deliberately broken recovery layers, so the harness can prove it sees each kind of bug.

Run by `python -m harness.testing.worker --fix NAME` (harness: `--fix NAME`), never by the
production `shap-worker`.
Each breaks exactly one guarantee of the bundled fix. A harness run that stays green against
one of them has a blind spot; tests/test_detection_power.py checks that each goes red.

| name | what is broken | what must catch it |
|---|---|---|
| eager-sweeper | the sweep takes jobs whose worker is alive | jobs re-executed with no fault |
| never-fail | attempts are never exhausted | hung jobs never end |
| racy-sweeper | claim is check-then-act, no duplicate-delivery guard | a job executed twice at once |
| no-fencing | a presumed-dead attempt may still write its result | a zombie's result replaces the newer one |
| outside-process | the fix is imported in a throwaway interpreter, then plain RQ runs | stuck jobs |
| late-recovery | a dead worker's job is taken back 6 s late | recovery time past the bound |
| short-timeout | every job gets a 1 s timeout, whatever it asked for | good slow jobs failed |
| torn-result | one SHAP value of every result is off by one | results that do not add up |
| eager-cleanup | a job's hash is deleted a second after it ended | jobs the service no longer knows |
| swapped-rows | a job explains its rows in reverse order | results that add up but answer another request |
| blind-to-loss | a Redis that came back empty goes unnoticed | jobs gone without a word (redis-restart-empty) |
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from rq.job import Job

from rq_recovery.keys import fence_key, live_key, running_key, track_key
from rq_recovery.tracking import Tracker
from rq_recovery.worker_process_fix import RecoveringWorker

__all__ = ["BROKEN_FIXES", "OUTSIDE_PROCESS", "apply_fix_in_a_throwaway_interpreter", "broken_worker"]


class _EagerTracker(Tracker):
    def sweep(self, **kwargs):
        kwargs["force"] = True  # "a job running for a while must be stuck"
        return super().sweep(**kwargs)


class _NeverFailTracker(Tracker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_attempts = 10**9  # "one more try cannot hurt"


class _RacyTracker(Tracker):
    def claim(self, job_id: str, *, mode: str, token: str = "", by: str, stale_after: float = 30.0) -> int:
        # Read, think, write: two sweepers can both decide to recover the same job.
        track = self.read(job_id)
        lease = self.connection.exists(live_key(job_id))
        if mode == "expired" and (lease or track.get("token") != token or not token):
            return -1
        if mode == "owner" and track.get("token") != token:
            return -1
        if mode in ("limbo", "stale") and track.get("state") not in ("queued", "recovering"):
            return -1
        time.sleep(1.0)  # long enough that every sweeper that saw the death is thinking too
        self.connection.hset(
            track_key(job_id),
            mapping={"state": "recovering", "token": "", "recovering_by": by, "recovering_at": self.clock.now()},
        )
        self.connection.delete(live_key(job_id), fence_key(job_id))
        return int(track.get("attempt", 0))

    def start(self, job_id: str, *, token: str, worker: str, pid: int, queue: str | None = None) -> int:
        # No duplicate-delivery guard: whoever dequeues the job runs it.
        attempt = int(self.connection.hincrby(track_key(job_id), "attempt", 1))
        now = self.clock.now()
        self.connection.hset(
            track_key(job_id),
            mapping={
                "state": "running",
                "token": token,
                "worker": worker,
                "pid": pid,
                "started_at": now,
                "heartbeat_at": now,
                "queue": self.queue_name,
            },
        )
        self.connection.hsetnx(track_key(job_id), "first_started_at", now)
        self.connection.set(fence_key(job_id), token)
        self.connection.set(live_key(job_id), token, px=int(self.liveness_ttl * 1000))
        self.connection.zadd(running_key(), {job_id: now})
        return attempt


class _LateTracker(Tracker):
    def claim(self, job_id: str, **kwargs) -> int:
        time.sleep(6.0)  # "give it a little longer, it may come back"
        return super().claim(job_id, **kwargs)


class _ShortTimeout:
    def perform_job(self, job: Job, queue, execution) -> bool:
        job.timeout = 1  # "nothing should take more than a second"
        return super().perform_job(job, queue, execution)  # type: ignore[misc]


class _TornResult:
    def _finalize_success(self, job: Job, queue, execution, return_value):
        if isinstance(return_value, dict) and return_value.get("shap_values"):
            rows = [list(r) for r in return_value["shap_values"]]
            rows[0][0] += 1.0  # two attempts' halves glued together
            return_value = {**return_value, "shap_values": rows}
        return super()._finalize_success(job, queue, execution, return_value)  # type: ignore[misc]


class _SwappedRows:
    def perform_job(self, job: Job, queue, execution) -> bool:
        kwargs = job.kwargs
        if isinstance(kwargs.get("rows"), list):
            kwargs["rows"] = kwargs["rows"][::-1]  # "the order of rows does not matter"
        return super().perform_job(job, queue, execution)  # type: ignore[misc]


class _EagerCleanup:
    def execute_job(self, job: Job, queue) -> None:
        super().execute_job(job, queue)  # type: ignore[misc]
        # "nobody reads a result after a second": the job hash goes, whatever its result_ttl.
        timer = threading.Timer(1.0, job.delete)
        timer.daemon = True
        timer.start()


class _Unfenced:
    @contextlib.contextmanager
    def _fenced(self, job: Job, **_facts: str) -> Iterator[None]:
        yield None  # "the worker finished it, so its result is good"


class _BlindToLoss:
    def _epoch_watch(self):  # type: ignore[no-untyped-def]
        watch = super()._epoch_watch()  # type: ignore[misc]
        watch.check = lambda: False  # "Redis answers again: carry on"
        return watch


#: name -> (the tracker it runs, mixins before the worker class)
_BREAKS: dict[str, tuple[type[Tracker], tuple[type, ...]]] = {
    "eager-sweeper": (_EagerTracker, ()),
    "never-fail": (_NeverFailTracker, ()),
    "racy-sweeper": (_RacyTracker, ()),
    "no-fencing": (Tracker, (_Unfenced,)),
    "late-recovery": (_LateTracker, ()),
    "short-timeout": (Tracker, (_ShortTimeout,)),
    "torn-result": (Tracker, (_TornResult,)),
    "eager-cleanup": (Tracker, (_EagerCleanup,)),
    "swapped-rows": (Tracker, (_SwappedRows,)),
    "blind-to-loss": (Tracker, (_BlindToLoss,)),
}

#: Not a worker class: the original deployment's mistake; its worker is stock RQ.
OUTSIDE_PROCESS = "outside-process"

#: Every deliberately broken fix, by the name `--fix` takes.
BROKEN_FIXES = (*_BREAKS, OUTSIDE_PROCESS)


def broken_worker(name: str, base: type[RecoveringWorker] = RecoveringWorker) -> type[RecoveringWorker]:
    """`base` (the service's own worker class) with the one guarantee `name` breaks, broken."""
    tracker, mixins = _BREAKS[name]
    return type(f"Broken_{name.replace('-', '_')}", (*mixins, base), {"tracker_class": tracker})


def apply_fix_in_a_throwaway_interpreter() -> None:
    """What the original deployment did: "apply" the fix in another process. It changes nothing here."""
    subprocess.run([sys.executable, "-c", "import rq_recovery.worker_process_fix"], check=True)
