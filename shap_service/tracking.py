"""Per-job tracking, leases and fencing: the state the recovery layer keeps beside RQ's.

For every job we keep a hash ``shap:track:<job_id>`` (attempt, token, worker, timestamps,
state, reason) and, while an attempt runs, a lease ``shap:live:<job_id>`` whose value is the
attempt's token and whose TTL the worker parent refreshes every HEARTBEAT_INTERVAL.

Every transition that two processes could race on is one Lua script, so it is atomic:

- ``start``: a worker begins attempt n+1 and gets a fresh token.
- ``beat``: extend the lease, only if the token is still current.
- ``fence``: the attempt is about to write its result; refused if the token is no longer
  current (a zombie resumed after its job was recovered), and such refusals are counted.
- ``claim``: a sweeper (or the owner) takes the job over for recovery. It succeeds for exactly
  one caller: it checks the lease is gone and the token unchanged, then clears the token.
  Whoever wins then requeues or fails the job through RQ's own API.

Job states in the track hash: queued -> running -> completing -> finished|failed, and
running|completing|queued -> recovering -> queued|failed.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from . import metrics
from .config import Settings
from .events import emit

__all__ = [
    "TERMINAL",
    "Tracker",
    "SweepReport",
    "track_key",
    "live_key",
]

log = logging.getLogger("shap_service.recovery")

#: The only statuses that end a job. RQ has 11; stopped/canceled are not a recovery.
TERMINAL = (JobStatus.FINISHED.value, JobStatus.FAILED.value)

PREFIX = "shap:"


def track_key(job_id: str) -> str:
    return f"{PREFIX}track:{job_id}"


def live_key(job_id: str) -> str:
    return f"{PREFIX}live:{job_id}"


def active_key(queue: str) -> str:
    """Jobs not yet terminal on `queue` (score: enqueue time): what the sweeper looks at."""
    return f"{PREFIX}active:{queue}"


def running_key(queue: str) -> str:
    """Jobs with an attempt started and not yet ended or recovered: all a sweep must look at."""
    return f"{PREFIX}running:{queue}"


def limbo_key(queue: str) -> str:
    """First time a sweeper saw a job dequeued but never started (the dequeue gap)."""
    return f"{PREFIX}limbo:{queue}"


def stats_key(queue: str) -> str:
    return f"{PREFIX}stats:{queue}"


#: How often sweepers look at CLIENT LIST for vanished workers (seconds).
WATCH_TICK = 0.2


def connection_name(worker: str) -> str:
    """The CLIENT SETNAME of a worker's recovery-layer connection."""
    return f"shapfix:{worker}"


def worker_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


# KEYS: track, live, running  ARGV: token, worker, pid, now, ttl_ms, queue
# Returns the new attempt number, or -1 when the job is terminal, -2 when another attempt
# holds a live lease (a duplicate delivery): the caller must not run it. Idempotent per token.
_START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'finished' or state == 'failed' then return -1 end
if state == 'running' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return tonumber(redis.call('HGET', KEYS[1], 'attempt'))  -- a retried START whose reply was lost
end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
if state == 'recovering' then return -2 end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'state', 'running', 'token', ARGV[1], 'worker', ARGV[2], 'pid', ARGV[3],
  'started_at', ARGV[4], 'heartbeat_at', ARGV[4], 'queue', ARGV[6])
redis.call('HSETNX', KEYS[1], 'enqueued_at', ARGV[4])
redis.call('HSETNX', KEYS[1], 'first_started_at', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], string.match(KEYS[1], 'track:(.*)$'))
return attempt
"""

# KEYS: track, live  ARGV: token, now, ttl_ms  -> 1 beating, 0 superseded
_BEAT = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'running' and state ~= 'completing' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
redis.call('HSET', KEYS[1], 'heartbeat_at', ARGV[2])
return 1
"""

# KEYS: track, stats  ARGV: token, now, worker -> 1 may write, 0 fenced off (counted)
_FENCE = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'completing')
  return 1
