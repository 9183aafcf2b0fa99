"""The recovery layer inside the worker process: leases, fencing, failure policy, sweeping.

Long on purpose (~720 lines): `RecoveryMixin` overrides a dozen of RQ's `Worker` methods, and
each override only makes sense beside the others (the horse's fenced start, the parent's
lifeline, the outcome commit, shutdown); one class in one module keeps that contract visible.

`RecoveringWorker` is an RQ `Worker` (and `RecoveryMixin` makes any `Worker` subclass one):

    rq worker -w rq_recovery.worker_process_fix.RecoveringWorker [queues]

The fix lives in this class, in the very process that executes jobs; importing a module in a
throwaway interpreter before `rq worker` starts (the original deployment's "fix") changes
nothing in the worker. It needs no constructor argument: settings come from the environment
(`rq_recovery.config`), and the worker's own connection, queues, name and serializer are used
wherever the fix talks to Redis.

Two threads run in the worker parent, which stays responsive while the forked work-horse
computes (a GIL-holding or C-spinning job cannot starve them):

- the lifeline beats the running attempt's lease every HEARTBEAT_INTERVAL, keeps the worker's
  named Redis connection open (so a killed worker's sockets vanish and say so), kills a horse
  that runs past its timeout + HARD_KILL_GRACE (hung C code ignores RQ's SIGALRM), and hands
  the job back when a SIGTERM'd worker's job would outlive SHUTDOWN_GRACE;
- the sweeper recovers other workers' abandoned jobs every SWEEP_INTERVAL (`Tracker.sweep`).

Outcomes are RQ's own: the fix only fences RQ's outcome transaction (`fencing`) and, when the
work-horse was killed from outside (the OOM killer) or handed back, requeues the job instead
of failing it. Everything else (exceptions, timeouts, RQ's Retry and Repeat, stop, kill-horse
commands, callbacks, dependents) goes through RQ unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq.job import Job
from rq.queue import Queue
from rq.worker import HerokuWorker, RandomWorker, RoundRobinWorker, Worker

from . import __version__, metrics
from .allowlist import JobNotAllowed, allowed_by, parse_allowlist
from .config import Settings
from .epoch import EpochWatch
from .events import emit
from .fencing import Fence, Superseded, fenced_client
from .keys import connection_name, durations_key, long_key, stats_key, track_key, worker_key
from .mailbox import Mailbox
from .tracking import SweepReport, Tracker

__all__ = [
    "FIX_NAME",
    "RecoveringHerokuWorker",
    "RecoveringRandomWorker",
    "RecoveringRoundRobinWorker",
    "RecoveringWorker",
    "RecoveryMixin",
]

FIX_NAME = "bundled"
log = logging.getLogger("rq_recovery")

# RQ's words for a dead horse.
_HORSE_DIED = "Work-horse terminated unexpectedly"
_UNREACHABLE = -3  # _start could not reach Redis


@dataclass
class _Attempt:
    job_id: str
    token: str
    number: int
    started: float  # monotonic
    timeout: float  # math.inf for job_timeout=-1
    queue: str
    func: str = "?"
    superseded: bool = False
    peak_rss: int = 0
    flagged_long: bool = False
    warned_memory: bool = False


class RecoveryMixin:
    """Makes an RQ `Worker` (or subclass) one whose jobs always end, whatever happens to it."""

    #: The tracker (leases, claims, sweeps) this worker uses; deliberately broken ones swap it.
    tracker_class: type[Tracker] = Tracker
    #: The job functions this worker runs (import paths, `module.*`); None: JOB_ALLOWLIST, and
    #: when that is unset too, any function a job names (RQ's behaviour).
    job_allowlist: tuple[str, ...] | None = None
    #: RQ doubles its wait after each failed dequeue up to 60 s: after a 10 s outage a worker
    #: would sit idle for seconds with Redis back. Retry at least every 2 s instead.
    max_connection_wait_time = 2.0

    # Attributes RQ's Worker provides.
    connection: Redis
    name: str
    serializer: Any
    is_horse: bool
    horse_pid: int
    death_penalty_class: Any
    _exc_handlers: list[Any]
    _stopped_job_id: str | None
    _stop_requested: bool

    def __init__(self, *args: Any, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings if settings is not None else Settings.from_env()
        self._attempt: _Attempt | None = None
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._kill: tuple[str, str] | None = None  # (cause, why) when the lifeline killed the horse
        self._rq_killed_horse = False  # RQ itself killed it (kill-horse command, its own timeout)
        self._horse_rss: int | None = None
        self._p95: dict[str, tuple[float, float]] = {}  # function -> (when computed, p95 seconds)
        self._memory_limit = metrics.memory_limit_bytes(self.settings.memory_limit_mb)
        self._threads_stop: threading.Event | None = None
        self._trackers: dict[int, Tracker] = {}
        self._clients: dict[str, Redis] = {}
        self._named = True
        self._burst = False
        self._lifeline_ok_at = time.monotonic()  # last time the lifeline reached Redis
        self._mailbox = Mailbox()  # the horse's note of what its commit wrote

    # -- plumbing ---------------------------------------------------------------------------

    def _client(self, role: str) -> Redis:
        """The fix's own connection for `role` (fix, lifeline), cloned from the worker's.

        Named, so `CLIENT LIST` shows whether this worker is alive, with timeouts short enough
        that a dead socket costs a fraction of the lease. The lifeline has one to itself, and
        makes one attempt per tick (its loop is the retry): no redis-py backoff, which sat for
        seconds after a Redis restart with the lease running out.
        """
        client = self._clients.get(role)
        if client is None:
            pool = self.connection.connection_pool
            io = self.settings.redis_io_timeout_s
            options: dict[str, Any] = {
                **pool.connection_kwargs,
                "socket_timeout": io,
                "socket_connect_timeout": io,
                "health_check_interval": 0,
            }
            if self._named:
                options["client_name"] = connection_name(self.name)
            if role == "lifeline":
                options["retry"] = Retry(NoBackoff(), 0)
            client = Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **options))
            self._clients[role] = client
        return client

    def _check_client_name(self) -> None:
        """A Redis user without CLIENT commands (ACL): warn and rely on the lease alone, as RQ does."""
        try:
            self._client("fix").ping()
        except ResponseError as exc:
            if "NOPERM" not in str(exc).upper() and "client" not in str(exc).lower():
                raise
            emit("connection_check_off", level=logging.WARNING, worker=self.name, why=str(exc))
            self._named = False
            for client in self._clients.values():
                client.connection_pool.disconnect()
            self._clients.clear()

    @property
    def tracker(self) -> Tracker:
        """A Tracker on a connection that belongs to this process (the horse gets its own)."""
        pid = os.getpid()
        tracker = self._trackers.get(pid)
        if tracker is None:
            conn = self._client("fix") if not self.is_horse else self.connection
            parent = next(iter(self._trackers.values()), None) if self.is_horse else None
            tracker = self._new_tracker(conn)
            if parent is not None:
                tracker.clock = parent.clock  # forked already read: the horse sends no TIME
            self._trackers[pid] = tracker
        return tracker

    def _new_tracker(self, conn: Redis) -> Tracker:
        names = self.queue_names()  # type: ignore[attr-defined]
        return self.tracker_class.from_settings(
            conn,
            self.settings,
            queues=names,
            serializer=self.serializer,
            exception_handlers=self._exc_handlers,
            death_penalty_class=self.death_penalty_class,
        )

    def work(self, burst: bool = False, *args: Any, **kwargs: Any) -> bool:
        self._burst = burst
        return super().work(burst, *args, **kwargs)  # type: ignore[misc]

    @property
    def allowlist(self) -> tuple[str, ...] | None:
        """What this worker may run: its class's `job_allowlist`, else JOB_ALLOWLIST (None: any)."""
        if self.job_allowlist is not None:
            return self.job_allowlist
        return parse_allowlist(self.settings.job_allowlist)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)  # type: ignore[misc]
        if self.allowlist is None:
            emit(
                "job_allowlist_unset",
                level=logging.WARNING,
                worker=self.name,
                note="JOB_ALLOWLIST is unset: this worker runs any function a job names, as RQ does",
            )
        self._ensure_threads()
        if self._burst:
            self._sweep_once("burst worker starting")

    def teardown(self) -> None:
        stop = self._threads_stop
        if stop is not None:
            stop.set()
            self._threads_stop = None
        super().teardown()  # type: ignore[misc]
        if not self.is_horse:
            if self._burst:
                self._sweep_once("burst worker quitting")
            with contextlib.suppress(Exception):
                self._client("fix").delete(worker_key(self.name))

    def _sweep_once(self, why: str) -> None:
        """A burst worker lives only while its queues have jobs: it sweeps as it comes and goes."""
        try:
            report = self.tracker.sweep(by=self.name, connection_check=self.settings.connection_check)
        except Exception as exc:  # noqa: BLE001 - Redis away: the next sweeper will do it
            log.warning("%s: sweep failed: %s", why, exc)
            return
        if report.requeued or report.failed:
            emit("sweep", worker=self.name, why=why, **report.counts())

    def _ensure_threads(self) -> None:
        """Start the lifeline and the sweeper (again after a teardown: `work()` may run twice)."""
        if self._threads_stop is not None:
            return
        self._check_client_name()
        self._register()
        with contextlib.suppress(Exception):  # Redis away: the sweeper's first check will do
            self._epoch_watch().check()  # before any horse forks: each knows the data it ran on
        self._lifeline_ok_at = time.monotonic()
        stop = self._threads_stop = threading.Event()
        for target, name in ((self._lifeline, "lifeline"), (self._sweeper, "sweeper")):
            threading.Thread(target=target, args=(stop,), name=f"rq-recovery-{name}", daemon=True).start()

    # -- the attempt ------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout: Any, max_idle_time: Any = None) -> Any:
        self._await_lifeline()
        result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
        if result is None and self._burst and self._settle_orphans():
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)  # type: ignore[misc]
        return result

    def _settle_orphans(self) -> bool:
        """Before a burst worker quits: wait for the jobs of dead workers on its queues.

        A burst worker may be the only process of ours for a while (cron, a restart loop). A
        job whose worker was just killed still has its lease; quitting now would leave it
        `started` until the next run. So sweep until no running job on these queues belongs
        to a worker without a connection (or, without CLIENT LIST, one that missed a beat),
        for at most one lease. True when a job came back onto these queues.
        """
        s = self.settings
        tracker = self.tracker
        mine = set(self.queue_names())  # type: ignore[attr-defined]
        deadline = time.monotonic() + s.liveness_ttl + s.sweep_interval + 1
        while time.monotonic() < deadline and not self._stop_requested:
            report = tracker.sweep(by=self.name, connection_check=s.connection_check)
            if report.requeued:
                emit("sweep", worker=self.name, why="burst worker quitting", **report.counts())
            if any(q.count for q in self.queues):  # type: ignore[attr-defined]  # this sweep, or the sweeper thread
                return True
            if not tracker.orphans(mine, exclude=self.name):
                return False
            time.sleep(min(s.sweep_interval, 0.5))
        return False

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._ensure_threads()
        self._await_lifeline()
        token = uuid.uuid4().hex
        number = self._start(job, token)
        if number < 0:
            why = {-2: "another attempt holds its lease"}.get(number, "Redis unreachable")
            emit("job_skipped", job_id=job.id, worker=self.name, why=why)
            if number != _UNREACHABLE:  # else the sweepers requeue it from the dequeue gap
                self.connection.lrem(queue.intermediate_queue_key, 0, job.id)
            return
        # RQ: a job without a timeout gets its queue class's default; -1 never times out.
        default_timeout = self.queue_class.DEFAULT_TIMEOUT  # type: ignore[attr-defined]
        timeout = math.inf if job.timeout == -1 else float(job.timeout or default_timeout)
        attempt = _Attempt(job.id, token, number, time.monotonic(), timeout, queue=job.origin, func=_func_name(job))
        with self._lock:
            self._attempt = attempt
            self._kill = None
            self._rq_killed_horse = False
            self._horse_rss = None
        self._mailbox.clear()
        emit("job_started", job_id=job.id, attempt=number, worker=self.name, pid=os.getpid(), func=attempt.func)
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
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
            if delay:
                time.sleep(delay)  # not sleep(0) on the first try: that yields the GIL every job
            try:
                number = self.tracker.start(job.id, token=token, worker=self.name, pid=os.getpid(), queue=job.origin)
                if number > 0 and not self._named:
                    self.tracker.connection.hset(track_key(job.id), "named", 0)
                return number
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
        if self._lifeline_healthy() or self._threads_stop is None:
            return
        emit("waiting_for_lifeline", level=logging.WARNING, worker=self.name)
        while not self._lifeline_healthy() and not self._stop_requested and self._threads_stop is not None:
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

    def wait_for_horse(self) -> Any:
        pid, stat, rusage = super().wait_for_horse()  # type: ignore[misc]
        if rusage is not None:
            self._horse_rss = int(rusage.ru_maxrss) * 1024  # Linux reports KiB
        return pid, stat, rusage

    def kill_horse(self, *args: Any, **kwargs: Any) -> None:
        # RQ kills the horse on a kill-horse command, a cold shutdown and its own hard timeout:
        # the job then fails as RQ decides, it is not a death to recover from.
        self._rq_killed_horse = True
        super().kill_horse(*args, **kwargs)  # type: ignore[misc]

    def _finish(self, job: Job, attempt: _Attempt) -> None:
        """After the horse is gone: log the outcome this attempt committed, if it committed one.

        The commit itself recorded the facts and metrics (`fencing`); the note says what it wrote.
        """
        note = self._mailbox.take(attempt.token)
        if note is None:
            return  # superseded, recovered, or handled by the owner's recovery path
        emit(
            f"job_{note['state']}",
            job_id=job.id,
            attempt=attempt.number,
            worker=self.name,
            cause=note["cause"],
            duration_s=round(note["duration_s"], 3),
            queue_wait_s=None if note.get("queue_wait_s") is None else round(note["queue_wait_s"], 3),
            peak_rss_bytes=note.get("peak_rss_bytes"),
        )

    def _peak_rss(self, attempt: _Attempt) -> int | None:
        """The attempt's peak RSS in bytes: what the horse (and its children) used at most."""
        if self.is_horse:  # the same figure the worker's wait4 reports once the horse exits
            peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
            return peak * 1024 or None  # Linux reports KiB
        return max(self._horse_rss or 0, attempt.peak_rss) or None

    def _owns(self, job: Job) -> _Attempt | None:
        attempt = self._attempt
        return attempt if attempt is not None and attempt.job_id == job.id else None

    # -- fenced outcome writes (called in the horse, or in the parent for a dead horse) -------

    @contextlib.contextmanager
    def _fenced(self, job: Job, *, cause: str = "", error_type: str = "") -> Iterator[Fence | None]:
        """While RQ writes this attempt's outcome, its transactions are fenced (see `fencing`)."""
        attempt = self._owns(job)
        if attempt is None:
            yield None
            return
        fence = Fence(
            job,
            attempt.token,
            default_result_ttl=self.default_result_ttl,  # type: ignore[attr-defined]
            started=attempt.started,
            peak_rss=lambda: self._peak_rss(attempt),
            func=attempt.func,
            cause=cause,
            error_type=error_type,
        )
        original = self.connection
        self.connection = fenced_client(original, fence)
        try:
            yield fence
        except Superseded:
            pass
        finally:
            self.connection = original
            if fence.outcome is not None and fence.committed:
                self._mailbox.post(attempt.token, fence.outcome)
            if fence.superseded:
                self._refused(job, attempt)

    def _refused(self, job: Job, attempt: _Attempt) -> None:
        """This attempt's outcome was refused: superseded (a late completion), or lost with the
        data of a Redis that came back empty (nothing left to write it to; not a late one)."""
        try:
            lost = self._epoch_watch().lost()
        except Exception:  # noqa: BLE001 - Redis away: count it as the fence saw it
            lost = False
        if lost:
            emit(
                "outcome_lost",
                level=logging.ERROR,
                job_id=job.id,
                attempt=attempt.number,
                worker=self.name,
                why="Redis lost its data while the job ran",
            )
            return
        self.tracker.count_late(job.id, worker=self.name, queue=attempt.queue)
        emit("late_completion_rejected", job_id=job.id, attempt=attempt.number, worker=self.name)

    def _epoch_watch(self) -> EpochWatch:
        """The worker's memory of its Redis's dataset: the sweeper thread checks it, the horse
        (a fork, so it inherits what the parent saw) reads it when its outcome is refused."""
        watch = getattr(self, "_epoch", None)
        if watch is None:
            watch = self._epoch = EpochWatch(self._client("fix"), by=self.name)
        return watch

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        """In the horse: a job naming a function this worker may not run fails, unrun."""
        rules = self.allowlist
        func = _func_name(job)
        if allowed_by(rules, func):
            return bool(super().perform_job(job, queue, execution))  # type: ignore[misc]
        emit("job_refused", level=logging.WARNING, job_id=job.id, func=func, worker=self.name)
        self.prepare_job_execution(job)
        try:
            raise JobNotAllowed(f"not a job this worker runs: {func} (it runs {', '.join(rules or ())}; JOB_ALLOWLIST)")
        except JobNotAllowed:
            self._finalize_failure(job, queue, execution, sys.exc_info())  # type: ignore[attr-defined]
        return False

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """The horse marks the job started only while its attempt is current.

        A worker frozen between taking a job and forking its horse may have been presumed dead,
        and the job run elsewhere, even finished: its late horse must not set RQ's status back to
        `started` (nothing would ever end it again), nor run the job. It quits instead.
        """
        attempt = self._owns(job)
        if attempt is None or not self.is_horse:
            return super().prepare_job_execution(job, remove_from_intermediate_queue)  # type: ignore[misc]
        fence = Fence(job, attempt.token, default_result_ttl=self.default_result_ttl, ends=False)  # type: ignore[attr-defined]
        original = self.connection
        self.connection = fenced_client(original, fence)
        try:
            super().prepare_job_execution(job, remove_from_intermediate_queue)  # type: ignore[misc]
        except Superseded:
            pass
        finally:
            self.connection = original
        if fence.superseded:
            emit("late_start_refused", level=logging.WARNING, job_id=job.id, attempt=attempt.number, worker=self.name)
            os._exit(0)  # the horse: its parent sees a clean exit and records nothing
        return None

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any, execution: Any) -> None:
        with self._fenced(job):
            super().handle_job_success(job, queue, started_job_registry, execution)  # type: ignore[misc]

    def handle_job_retry(self, job: Job, queue: Queue, retry: Any, started_job_registry: Any, execution: Any) -> None:
        with self._fenced(job):
            super().handle_job_retry(job, queue, retry, started_job_registry, execution)  # type: ignore[misc]

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "", execution: Any = None
    ) -> None:
        attempt = self._owns(job)
        if attempt is None:
            return super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)  # type: ignore[misc]
        cause, why = self._classify(job, exc_string)
        if cause in ("killed", "handed_back"):
            self._recover_own(job, attempt, cause=cause, why=why, exc_string=exc_string)
            return None
        if why:
            exc_string = f"{exc_string.rstrip()}\n{why}" if exc_string.strip() else why
        error_type = exc_string.strip().splitlines()[-1].split(":")[0] if exc_string.strip() else "?"
        if cause == "timeout" or "JobTimeoutException" in exc_string:
            cause = "timeout"
        with self._fenced(job, cause=cause, error_type=error_type[:100]):
            super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)  # type: ignore[misc]
        return None

    def _recover_own(self, job: Job, attempt: _Attempt, *, cause: str, why: str, exc_string: str) -> None:
        """The horse was killed from outside (the OOM killer) or handed back: requeue the job."""
        number = self.tracker.claim(job.id, mode="owner", token=attempt.token, by=self.name)
        if number < 0:
            return  # already recovered elsewhere (this worker was presumed dead)
        if not self.is_horse:
            with self._client("fix").pipeline(transaction=False) as pipe:
                rss = max(self._horse_rss or 0, attempt.peak_rss) or None
                duration = time.monotonic() - attempt.started
                metrics.record_attempt(pipe, attempt.queue, duration_s=duration, peak_rss_bytes=rss)
                pipe.execute()
        reason = f"{why}, attempt {number}/{self.settings.max_attempts}"
        self.tracker.recover(
            job.id,
            attempt=number,
            reason=reason,
            by=self.name,
            cause=cause,
            refund=cause == "handed_back",
            exc_string=exc_string,
            exception_handlers=self._exc_handlers,
        )

    def _classify(self, job: Job, exc_string: str) -> tuple[str, str]:
        """(cause, why): is this a death to recover from, or an outcome RQ decides?

        A horse killed from outside (the OOM killer) or handed back says nothing about the job,
        so it is requeued. An exception, a timeout, a stop or a kill RQ made itself is RQ's
        business: it fails the job or applies the job's own Retry.
        """
        if self._kill is not None:
            return self._kill
        if self._rq_killed_horse or self._stopped_job_id == job.id:
            return "exception", ""
        if exc_string.startswith(_HORSE_DIED):
            return "killed", "work-horse died: " + exc_string[len(_HORSE_DIED) :].strip(" ;")
        return "exception", ""

    def maintain_heartbeats(self, job: Job, execution: Any) -> None:
        # A superseded (zombie) attempt must not re-add itself to RQ's started registry.
        attempt = self._attempt
        if attempt is not None and attempt.superseded:
            return
        super().maintain_heartbeats(job, execution)  # type: ignore[misc]

    def request_stop(self, signum: Any, frame: Any) -> None:
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        super().request_stop(signum, frame)  # type: ignore[misc]

    # -- threads in the worker parent -------------------------------------------------------

    def _kill_horse_for(self, cause: str, why: str) -> None:
        with self._lock:
            self._kill = (cause, why)
        emit("horse_killed", level=logging.WARNING, worker=self.name, cause=cause, reason=why, horse_pid=self.horse_pid)
        try:
            os.killpg(os.getpgid(self.horse_pid), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _lifeline(self, stop: threading.Event) -> None:
        """Beat every HEARTBEAT_INTERVAL and police the horse; in between, sleep on the named
        connection's socket, so a connection Redis closed (a restart, a reset) is opened again at
        once, well inside CONNECTION_GRACE, without a PING every few hundred milliseconds. It
        wakes for nothing else: each wake while a horse runs copies the parent's pages that the
        horse still shares (Python touches its objects), which a busy worker pays for."""
        s = self.settings
        retry = min(0.2, s.heartbeat_interval / 2)  # while Redis is away: try again this often
        conn = self._client("lifeline")
        tracker = self._new_tracker(conn)
        next_beat = 0.0
        lost_at: float | None = None
        closed: bool | None = False
        while not stop.is_set():
            now = time.monotonic()
            attempt = self._attempt
            try:
                if now >= next_beat:
                    self._beat(conn, tracker, attempt, now)
                    next_beat = now + s.heartbeat_interval  # a failed beat is retried next round
                    self._lifeline_ok_at = time.monotonic()
                elif closed is not False or lost_at is not None:
                    if closed or lost_at is not None:
                        conn.connection_pool.disconnect()
                    conn.ping()  # (re)connect: sweepers look for this connection
                    self._lifeline_ok_at = time.monotonic()
                if lost_at is not None:
                    emit("lifeline_restored", worker=self.name, after_s=round(now - lost_at, 3))
                    lost_at = None
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if lost_at is None:
                    lost_at = now
                    emit("lifeline_lost", level=logging.WARNING, worker=self.name, error=str(exc))
                # Sockets opened before the outage may be dead without knowing it: drop the idle ones.
                self._client("fix").connection_pool.disconnect(inuse_connections=False)
            except Exception as exc:  # noqa: BLE001 - never die: the lease depends on this thread
                log.warning("lifeline: %s", exc)
            try:
                self._police_horse(attempt, now)  # also while Redis is away
            except Exception as exc:  # noqa: BLE001 - never die
                log.warning("lifeline: policing the horse: %s", exc)
            until_beat = next_beat - time.monotonic()
            if lost_at is not None or until_beat <= 0:  # Redis away, or a beat failed: retry soon
                stop.wait(retry)
                closed = False
            else:
                until_police = self._police_at(attempt) - time.monotonic()
                closed = _wait_readable(conn, stop, max(0.0, min(until_beat, until_police)), retry)

    def _beat(self, conn: Redis, tracker: Tracker, attempt: _Attempt | None, now: float) -> None:
        self._register(conn, tracker)
        if attempt is None or attempt.superseded:
            return
        if not tracker.beat(attempt.job_id, attempt.token):
            attempt.superseded = True
            emit("attempt_superseded", job_id=attempt.job_id, worker=self.name)
        else:
            self._watch(conn, attempt, now)

    def _police_at(self, attempt: _Attempt | None) -> float:
        """When (monotonic) `_police_horse` may next have to act: the running horse's timeout
        plus its grace, or the end of a shutdown's grace. The lifeline sleeps until then or its
        next beat, whichever is first (a stop requested meanwhile is seen at that beat)."""
        s, at = self.settings, math.inf
        if attempt is not None and not attempt.superseded and self._kill is None:
            at = attempt.started + attempt.timeout + s.hard_kill_grace
            if self._stop_at is not None:
                at = min(at, self._stop_at + s.shutdown_grace)
        return at + 0.01  # its limits are "past": wake just after

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

    def _watch(self, conn: Redis, attempt: _Attempt, now: float) -> None:
        """Flag a job that runs abnormally long, and warn when its horse nears the memory limit."""
        s, q = self.settings, attempt.queue
        try:
            rss = metrics.tree_rss_bytes(self.horse_pid)
            attempt.peak_rss = max(attempt.peak_rss, rss)
        except (psutil.Error, OSError, ValueError):
            rss = 0
        if self._memory_limit and not attempt.warned_memory and rss > s.memory_warn_share * self._memory_limit:
            attempt.warned_memory = True
            conn.hset(track_key(attempt.job_id), "memory_warning", rss)
            conn.hincrby(stats_key(q), "memory_warnings", 1)
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
        p95 = self._func_p95(conn, attempt.func, now)
        if p95 is not None and elapsed > s.long_running_factor * p95:
            attempt.flagged_long = True
            with conn.pipeline(transaction=False) as pipe:
                pipe.sadd(long_key(q), attempt.job_id)
                pipe.hset(track_key(attempt.job_id), mapping={"long_running": 1, "p95_s": round(p95, 4)})
                pipe.hincrby(stats_key(q), "long_running_flagged", 1)
                pipe.execute()
            emit(
                "job_long_running",
                level=logging.WARNING,
                job_id=attempt.job_id,
                worker=self.name,
                running_s=round(elapsed, 1),
                func=attempt.func,
                p95_s=round(p95, 3),
            )

    def _func_p95(self, conn: Redis, func: str, now: float) -> float | None:
        """The p95 duration of the function's last 200 finished jobs, refreshed every 30 s."""
        cached = self._p95.get(func)
        if cached and now - cached[0] < 30:
            return cached[1]
        raw = sorted(float(x) for x in conn.lrange(durations_key(func), 0, 199))
        p95 = raw[min(len(raw) - 1, int(0.95 * len(raw)))] if len(raw) >= 5 else None
        if p95 is not None:
            self._p95[func] = (now, p95)
        return p95

    def _sweeper(self, stop: threading.Event) -> None:
        def note(report: SweepReport) -> None:
            if report.requeued or report.failed:
                emit("sweep", worker=self.name, **report.counts())

        self._new_tracker(self._client("fix")).run(
            stop,
            by=self.name,
            interval=self.settings.sweep_interval,
            connection_check=self.settings.connection_check,
            on_report=note,
            epoch=self._epoch_watch(),
        )

    def worker_info(self) -> dict[str, str]:
        """Extra fields for this worker's registration (`diagnose-worker` shows them)."""
        return {}

    def _register(self, conn: Redis | None = None, tracker: Tracker | None = None) -> None:
        """Tell Redis the fix runs in this process; `diagnose-worker` and tests read it."""
        key = worker_key(self.name)
        attempt = self._attempt
        with (conn or self._client("fix")).pipeline() as pipe:
            pipe.hset(
                key,
                mapping={
                    "fix": FIX_NAME,
                    "fix_version": __version__,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "beat_at": (tracker or self.tracker).clock.now(),  # Redis's clock
                    "current_job": attempt.job_id if attempt else "",
                    "queues": ",".join(self.queue_names()),  # type: ignore[attr-defined]
                    "settings": json.dumps(
                        {
                            "heartbeat_interval": self.settings.heartbeat_interval,
                            "liveness_ttl": self.settings.liveness_ttl,
                            "sweep_interval": self.settings.sweep_interval,
                            "max_attempts": self.settings.max_attempts,
                        }
                    ),
                    **self.worker_info(),  # type: ignore[dict-item]  # redis-py's mapping type is invariant
                },
            )
            pipe.expire(key, int(self.settings.liveness_ttl * 3) + 1)
            pipe.execute()


def _wait_readable(client: Redis, stop: threading.Event, timeout: float, fallback: float) -> bool | None:
    """Sleep up to `timeout` on the socket of `client`'s one idle connection: True when Redis
    closed it (or sent something unasked), False when it stayed quiet. Where redis-py's pool
    does not show that socket, sleep `fallback` and return None: the caller then PINGs, as the
    lifeline always did."""
    conns = getattr(client.connection_pool, "_available_connections", None)
    conn = conns[0] if conns and len(conns) == 1 else None
    sock = getattr(conn, "_sock", None)
    if conn is None or sock is None:
        stop.wait(min(fallback, timeout))
        return None
    try:
        readable, _, _ = select.select([sock], [], [], timeout)
        # Readable: a close, or only TLS records (a session ticket), which redis-py consumes here.
        return bool(readable) and bool(conn.can_read(timeout=0))
    except (RedisConnectionError, RedisTimeoutError, OSError, ValueError):  # closed
        return True


def _func_name(job: Job) -> str:
    """The job's function, for per-function durations; '?' when its data cannot be read here."""
    try:
        return str(job.func_name)
    except Exception:  # noqa: BLE001 - undecodable job data: the horse fails it
        return "?"


class RecoveringWorker(RecoveryMixin, Worker):
    """An RQ `Worker` whose jobs always end `finished` or `failed`, whatever happens to it."""


class RecoveringHerokuWorker(RecoveryMixin, HerokuWorker):
    """RQ's `HerokuWorker` with the recovery layer."""


class RecoveringRoundRobinWorker(RecoveryMixin, RoundRobinWorker):
    """RQ's `RoundRobinWorker` with the recovery layer."""


class RecoveringRandomWorker(RecoveryMixin, RandomWorker):
    """RQ's `RandomWorker` with the recovery layer."""
