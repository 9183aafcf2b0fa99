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
from typing import Any

import psutil
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from . import __version__, metrics
from .config import Settings
from .events import emit
from .tracking import TERMINAL, SweepReport, Tracker, connection_name, track_key, worker_key

__all__ = ["RecoveringWorker", "FIX_NAME"]

FIX_NAME = "bundled"
log = logging.getLogger("shap_service.recovery")

# The recovery layer's own processes write these; RQ's words for a dead horse.
_HORSE_DIED = "Work-horse terminated unexpectedly"
_TIMEOUT = "JobTimeoutException"
_UNREACHABLE = -3  # _start could not reach Redis


@dataclass
class _Attempt:
    job_id: str
    token: str
    number: int
    started: float  # monotonic
    timeout: float
    model: str = "?"
    superseded: bool = False
    peak_rss: int = 0
    flagged_long: bool = False
    warned_memory: bool = False


class RecoveringWorker(Worker):
    """An RQ `Worker` whose jobs always end `finished` or `failed`, whatever happens to it."""

    #: The tracker (leases, fencing, claims, sweeps) this worker uses; `mutants` swap it.
    tracker_class: type[Tracker] = Tracker
    #: RQ doubles its wait after each failed dequeue up to 60 s: after a 10 s outage a worker
    #: would sit idle for seconds with Redis back. Retry at least every 2 s instead.
    max_connection_wait_time = 2.0

    def __init__(self, *args, settings: Settings, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self._attempt: _Attempt | None = None
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._kill: tuple[str, str] | None = None  # (cause, why) when the lifeline killed the horse
        self._horse_rss: int | None = None
        self._p95: dict[str, tuple[float, float]] = {}  # model -> (when computed, p95 seconds)
        self._memory_limit = metrics.memory_limit_bytes(settings.memory_limit_mb)
        self._threads_stop = threading.Event()
        self._trackers: dict[int, Tracker] = {}
        # The fix's own connections, named so `CLIENT LIST` shows whether this worker is alive,
        # with timeouts short enough that a dead socket costs a fraction of the lease. The
        # lifeline has one to itself: the lease never waits behind a sweep or a stale socket.
        self._fix_connection = self._fix_client()
        # Its loop is the retry: no redis-py backoff, where a call made during an outage sat for
        # seconds after Redis was back, with the lease running out and the horse unpoliced.
        self._lifeline_connection = self._fix_client(retry=Retry(NoBackoff(), 0))
        self._lifeline_ok_at = time.monotonic()  # last time the lifeline reached Redis

    # -- plumbing ---------------------------------------------------------------------------

    def _fix_client(self, **options: Any) -> Redis:
        io = self.settings.redis_io_timeout_s
        return Redis.from_url(
            self.settings.redis_url,
            client_name=connection_name(self.name),
            socket_timeout=io,
            socket_connect_timeout=io,
            health_check_interval=0,
            **options,
        )

    @property
    def tracker(self) -> Tracker:
        """A Tracker on a connection that belongs to this process (the horse gets its own)."""
        pid = os.getpid()
        tracker = self._trackers.get(pid)
        if tracker is None:
            conn = self._fix_connection if not self.is_horse else self.connection
            tracker = self.tracker_class.from_settings(conn, self.settings)
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

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        self._await_lifeline()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._await_lifeline()
        token = uuid.uuid4().hex
        number = self._start(job, token)
        if number < 0:
            why = {-1: "already terminal", -2: "another attempt holds its lease"}.get(number, "Redis unreachable")
            emit("job_skipped", job_id=job.id, worker=self.name, why=why)
            if number != _UNREACHABLE:  # else the sweepers requeue it from the dequeue gap
                self.connection.lrem(queue.intermediate_queue_key, 0, job.id)
            return
        timeout = float(job.timeout if job.timeout and job.timeout > 0 else self.settings.job_timeout)
        try:
            model = str((job.kwargs or {}).get("model_name", "?"))
        except Exception:  # noqa: BLE001 - undecodable job data (e.g. a pickle): the horse fails it
            model = "?"
        attempt = _Attempt(job.id, token, number, time.monotonic(), timeout, model=model)
        with self._lock:
            self._attempt = attempt
            self._kill = None
            self._horse_rss = None
        emit("job_started", job_id=job.id, attempt=number, worker=self.name, pid=os.getpid(), model=model)
        try:
            super().execute_job(job, queue)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # Redis went away while RQ wrapped up the job (a restart, a partition). Stock RQ lets
            # this kill the worker; the lease and the sweepers decide the job's fate, so keep the
            # worker: wait for Redis and go on serving.
            emit("redis_lost", level=logging.WARNING, job_id=job.id, worker=self.name, error=str(exc))
            self._await_redis()
        finally:
            with self._lock:
                self._attempt = None
            self._finish(job, attempt)

    def _start(self, job: Job, token: str) -> int:
        """Tracker.start, retried over a short Redis blip (START is idempotent per token)."""
        for delay in (0.0, 0.2, 0.5, 1.0):
            time.sleep(delay)
            try:
                return self.tracker.start(job.id, token=token, worker=self.name, pid=os.getpid())
            except (RedisConnectionError, RedisTimeoutError):
                continue
        return _UNREACHABLE

    def _lifeline_healthy(self) -> bool:
        s = self.settings
        return time.monotonic() - self._lifeline_ok_at < s.heartbeat_interval + s.redis_io_timeout_s

    def _await_lifeline(self) -> None:
        """Take no job while this worker cannot prove it is alive.

        Its main connection may be back before its lifeline is (a Redis restart, a network
        reconnect): a job started now would have its lease lapse and run twice.
        """
        if self._lifeline_healthy():
            return
        emit("waiting_for_lifeline", level=logging.WARNING, worker=self.name)
        while not self._lifeline_healthy() and not self._stop_requested:
            time.sleep(0.05)

    def _await_redis(self) -> None:
        delay = 0.2
        while not self._stop_requested:
            try:
                self.connection.ping()
                emit("redis_back", worker=self.name)
                return
            except (RedisConnectionError, RedisTimeoutError):
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def wait_for_horse(self):
        pid, stat, rusage = super().wait_for_horse()
        if rusage is not None:
            self._horse_rss = int(rusage.ru_maxrss) * 1024  # Linux reports KiB
        return pid, stat, rusage

    def _finish(self, job: Job, attempt: _Attempt) -> None:
        """After the horse is gone: record the outcome RQ wrote, if it is still ours to record."""
        try:
            status = job.get_status(refresh=True)
        except Exception:  # noqa: BLE001 - deleted job, or Redis gone: the sweeper will see
            return
        status = getattr(status, "value", status)
        if status not in TERMINAL or not self.tracker.end(job.id, attempt.token, status):
            return
        duration = time.monotonic() - attempt.started
        rss = max(self._horse_rss or 0, attempt.peak_rss) or None
        track = self.tracker.read(job.id)
        cause = "ok" if status == "finished" else track.get("cause", "exception")
        wait = None
        if track.get("first_started_at") and track.get("enqueued_at"):
            wait = max(0.0, float(track["first_started_at"]) - float(track["enqueued_at"]))
        q = self.settings.queue_name
        with self._fix_connection.pipeline(transaction=False) as pipe:
            facts: dict[str, str | int | float] = {"duration_s": round(duration, 4), "cause": cause}
            if rss:
                facts["peak_rss_bytes"] = rss
                pipe.lpush(f"shap:peaks:{q}", rss)
                pipe.ltrim(f"shap:peaks:{q}", 0, 199)
            if wait is not None:
                facts["queue_wait_s"] = round(wait, 4)
            pipe.hset(track_key(job.id), mapping=facts)  # type: ignore[arg-type]  # redis-py's key type is invariant
            if status == "finished":
                pipe.lpush(f"shap:durations:{attempt.model}", round(duration, 4))
                pipe.ltrim(f"shap:durations:{attempt.model}", 0, 199)
            pipe.srem(f"shap:long:{q}", job.id)
            metrics.record_outcome(
                pipe, q, outcome=status, cause=cause, duration_s=duration, queue_wait_s=wait, peak_rss_bytes=rss
            )
            pipe.execute()
        emit(
            f"job_{status}",
            job_id=job.id,
            attempt=attempt.number,
            worker=self.name,
            cause=cause,
            duration_s=round(duration, 3),
            queue_wait_s=None if wait is None else round(wait, 3),
            peak_rss_bytes=rss,
        )

    def _owns(self, job: Job) -> _Attempt | None:
        attempt = self._attempt
        return attempt if attempt is not None and attempt.job_id == job.id else None

    # -- fenced outcome writes (called in the horse, or in the parent for a dead horse) -------

    def handle_job_success(self, job, queue, started_job_registry, execution):
        attempt = self._owns(job)
        if attempt and not self.tracker.fence(job.id, attempt.token, worker=self.name):
            emit("late_completion_rejected", job_id=job.id, attempt=attempt.number, worker=self.name)
            return
        super().handle_job_success(job, queue, started_job_registry, execution)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string="", execution=None):
        attempt = self._owns(job)
        if attempt is None:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        if not self.tracker.fence(job.id, attempt.token, worker=self.name):
            emit("late_failure_rejected", job_id=job.id, attempt=attempt.number, worker=self.name)
            return None
        cause, why = self._classify(exc_string)
        if cause != "exception":
            number = self.tracker.claim(job.id, mode="owner", token=attempt.token, by=self.name)
            if number >= 0:
                if not self.is_horse:
                    with self._fix_connection.pipeline(transaction=False) as pipe:
                        rss = max(self._horse_rss or 0, attempt.peak_rss) or None
                        metrics.record_attempt(
                            pipe,
                            self.settings.queue_name,
                            duration_s=time.monotonic() - attempt.started,
                            peak_rss_bytes=rss,
                        )
                        pipe.execute()
                reason = f"{why}, attempt {number}/{self.settings.max_attempts}"
                self.tracker.recover(
                    job.id, attempt=number, reason=reason, by=self.name, cause=cause, refund=cause == "handed_back"
                )
                return None
        error_type = exc_string.strip().splitlines()[-1].split(":")[0] if exc_string.strip() else "?"
        self.connection.hset(track_key(job.id), mapping={"cause": cause, "error_type": error_type[:100]})
        return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)

    def _classify(self, exc_string: str) -> tuple[str, str]:
        """(cause, why): is this failure worth another attempt?

        A killed horse (OOM killer, hard timeout, hand-back) or a timeout says nothing about the
        request, so it is retried; an exception raised by the job code would raise again, so the
        job fails at once ("exception").
        """
        if self._kill is not None:
            return self._kill
        if exc_string.startswith(_HORSE_DIED):
            return "killed", "work-horse died: " + exc_string[len(_HORSE_DIED) :].strip(" ;")
        if _TIMEOUT in exc_string:
            limit = self._attempt.timeout if self._attempt else "?"
            return "timeout", f"timeout: job exceeded its {limit} s limit"
        return "exception", ""

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

    def _kill_horse_for(self, cause: str, why: str) -> None:
        with self._lock:
            self._kill = (cause, why)
        emit("horse_killed", level=logging.WARNING, worker=self.name, cause=cause, reason=why, horse_pid=self.horse_pid)
        try:
            os.killpg(os.getpgid(self.horse_pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _lifeline(self) -> None:
        s = self.settings
        tick = min(0.2, s.heartbeat_interval / 2)  # PINGs keep the named connection up
        tracker = self.tracker_class.from_settings(self._lifeline_connection, s)
        next_beat = 0.0
        lost_at: float | None = None
        while not self._threads_stop.wait(tick):
            now = time.monotonic()
            attempt = self._attempt
            try:
                if now >= next_beat:
                    self._beat(tracker, attempt, now)
                    next_beat = now + s.heartbeat_interval  # a failed beat is retried next tick
                else:
                    self._lifeline_connection.ping()  # reconnect at once after a Redis restart
                self._lifeline_ok_at = time.monotonic()
                if lost_at is not None:
                    emit("lifeline_restored", worker=self.name, after_s=round(now - lost_at, 3))
                    lost_at = None
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if lost_at is None:
                    lost_at = now
                    emit("lifeline_lost", level=logging.WARNING, worker=self.name, error=str(exc))
                # Sockets opened before the outage may be dead without knowing it: drop the idle ones.
                self._fix_connection.connection_pool.disconnect(inuse_connections=False)
            except Exception as exc:  # noqa: BLE001 - never die: the lease depends on this thread
                log.warning("lifeline: %s", exc)
            try:
                self._police_horse(attempt, now)  # also while Redis is away
            except Exception as exc:  # noqa: BLE001 - never die
                log.warning("lifeline: policing the horse: %s", exc)

    def _beat(self, tracker: Tracker, attempt: _Attempt | None, now: float) -> None:
        self._register(self._lifeline_connection)
        if attempt is None or attempt.superseded:
            return
        if not tracker.beat(attempt.job_id, attempt.token):
            attempt.superseded = True
            emit("attempt_superseded", job_id=attempt.job_id, worker=self.name)
        else:
            self._watch(attempt, now)

    def _police_horse(self, attempt: _Attempt | None, now: float) -> None:
        """Kill a horse hung past its timeout, or one that outlives a shutdown's grace."""
        s = self.settings
        if attempt is None or attempt.superseded or self._kill is not None or not self.horse_pid:
            return
        elapsed = now - attempt.started
        if elapsed > attempt.timeout + s.hard_kill_grace:
            why = f"timeout: hung for {elapsed:.0f} s, past its {attempt.timeout:.0f} s limit"
            self._kill_horse_for("timeout", why)
        elif self._stop_at is not None and now - self._stop_at > s.shutdown_grace:
            self._kill_horse_for("handed_back", "handed back: worker shutting down")

    def _watch(self, attempt: _Attempt, now: float) -> None:
        """Flag a job that runs abnormally long, and warn when its horse nears the memory limit."""
        s, q = self.settings, self.settings.queue_name
        try:
            horse = psutil.Process(self.horse_pid)
            rss = horse.memory_info().rss + sum(c.memory_info().rss for c in horse.children(recursive=True))
            attempt.peak_rss = max(attempt.peak_rss, rss)
        except (psutil.Error, ValueError):
            rss = 0
        if self._memory_limit and not attempt.warned_memory and rss > s.memory_warn_share * self._memory_limit:
            attempt.warned_memory = True
            self._lifeline_connection.hset(track_key(attempt.job_id), "memory_warning", rss)
            self._lifeline_connection.hincrby(f"shap:stats:{q}", "memory_warnings", 1)
            emit(
                "memory_warning",
                level=logging.WARNING,
                job_id=attempt.job_id,
                worker=self.name,
                rss_bytes=rss,
                limit_bytes=self._memory_limit,
                recommend_plan=metrics.recommend_plan(rss),
            )
        elapsed = now - attempt.started
        if attempt.flagged_long or elapsed < s.long_running_min_s:
            return
        p95 = self._model_p95(attempt.model, now)
        if p95 is not None and elapsed > s.long_running_factor * p95:
            attempt.flagged_long = True
            with self._lifeline_connection.pipeline(transaction=False) as pipe:
                pipe.sadd(f"shap:long:{q}", attempt.job_id)
                pipe.hset(track_key(attempt.job_id), mapping={"long_running": 1, "p95_s": round(p95, 4)})
                pipe.hincrby(f"shap:stats:{q}", "long_running_flagged", 1)
                pipe.execute()
            emit(
                "job_long_running",
                level=logging.WARNING,
                job_id=attempt.job_id,
                worker=self.name,
                running_s=round(elapsed, 1),
                model=attempt.model,
                model_p95_s=round(p95, 3),
            )

    def _model_p95(self, model: str, now: float) -> float | None:
        """The p95 duration of the model's last 200 finished jobs, refreshed every 30 s."""
        cached = self._p95.get(model)
        if cached and now - cached[0] < 30:
            return cached[1]
        raw = sorted(float(x) for x in self._lifeline_connection.lrange(f"shap:durations:{model}", 0, 199))
        p95 = raw[min(len(raw) - 1, int(0.95 * len(raw)))] if len(raw) >= 5 else None
        if p95 is not None:
            self._p95[model] = (now, p95)
        return p95

    def _sweeper(self) -> None:
        def note(report: SweepReport) -> None:
            if report.requeued or report.failed:
                emit("sweep", worker=self.name, **report.counts())

        self.tracker_class.from_settings(self._fix_connection, self.settings).run(
            self._threads_stop,
            by=self.name,
            interval=self.settings.sweep_interval,
            connection_check=self.settings.connection_check,
            on_report=note,
        )

    def _register(self, conn: Redis | None = None) -> None:
        """Tell Redis the fix runs in this process; `diagnose-worker` and tests read it."""
        from . import model

        key = worker_key(self.name)
        with (conn or self._fix_connection).pipeline() as pipe:
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