end
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] and redis.call('HGET', KEYS[1], 'state') == 'completing' then
  return 1
end
redis.call('HINCRBY', KEYS[1], 'late_completions', 1)
redis.call('HSET', KEYS[1], 'last_late_worker', ARGV[3], 'last_late_at', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'late_completions_rejected', 1)
return 0
"""

# KEYS: track, live, active, stats, running  ARGV: token, state, now, reason
# The owner of the current attempt records the terminal outcome RQ has just written.
_END = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'ended_at', ARGV[3], 'token', '')
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], string.match(KEYS[1], 'track:(.*)$'))
redis.call('ZREM', KEYS[5], string.match(KEYS[1], 'track:(.*)$'))
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return 1
"""

# KEYS: track, live  ARGV: mode, expected_token, now, by, stale_after_s
# mode 'expired': the lease must be gone and the token unchanged since the caller read it.
# mode 'owner':   the caller holds the current token (its own horse crashed or timed out).
# mode 'limbo':   dequeued but never started: state queued, no token.
# mode 'stale':   a recoverer died mid-recovery long enough ago.
# Returns the attempt number on success, -1 otherwise. Exactly one caller wins.
_CLAIM = """
local token = redis.call('HGET', KEYS[1], 'token') or ''
local state = redis.call('HGET', KEYS[1], 'state') or 'queued'
local mode = ARGV[1]
if mode == 'expired' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
  if token ~= ARGV[2] or token == '' then return -1 end
  if state ~= 'running' and state ~= 'completing' then return -1 end
elseif mode == 'owner' then
  if token ~= ARGV[2] or token == '' then return -1 end
  if state ~= 'running' and state ~= 'completing' then return -1 end
elseif mode == 'limbo' then
  if state ~= 'queued' or token ~= '' then return -1 end
  if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
elseif mode == 'stale' then
  if state ~= 'recovering' then return -1 end
  local at = tonumber(redis.call('HGET', KEYS[1], 'recovering_at') or '0')
  if tonumber(ARGV[3]) - at < tonumber(ARGV[5]) then return -1 end
else
  return redis.error_reply('unknown claim mode')
end
redis.call('HSET', KEYS[1], 'state', 'recovering', 'token', '', 'recovering_by', ARGV[4],
  'recovering_at', ARGV[3], 'recovering_from', state)
redis.call('DEL', KEYS[2])
return tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
"""


# KEYS: running  ARGV: key prefix, then the workers whose connection is gone.
# Returns {scanned, [job ids worth a closer look]}. Key names are computed here, so this one
# script is not Redis-Cluster safe (nor is RQ's layout).
_SUSPECTS = """
local gone = {}
for i = 2, #ARGV do gone[ARGV[i]] = true end
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local track = ARGV[1] .. 'track:' .. id
  local state = redis.call('HGET', track, 'state')
  if (state ~= 'running' and state ~= 'completing')
     or redis.call('EXISTS', ARGV[1] .. 'live:' .. id) == 0
     or gone[redis.call('HGET', track, 'worker') or ''] then
    out[#out + 1] = id
  end
end
return {#ids, out}
"""


def _now() -> float:
    return time.time()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass
class SweepReport:
    """What one sweep saw and did; /admin/cleanup_jobs returns the first four counts."""

    scanned: int = 0
    requeued: int = 0
    failed: int = 0
    skipped_live: int = 0
    finalized: int = 0
    held_s: float = 0.0  # > 0: Redis restarted lately; some leases wait this long (see redis_started)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "scanned": self.scanned,
            "requeued": self.requeued,
            "failed": self.failed,
            "skipped_live": self.skipped_live,
        }


