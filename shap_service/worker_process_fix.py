"""The recovery layer inside the worker process: leases, fencing, failure policy, sweeping.

`RecoveringWorker` is the RQ worker that `shap-worker` runs. The fix lives in this class, in
the very process that executes jobs; importing a module in a throwaway interpreter before
`rq worker` starts (the original deployment's "fix") changes nothing in the worker.

Two threads run in the worker parent, which stays responsive while the forked work-horse
computes (a GIL-holding or C-spinning job cannot starve them):

- the lifeline beats the running attempt's lease every HEARTBEAT_INTERVAL, keeps the worker's
  named Redis connection open (so a killed worker's sockets vanish and say so), kills a horse
  that runs past JOB_TIMEOUT + HARD_KILL_GRACE (hung C code ignores RQ's SIGALRM), and hands the
  job back when a SIGTERM'd worker's job would outlive SHUTDOWN_GRACE;
- the sweeper recovers other workers' abandoned jobs every SWEEP_INTERVAL (`tracking.Tracker.sweep`).

The horse and the parent write a job's outcome only through `Tracker.fence`, so an attempt that
was presumed dead and recovered elsewhere cannot overwrite the newer attempt (it is counted).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from . import __version__
from .config import Settings
from .tracking import TERMINAL, SweepReport, Tracker, connection_name, worker_key

__all__ = ["RecoveringWorker", "FIX_NAME"]

FIX_NAME = "bundled"
log = logging.getLogger("shap_service.recovery")

# The recovery layer's own processes write these; RQ's words for a dead horse.
_HORSE_DIED = "Work-horse terminated unexpectedly"
_TIMEOUT = "JobTimeoutException"


@dataclass
class _Attempt:
    job_id: str
    token: str
    number: int
    started: float  # monotonic
    timeout: float
    superseded: bool = False


def _event(event: str, **fields: object) -> None:
    log.info(json.dumps({"event": event, **fields}, default=str))


class RecoveringWorker(Worker):
    """An RQ `Worker` whose jobs always end `finished` or `failed`, whatever happens to it."""

    def __init__(self, *args, settings: Settings, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self._attempt: _Attempt | None = None
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._kill_reason = ""
        self._threads_stop = threading.Event()
        self._trackers: dict[int, Tracker] = {}
        # The fix's own connection pool: named, so `CLIENT LIST` shows whether we are alive.
        self._fix_connection = Redis.from_url(
            settings.redis_url,
            client_name=connection_name(self.name),
            socket_timeout=max(2.0, settings.heartbeat_interval),
            socket_connect_timeout=2.0,
            health_check_interval=0,
        )

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def tracker(self) -> Tracker:
        """A Tracker on a connection that belongs to this process (the horse gets its own)."""
        pid = os.getpid()
        tracker = self._trackers.get(pid)
        if tracker is None:
            conn = self._fix_connection if not self.is_horse else self.connection
            tracker = Tracker.from_settings(conn, self.settings)
            self._trackers[pid] = tracker
        return tracker

    def bootstrap(self, *args, **kwargs) -> None:
        super().bootstrap(*args, **kwargs)
        self._register()
        self._start_threads()

    def teardown(self) -> None:
        self._threads_stop.set()
        super().teardown()
        if not self.is_horse:
            self._fix_connection.delete(worker_key(self.name))

    def _start_threads(self) -> None:
        for target, name in ((self._lifeline, "lifeline"), (self._sweeper, "sweeper")):
            threading.Thread(target=target, name=f"shapfix-{name}", daemon=True).start()

    # -- the attempt ------------------------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        token = uuid.uuid4().hex
        number = self.tracker.start(job.id, token=token, worker=self.name, pid=os.getpid())
        if number < 0:
            why = "already terminal" if number == -1 else "another attempt holds its lease"
            _event("job_skipped", job_id=job.id, worker=self.name, why=why)
            self.connection.lrem(queue.intermediate_queue_key, 0, job.id)
            return
        timeout = float(job.timeout if job.timeout and job.timeout > 0 else self.settings.job_timeout)
        attempt = _Attempt(job.id, token, number, time.monotonic(), timeout)
        with self._lock:
            self._attempt = attempt
            self._kill_reason = ""
        _event("job_started", job_id=job.id, attempt=number, worker=self.name, pid=os.getpid())
        try:
            super().execute_job(job, queue)
        finally:
            with self._lock:
                self._attempt = None
            self._finish(job, attempt)

    def _finish(self, job: Job, attempt: _Attempt) -> None:
        """After the horse is gone: record the outcome RQ wrote, if it is still ours to record."""
        try:
            status = job.get_status(refresh=True)
        except Exception:  # noqa: BLE001 - deleted job, or Redis gone: the sweeper will see
            return
        status = getattr(status, "value", status)
        if status in TERMINAL and self.tracker.end(job.id, attempt.token, status):
            _event(
                f"job_{status}",
                job_id=job.id,
                attempt=attempt.number,
                worker=self.name,
                duration_s=round(time.monotonic() - attempt.started, 3),
            )

    def _owns(self, job: Job) -> _Attempt | None:
        attempt = self._attempt
        return attempt if attempt is not None and attempt.job_id == job.id else None

    # -- fenced outcome writes (called in the horse, or in the parent for a dead horse) -------

    def handle_job_success(self, job, queue, started_job_registry, execution):
        attempt = self._owns(job)
        if attempt and not self.tracker.fence(job.id, attempt.token, worker=self.name):
            _event("late_completion_rejected", job_id=job.id, attempt=attempt.number, worker=self.name)
            return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        attempt = self._owns(job)
        if attempt is None:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if not self.tracker.fence(job.id, attempt.token, worker=self.name):
            _event("late_failure_rejected", job_id=job.id, attempt=attempt.number, worker=self.name)
            return None
        cause = self._retryable_cause(exc_string)
        if cause:
            number = self.tracker.claim(job.id, mode="owner", token=attempt.token, by=self.name)
            if number >= 0:
                reason = f"{cause}, attempt {number}/{self.settings.max_attempts}"
                self.tracker.recover(
                    job.id, attempt=number, reason=reason, by=self.name, refund=cause.startswith("handed back")
                )
                return None
        return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def _retryable_cause(self, exc_string: str) -> str:
        """Why this failure is worth another attempt, or "" when it is the job's own error.

        A killed horse (OOM killer, hard timeout, hand-back) or a timeout says nothing about the
        request; an exception raised by the job code would raise again, so it fails at once.
        """
        if self._kill_reason:
            return self._kill_reason
        if exc_string.startswith(_HORSE_DIED):
            return "work-horse died: " + exc_string[len(_HORSE_DIED) :].strip(" ;")
        if _TIMEOUT in exc_string:
            return f"timeout: job exceeded its {self._attempt.timeout if self._attempt else '?'} s limit"
        return ""

    def maintain_heartbeats(self, job, execution):
        # A superseded (zombie) attempt must not re-add itself to RQ's started registry.
        attempt = self._attempt
        if attempt is not None and attempt.superseded:
            return
        super().maintain_heartbeats(job, execution)

    def request_stop(self, signum, frame):
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        super().request_stop(signum, frame)

    # -- threads in the worker parent -------------------------------------------------------

    def _kill_horse_for(self, reason: str) -> None:
        with self._lock:
            self._kill_reason = reason
        _event("horse_killed", worker=self.name, reason=reason, horse_pid=self.horse_pid)
        try:
            os.killpg(os.getpgid(self.horse_pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _lifeline(self) -> None:
        s = self.settings
        tick = min(0.2, s.heartbeat_interval / 2)  # PINGs keep the named connection up
        next_beat = 0.0
        while not self._threads_stop.wait(tick):
            try:
                now = time.monotonic()
                attempt = self._attempt
                if now >= next_beat:
                    next_beat = now + s.heartbeat_interval
                    self._register()
                    if attempt is not None and not attempt.superseded:
                        if not self.tracker.beat(attempt.job_id, attempt.token):
                            attempt.superseded = True
                            _event("attempt_superseded", job_id=attempt.job_id, worker=self.name)
                else:
                    self._fix_connection.ping()  # reconnect at once after a Redis restart
                if attempt is None or attempt.superseded or self._kill_reason or not self.horse_pid:
                    continue
                elapsed = now - attempt.started
                if elapsed > attempt.timeout + s.hard_kill_grace:
                    self._kill_horse_for(f"timeout: hung for {elapsed:.0f} s, past its {attempt.timeout:.0f} s limit")
                elif self._stop_at is not None and now - self._stop_at > s.shutdown_grace:
                    self._kill_horse_for("handed back: worker shutting down")
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying, never die
                log.debug("lifeline: %s", exc)

    def _sweeper(self) -> None:
        def note(report: SweepReport) -> None:
            if report.requeued or report.failed:
                _event("sweep", worker=self.name, **report.counts())

        Tracker.from_settings(self._fix_connection, self.settings).run(
            self._threads_stop,
            by=self.name,
            interval=self.settings.sweep_interval,
            connection_check=self.settings.connection_check,
            on_report=note,
        )

    def _register(self) -> None:
        """Tell Redis the fix runs in this process; `diagnose-worker` and tests read it."""
        from . import model

        key = worker_key(self.name)
        with self._fix_connection.pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "fix": FIX_NAME,
                    "fix_version": __version__,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "beat_at": time.time(),
                    "current_job": self._attempt.job_id if self._attempt else "",
                    "model_stats": json.dumps(model.stats()),
                    "settings": json.dumps(
                        {
                            "heartbeat_interval": self.settings.heartbeat_interval,
                            "liveness_ttl": self.settings.liveness_ttl,
                            "sweep_interval": self.settings.sweep_interval,
                            "max_attempts": self.settings.max_attempts,
                        }
                    ),
                },
            )
            pipe.expire(key, int(self.settings.liveness_ttl * 3) + 1)
            pipe.execute()