class Tracker:
    """The recovery layer's view of one queue: start/beat/fence/end attempts, and sweep."""

    def __init__(
        self,
        connection: Redis,
        queue_name: str,
        *,
        liveness_ttl: float,
        max_attempts: int,
        failure_ttl: int = 7 * 86400,
        connection_grace: float = 0.6,
    ) -> None:
        self.connection_grace = connection_grace
        self.connection = connection
        self.queue_name = queue_name
        self.liveness_ttl = liveness_ttl
        self.max_attempts = max_attempts
        self.failure_ttl = failure_ttl
        self.queue = Queue(queue_name, connection=connection, serializer=JSONSerializer)
        self._start = connection.register_script(_START)
        self._beat = connection.register_script(_BEAT)
        self._fence = connection.register_script(_FENCE)
        self._end = connection.register_script(_END)
        self._claim = connection.register_script(_CLAIM)
        self._suspects = connection.register_script(_SUSPECTS)
        self._missing: dict[str, float] = {}  # worker -> when its connection was first seen gone
        self._seen: set[str] = set()
        self._announced: set[str] = set()

    @classmethod
    def from_settings(cls, connection: Redis, settings: Settings) -> Tracker:
        return cls(
            connection,
            settings.queue_name,
            liveness_ttl=settings.liveness_ttl,
            max_attempts=settings.max_attempts,
            failure_ttl=settings.failure_ttl,
            connection_grace=settings.connection_grace,
        )

    # -- enqueue side ---------------------------------------------------------------------

    def enqueue(self, func: str, *, kwargs: dict[str, Any], job_timeout: int, result_ttl: int) -> Job:
        """Enqueue a job and its tracking record in one MULTI, so neither exists alone."""
        now = _now()
        job_id = str(uuid.uuid4())
        with self.connection.pipeline() as pipe:
            job = self.queue.enqueue_call(
                func,
                kwargs=kwargs,
                job_id=job_id,
                timeout=job_timeout,
                result_ttl=result_ttl,
                failure_ttl=self.failure_ttl,
                pipeline=pipe,
            )
            pipe.hset(
                track_key(job_id),
                mapping={"state": "queued", "attempt": 0, "enqueued_at": now, "queue": self.queue_name},
            )
            pipe.zadd(active_key(self.queue_name), {job_id: now})
            pipe.execute()
        return job

    # -- worker side ----------------------------------------------------------------------

    def start(self, job_id: str, *, token: str, worker: str, pid: int) -> int:
        """Begin an attempt; returns its number, or a negative code: do not run the job."""
        ms = int(self.liveness_ttl * 1000)
        res = int(
            self._start(
                keys=[track_key(job_id), live_key(job_id), running_key(self.queue_name)],
                args=[token, worker, pid, _now(), ms, self.queue_name],
            )
        )
        if res > 0:
            self.connection.zadd(active_key(self.queue_name), {job_id: _now()}, nx=True)
        return res

    def beat(self, job_id: str, token: str, *, connection: Redis | None = None) -> bool:
        ms = int(self.liveness_ttl * 1000)
        return bool(self._beat(keys=[track_key(job_id), live_key(job_id)], args=[token, _now(), ms], client=connection))

    def fence(self, job_id: str, token: str, *, worker: str) -> bool:
        """True when this attempt may write its outcome; False (and counted) for a zombie."""
        return bool(self._fence(keys=[track_key(job_id), stats_key(self.queue_name)], args=[token, _now(), worker]))

    def end(self, job_id: str, token: str, state: str, reason: str = "") -> bool:
        q = self.queue_name
        keys = [track_key(job_id), live_key(job_id), active_key(q), stats_key(q), running_key(q)]
        return bool(self._end(keys=keys, args=[token, state, _now(), reason]))

    def claim(self, job_id: str, *, mode: str, token: str = "", by: str, stale_after: float = 30.0) -> int:
        return int(self._claim(keys=[track_key(job_id), live_key(job_id)], args=[mode, token, _now(), by, stale_after]))

    # -- recovery actions (only after a successful claim) ---------------------------------

    def recover(
        self, job_id: str, *, attempt: int, reason: str, by: str, cause: str = "abandoned", refund: bool = False
    ) -> str:
        """Requeue the claimed job while attempts are left, else fail it. Returns the action.

        `cause` is a small closed set (a metrics label): abandoned, killed, timeout,
        handed_back, dequeue_gap.
        """
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError:
            self._forget(job_id)
            return "vanished"
        if refund and attempt > 0:
            self.connection.hincrby(track_key(job_id), "attempt", -1)
            attempt -= 1
        if attempt < self.max_attempts:
            self._requeue(job, reason=reason, cause=cause)
            action = "requeued"
        else:
            self._fail(job, reason=f"{reason}; attempts exhausted ({attempt}/{self.max_attempts})", cause=cause)
            action = "failed"
        emit(f"job_{action}", level=logging.WARNING, job_id=job_id, attempt=attempt, by=by, cause=cause, reason=reason)
        return action

    def _silent_for(self, job_id: str, now: float) -> float | None:
        beat = self.connection.hget(track_key(job_id), "heartbeat_at")
        return now - float(beat) if beat else None

    def _requeue(self, job: Job, *, reason: str, cause: str) -> None:
        now = _now()
        silent = self._silent_for(job.id, now)
        registry = StartedJobRegistry(self.queue_name, connection=self.connection, serializer=JSONSerializer)
        with self.connection.pipeline() as pipe:
            pipe.multi()  # RQ's enqueue_job below expects an explicit transaction
            registry.remove_executions(job, pipeline=pipe)
            pipe.lrem(self.queue.intermediate_queue_key, 0, job.id)
            pipe.hset(
                track_key(job.id),
                mapping={"state": "queued", "reason": reason, "requeued_at": now, "token": ""},
            )
            pipe.hincrby(track_key(job.id), "requeues", 1)
            pipe.zrem(running_key(self.queue_name), job.id)
            pipe.hincrby(stats_key(self.queue_name), "requeued", 1)
            pipe.hdel(limbo_key(self.queue_name), job.id)
            metrics.record_recovery(pipe, self.queue_name, action="requeued", cause=cause, latency_s=silent)
            # The job waited longest of all: put it at the front.
            self.queue.enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()

    def _fail(self, job: Job, *, reason: str, cause: str) -> None:
        now = _now()
        silent = self._silent_for(job.id, now)
        registry = StartedJobRegistry(self.queue_name, connection=self.connection, serializer=JSONSerializer)
        failed = FailedJobRegistry(self.queue_name, connection=self.connection, serializer=JSONSerializer)
        with self.connection.pipeline() as pipe:
            registry.remove_executions(job, pipeline=pipe)
            pipe.lrem(self.queue.intermediate_queue_key, 0, job.id)
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            failed.add(job, ttl=self.failure_ttl, exc_string=reason, pipeline=pipe)
            Result.create_failure(job, self.failure_ttl, exc_string=reason, pipeline=pipe)
            pipe.hset(
                track_key(job.id),
                mapping={"state": "failed", "reason": reason, "ended_at": now, "token": "", "cause": cause},
            )
            metrics.record_recovery(pipe, self.queue_name, action="failed", cause=cause, latency_s=silent)
            metrics.record_outcome(pipe, self.queue_name, outcome="failed", cause=cause)
            pipe.zrem(active_key(self.queue_name), job.id)
            pipe.zrem(running_key(self.queue_name), job.id)
            pipe.hdel(limbo_key(self.queue_name), job.id)
            pipe.hincrby(stats_key(self.queue_name), "failed_recovery", 1)
            pipe.execute()

    def _forget(self, job_id: str) -> None:
        with self.connection.pipeline() as pipe:
            pipe.zrem(active_key(self.queue_name), job_id)
            pipe.zrem(running_key(self.queue_name), job_id)
            pipe.hdel(limbo_key(self.queue_name), job_id)
            pipe.delete(live_key(job_id))
            pipe.execute()

    # -- reading --------------------------------------------------------------------------

    def read(self, job_id: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.connection.hgetall(track_key(job_id)).items()}

    def running_ids(self) -> list[str]:
        return [_s(x) for x in self.connection.zrange(running_key(self.queue_name), 0, -1)]

    def watch_connections(self) -> bool:
        """Note which workers' connections vanished; True when one just passed CONNECTION_GRACE.

        Cheap (one CLIENT LIST), so sweepers call it several times a second and run a full
        sweep only when a worker has really gone: that is what recovers a killed worker's job
        in about a second instead of a lease.
        """
        names = self.live_connections()
        if names is None:
            return False
        now = _now()
        present = {n.removeprefix("shapfix:") for n in names if n.startswith("shapfix:")}
        for worker in self._seen - present:
            self._missing.setdefault(worker, now)
        for worker in present:
            self._missing.pop(worker, None)
            self._announced.discard(worker)
        self._seen = present | {w for w, t in self._missing.items() if now - t < 3600}
        due = {w for w, t in self._missing.items() if now - t >= self.connection_grace} - self._announced
        self._announced |= due
        return bool(due)

    def run(
        self,
        stop: threading.Event,
        *,
        by: str,
        interval: float,
        connection_check: bool,
        on_report: Callable[[SweepReport], None] | None = None,
    ) -> None:
        """Sweep every `interval` until `stop`; with `connection_check`, also at once when a
        worker's connection has been gone for the grace period."""
        tick = min(WATCH_TICK, interval) if connection_check else interval
        next_full = 0.0
        holding = False
        while not stop.wait(tick):
            try:
                urgent = connection_check and self.watch_connections()
                if urgent or time.monotonic() >= next_full:
                    next_full = time.monotonic() + interval
                    report = self.sweep(by=by, connection_check=connection_check)
                    if report.held_s > 0 and not holding:
                        emit("sweep_held", level=logging.WARNING, by=by, why="Redis restarted", held_s=report.held_s)
                    holding = report.held_s > 0
                    if on_report is not None:
                        on_report(report)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next tick
                log.debug("sweeper %s: %s", by, exc)

    def live_connections(self) -> set[str] | None:
        """Names of connected clients, or None where CLIENT LIST is not allowed (managed Redis)."""
        try:
            clients = self.connection.client_list()
        except Exception:  # noqa: BLE001 - a refused command just disables the shortcut
            return None
        return {c.get("name", "") for c in clients if c.get("name")}

    def adopt_untracked(self, *, silent_after: float, dry_run: bool = False) -> int:
        """Track started jobs the fix never saw (plain RQ workers, jobs from before the fix).

        Such a job is adopted only when RQ's own heartbeat on it is older than `silent_after`;
        it then has no lease, so the next sweep recovers it. Returns how many were (or would be).
        """
        registry = StartedJobRegistry(self.queue_name, connection=self.connection, serializer=JSONSerializer)
        now = _now()
        adopted = 0
        for job_id in registry.get_job_ids(cleanup=False):
            state = self.connection.hget(track_key(job_id), "state")
            if state is not None and _s(state) != "queued":
                continue  # started by a worker with the fix: its lease says everything
            try:
                job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            status = getattr(job.get_status(refresh=False), "value", None)
            beat = job.last_heartbeat or job.started_at
            if status != JobStatus.STARTED.value or beat is None:
                continue
            beat_ts = beat.replace(tzinfo=beat.tzinfo or UTC).timestamp()
            if now - beat_ts < silent_after:
                continue
            adopted += 1
            if dry_run:
                continue
            with self.connection.pipeline() as pipe:
                pipe.hset(
                    track_key(job_id),
                    mapping={
                        "state": "running",
                        "token": "adopted",
                        "attempt": 1,
                        "worker": job.worker_name or "?",
                        "heartbeat_at": beat_ts,
                        "started_at": beat_ts,
                        "queue": self.queue_name,
                    },
                )
                pipe.zadd(active_key(self.queue_name), {job_id: beat_ts})
                pipe.zadd(running_key(self.queue_name), {job_id: beat_ts})
                pipe.execute()
        return adopted

    # -- the sweep ------------------------------------------------------------------------

    def sweep(
        self,
        *,
        by: str,
        silent_after: float | None = None,
        force: bool = False,
        dry_run: bool = False,
        connection_check: bool = True,
    ) -> SweepReport:
        """Recover every job whose attempt has gone silent; see the module docstring.

        `silent_after` (default: the lease) is how long since the last heartbeat counts as dead.
        With `connection_check`, a running job whose worker has no Redis connection left is
        recovered at once (a killed process's sockets close within milliseconds; a frozen or
        partitioned one's linger, so those fall back to the lease). `force` also takes jobs
        whose worker still beats. `dry_run` reports what would happen and changes nothing.
        """
        report = SweepReport()
        if connection_check:
            self.watch_connections()
        now = _now()
        gone = {w for w, t in self._missing.items() if now - t >= self.connection_grace} if connection_check else set()
        if force:
            ids = self.running_ids()
            report.scanned = len(ids)
        else:
            # One script reads the whole running set and returns only the suspects (lease gone,
            # worker's connection gone, or not plainly running): a healthy 10,000-job sweep is
            # one round trip, not 20,000 commands.
            scanned, ids = self._suspects(keys=[running_key(self.queue_name)], args=[PREFIX, *sorted(gone)])
            ids = [_s(x) for x in ids]
            report.scanned = int(scanned)
            report.skipped_live = report.scanned - len(ids)
        redis_started = functools.cache(self.redis_started)  # one INFO per sweep, and only if needed

        def in_outage(ts: float) -> bool:
            """Did this lease (last renewed at `ts`) lapse partly while Redis was down?"""
            if force:
                return False
            started_at, uptime = redis_started()
            if ts >= started_at or uptime >= math.ceil(self.liveness_ttl):
                return False
            report.held_s = max(report.held_s, math.ceil(self.liveness_ttl) - uptime)
            return True

        if not ids:
            self._sweep_limbo(report, by=by, now=now, dry_run=dry_run, in_outage=in_outage)
            return report
        with self.connection.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(track_key(job_id))
                pipe.pttl(live_key(job_id))
            raw = pipe.execute()
        for i, job_id in enumerate(ids):
            track = {_s(k): _s(v) for k, v in raw[2 * i].items()}
            pttl = int(raw[2 * i + 1])
            state = track.get("state", "queued")
            if state in ("queued",):
                continue  # waiting in the queue, or in the dequeue gap (see _sweep_limbo)
            if state in TERMINAL:
                if not dry_run:
                    self._forget(job_id)
                continue
            if state == "recovering":
                self._sweep_stale(report, job_id, track, by=by, now=now, dry_run=dry_run)
                continue
            token = track.get("token", "")
            worker = track.get("worker", "?")
            beat_age = now - float(track.get("heartbeat_at") or track.get("started_at") or now)
            lease_alive = pttl > 0
            conn_gone = worker in gone
            dead = not lease_alive or conn_gone
            if silent_after is not None:
                dead = dead and beat_age >= silent_after
            if dead and in_outage(now - beat_age):
                report.skipped_live += 1  # Redis restarted since its last beat: one lease to beat again
                continue
            if not dead and not force:
                report.skipped_live += 1
                continue
            why = (
                f"worker {worker} has no Redis connection"
                if lease_alive and conn_gone
                else f"worker {worker} silent for {beat_age:.1f} s"
            )
            if force and not dead:
                why = f"forced: worker {worker} still beating ({beat_age:.1f} s ago)"
            attempt = int(track.get("attempt", "0"))
            reason = f"abandoned: {why}, attempt {attempt}/{self.max_attempts}"
            if dry_run:
                action = "requeue" if attempt < self.max_attempts else "fail"
                report.actions.append({"job_id": job_id, "action": action, "reason": reason, "dry_run": True})
                continue
            if lease_alive:
                # The lease is still there (connection check or force): drop it first, but only
                # if it is still this attempt's, so that the claim below stays exact.
                self.connection.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                    1,
                    live_key(job_id),
                    token,
                )
            self._recover_claimed(report, job_id, mode="expired", token=token, reason=reason, by=by)
        self._sweep_limbo(report, by=by, now=now, dry_run=dry_run, in_outage=in_outage)
        return report

    def redis_started(self) -> tuple[float, int]:
        """When Redis (re)started, on this host's clock, and its uptime in whole seconds.

        Lease expiry times are absolute, so a lease also runs out while Redis is down: right
        after a restart, every worker that beat before it looks dead. `sweep` gives such a job
        one whole lease of Redis uptime for its worker to beat again. Where INFO is refused
        (some managed Redis) or has no uptime, Redis counts as up for ever: leases are judged
        at once.
        """
        forever = 1 << 30
        try:
            uptime = int(self.connection.info("server").get("uptime_in_seconds", forever))
        except ResponseError:
            uptime = forever
        return _now() - uptime, uptime

    def _recover_claimed(
        self, report: SweepReport, job_id: str, *, mode: str, token: str, reason: str, by: str
    ) -> None:
        attempt = self.claim(job_id, mode=mode, token=token, by=by)
        if attempt < 0:
            return  # someone else won, or the worker beat in time
        # The attempt may have written its outcome just before dying: then only finalize.
        try:
            status = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer).get_status()
            status = getattr(status, "value", status)
        except NoSuchJobError:
            self._forget(job_id)
            return
        if status in TERMINAL:
            self.connection.hset(track_key(job_id), mapping={"state": status, "ended_at": _now()})
            self._forget(job_id)
            report.finalized += 1
            return
        action = self.recover(job_id, attempt=attempt, reason=reason, by=by)
        report.actions.append({"job_id": job_id, "action": action, "reason": reason})
        if action == "requeued":
            report.requeued += 1
        elif action == "failed":
            report.failed += 1

    def _sweep_stale(
        self, report: SweepReport, job_id: str, track: dict[str, str], *, by: str, now: float, dry_run: bool
    ) -> None:
        at = float(track.get("recovering_at", "0"))
        if now - at < 30.0:
            return
        if dry_run:
            report.actions.append({"job_id": job_id, "action": "finish-recovery", "dry_run": True})
            return
        reason = track.get("reason") or f"recovery by {track.get('recovering_by')} did not complete"
        self._recover_claimed(report, job_id, mode="stale", token="", reason=reason, by=by)

    def _sweep_limbo(
        self, report: SweepReport, *, by: str, now: float, dry_run: bool, in_outage: Callable[[float], bool]
    ) -> None:
        """Jobs a worker moved to RQ's intermediate list but never started (died in between)."""
        ids = [_s(x) for x in self.connection.lrange(self.queue.intermediate_queue_key, 0, -1)]
        seen = {_s(k): float(_s(v)) for k, v in self.connection.hgetall(limbo_key(self.queue_name)).items()}
        gone = [j for j in seen if j not in ids]
        if gone and not dry_run:
            self.connection.hdel(limbo_key(self.queue_name), *gone)
        for job_id in ids:
            state = self.connection.hget(track_key(job_id), "state")
            if state is not None and _s(state) != "queued":
                continue
            first = seen.get(job_id)
            if first is None:
                if not dry_run:
                    self.connection.hsetnx(limbo_key(self.queue_name), job_id, now)
                continue
            if now - first < self.liveness_ttl or in_outage(first):
                continue
            reason = f"lost between dequeue and start for {now - first:.1f} s"
            if dry_run:
                report.actions.append({"job_id": job_id, "action": "requeue", "reason": reason, "dry_run": True})
                continue
            if state is None:  # a job enqueued without our API: track it from here on
                self.connection.hset(track_key(job_id), mapping={"state": "queued", "attempt": 0})
            # refund: the attempt never started, so it must not count
            attempt = self.claim(job_id, mode="limbo", by=by)
            if attempt < 0:
                continue
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
            self._requeue(job, reason=reason, cause="dequeue_gap")
            report.requeued += 1
            report.actions.append({"job_id": job_id, "action": "requeued", "reason": reason})
