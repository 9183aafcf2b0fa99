"""Per-job tracking, leases, fencing and sweeps: the state the recovery layer keeps beside RQ's.

Long on purpose (~900 lines): `Tracker` is the one owner of that state, and its Lua scripts,
its recovery actions and the sweep that decides between them must be read together; the fix's
deliberately broken variants (harness.testing) override single methods of this one class.

For every job a worker with the fix starts we keep a hash ``<prefix>track:<job_id>`` (attempt,
token, worker, queue, serializer, timestamps, state, reason) and, while an attempt runs, a
lease ``<prefix>live:<job_id>`` whose value is the attempt's token and whose TTL the worker
parent refreshes every HEARTBEAT_INTERVAL. RQ stays the authority on the job itself: its
status, queues, registries, retries, repeats, dependencies and callbacks.

Every transition that two processes could race on is atomic:

- ``start`` (Lua): a worker begins an attempt with a fresh token. Refused only while another
  attempt holds a live lease (a duplicate delivery). A job RQ put back on a queue by itself
  (its own Retry, a Repeat, a requeue, a reused id) starts a new life at attempt 1; a job the
  fix requeued continues its count.
- ``beat`` (Lua): extend the lease, only if the token is still current.
- the outcome commit (`fencing`): RQ's own MULTI/EXEC that writes the job's outcome also WATCHes
  the track, checks the token and ends the attempt, so a superseded attempt can never write.
- ``claim`` (Lua): a sweeper (or the owner) takes the job over for recovery. Exactly one caller
  wins; it then requeues the job on its origin queue, or gives up on it the way RQ's own
  abandoned-job cleanup does (failure callback, exception handlers, RQ's Retry, dependents).

Every time written here and compared by another process is on Redis's clock (`clock`): the
scripts read `TIME` themselves, so hosts whose clocks disagree still agree on a lease's age.

Track states: queued -> running -> finished | failed | stopped | canceled | queued (RQ took it
back), and running | queued -> recovering -> queued | failed.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
import types
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from redis import Redis
from redis.exceptions import NoScriptError, ResponseError
from rq import Queue
from rq.callbacks import execute_failure_callback
from rq.exceptions import AbandonedJobError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.job_lifecycle import call_exception_handlers, record_job_failure
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.serializers import SERIALIZER_ALIASES, resolve_serializer
from rq.timeouts import TimerDeathPenalty, UnixSignalDeathPenalty
from rq.utils import utcformat

from . import metrics
from .clock import LUA_NOW, RedisClock
from .config import Settings
from .epoch import EpochWatch
from .events import emit
from .keys import (
    CONNECTION_PREFIX,
    PREFIX,
    active_key,
    connection_name,
    enqueue_guard_key,
    fence_key,
    limbo_key,
    live_key,
    running_key,
    stats_key,
    track_key,
    worker_key,
)

__all__ = [
    "ENQUEUE_RETRY_GUARD_S",
    "FINAL",
    "TERMINAL",
    "EnqueueConflict",
    "Enqueued",
    "NotDurable",
    "SweepReport",
    "Tracker",
    "connection_name",
    "connection_names",
    "live_key",
    "serializer_path",
    "track_key",
    "worker_key",
]

log = logging.getLogger("rq_recovery")


class EnqueueConflict(ValueError):
    """A job id (an Idempotency-Key) that was already enqueued for a different request."""


class NotDurable(RuntimeError):
    """The enqueue reached Redis but not its AOF on disk within the wait (`job_id` says which)."""

    def __init__(self, job_id: str, wait_ms: int) -> None:
        super().__init__(f"job {job_id} is in Redis but not yet in its append-only file after {wait_ms} ms")
        self.job_id = job_id


class Enqueued(NamedTuple):
    job: Job
    created: bool  # False: this job id was enqueued before, for the same request
    durability: str  # "aof": fsynced to Redis's append-only file; "memory": acknowledged only


#: How long a Redis found without WAITAOF or without AOF is taken at its word (seconds).
AOF_RECHECK_S = 60.0


#: The only statuses that end a job. RQ has 11; stopped/canceled are not a recovery.
TERMINAL = (JobStatus.FINISHED.value, JobStatus.FAILED.value)
#: Statuses a sweeper must never undo: terminal, or ended on purpose by a person.
FINAL = (*TERMINAL, JobStatus.STOPPED.value, JobStatus.CANCELED.value)

#: How often the sweepers, taking turns, look at CLIENT LIST for vanished workers (seconds).
WATCH_TICK = 0.2


def serializer_path(serializer: Any) -> str:
    """A name `rq.serializers.resolve_serializer` turns back into `serializer`."""
    resolved = resolve_serializer(serializer)
    for alias, known in SERIALIZER_ALIASES.items():
        if resolved is known:
            return alias
    if isinstance(resolved, types.ModuleType):
        return resolved.__name__
    return f"{resolved.__module__}.{getattr(resolved, '__qualname__', type(resolved).__qualname__)}"


#: How long an enqueue guard (one job id, enqueued once) lives when the caller names no window:
#: long enough for the client's own retry of a lost reply (seconds), short enough that the
#: bookkeeping of a busy service does not outlive its jobs. An Idempotency-Key passes its own.
ENQUEUE_RETRY_GUARD_S = 30

# KEYS: the job's enqueue guard, its track, the queue's active set  ARGV: guard_ttl_s, request
# digest, job id, n_commands, then per command: argc, args... Runs the commands (RQ's enqueue and
# the track's, as a pipeline would) only when the guard is new, and stamps the track's
# enqueued_at with Redis's time. Returns 1 when it enqueued, 0 when this job id was enqueued
# before for the same request, -1 for another request (nothing written in either case).
_ENQUEUE_ONCE = (
    LUA_NOW
    + """
local prev = redis.call('GET', KEYS[1])
if prev then
  if prev == ARGV[2] then return 0 end
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[1])
local i = 5
for _ = 1, tonumber(ARGV[4]) do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + argc + 1
end
redis.call('HSET', KEYS[2], 'enqueued_at', now)
redis.call('ZADD', KEYS[3], now, ARGV[3])
return 1
"""
)

# KEYS: track, live, running, fence  ARGV: token, worker, pid, ttl_ms, queue, serializer
# Returns the new attempt number, or -2 when another attempt holds a live lease or a recovery
# is under way (a duplicate delivery): the caller must not run it. Idempotent per token.
_START = (
    LUA_NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return tonumber(redis.call('HGET', KEYS[1], 'attempt'))  -- a retried START whose reply was lost
end
if state == 'running' and redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
if state == 'recovering' then return -2 end
local attempt
local carried = redis.call('HGET', KEYS[1], 'fix_requeued')
if carried == 'next' or state == 'running' then  -- recovered by the fix, or an attempt that never ended
  attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
elseif carried == 'same' then
  attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
  if attempt < 1 then attempt = 1 end
else
  attempt = 1  -- RQ itself put the job on a queue (first run, its Retry, a Repeat, a requeue)
  redis.call('HDEL', KEYS[1], 'reason', 'cause', 'error_type', 'recovering_by')
end
redis.call('HDEL', KEYS[1], 'fix_requeued', 'ended_token')
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'attempt', attempt, 'token', ARGV[1], 'worker', ARGV[2],
  'pid', ARGV[3], 'started_at', now, 'heartbeat_at', now, 'queue', ARGV[5], 'serializer', ARGV[6])
redis.call('HSETNX', KEYS[1], 'enqueued_at', now)
redis.call('HSETNX', KEYS[1], 'first_started_at', now)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], now, string.match(KEYS[1], 'track:(.*)$'))
redis.call('SET', KEYS[4], ARGV[1])
return attempt
"""
)

# KEYS: track, live  ARGV: token, ttl_ms  -> 1 beating, 0 superseded
_BEAT = (
    LUA_NOW
    + """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[1], 'heartbeat_at', now)
return 1
"""
)

# KEYS: track, live, fence  ARGV: mode, expected_token, by, stale_after_s
# mode 'expired': the lease must be gone and the token unchanged since the caller read it.
# mode 'owner':   the caller holds the current token (its own horse died or was handed back).
# mode 'limbo':   dequeued but never started: state queued, no token.
# mode 'stale':   a recoverer died mid-recovery long enough ago.
# Returns the attempt number on success, -1 otherwise. Exactly one caller wins.
_CLAIM = (
    LUA_NOW
    + """
local token = redis.call('HGET', KEYS[1], 'token') or ''
local state = redis.call('HGET', KEYS[1], 'state') or 'queued'
local mode = ARGV[1]
if mode == 'expired' then
  if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
  if token ~= ARGV[2] or token == '' or state ~= 'running' then return -1 end
elseif mode == 'owner' then
  if token ~= ARGV[2] or token == '' or state ~= 'running' then return -1 end
elseif mode == 'limbo' then
  if state ~= 'queued' or token ~= '' then return -1 end
  if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
elseif mode == 'stale' then
  if state ~= 'recovering' then return -1 end
  local at = tonumber(redis.call('HGET', KEYS[1], 'recovering_at') or '0')
  if tonumber(now) - at < tonumber(ARGV[4]) then return -1 end
else
  return redis.error_reply('unknown claim mode')
end
redis.call('HSET', KEYS[1], 'state', 'recovering', 'token', '', 'recovering_by', ARGV[3],
  'recovering_at', now, 'recovering_from', state)
redis.call('DEL', KEYS[2], KEYS[3])
return tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
"""
)


# KEYS: running  ARGV: key prefix, absent check (0/1), beat threshold s, n, n gone workers, present workers.
# Returns {scanned, [job ids worth a closer look], Redis's time}: not plainly running, lease gone,
# worker's connection seen to vanish, or (absent check) worker without a connection now that
# missed a beat.
# Key names are computed here, so this one script is not Redis-Cluster safe (nor is RQ's layout).
_SUSPECTS = (
    LUA_NOW
    + """
local n = tonumber(ARGV[4])
local gone, present = {}, {}
for i = 5, 4 + n do gone[ARGV[i]] = true end
for i = 5 + n, #ARGV do present[ARGV[i]] = true end
local check, t, threshold = ARGV[2] == '1', tonumber(now), tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local track = ARGV[1] .. 'track:' .. id
  local f = redis.call('HMGET', track, 'state', 'worker', 'heartbeat_at', 'token', 'named')
  local worker = f[2] or ''
  local suspect = f[1] ~= 'running' or redis.call('EXISTS', ARGV[1] .. 'live:' .. id) == 0 or gone[worker]
  if not suspect and check and not present[worker] and f[4] ~= 'adopted' and f[5] ~= '0' then
    suspect = t - tonumber(f[3] or t) >= threshold
  end
  if suspect then out[#out + 1] = id end
end
return {#ids, out, now}
"""
)


# KEYS: intermediate list, limbo hash  ARGV: key prefix, now, liveness_ttl, dry_run (1/0)
# The dequeue gap in one round trip: forgets first sightings of jobs no longer in the list, notes
# new ones (queued, or untracked), and returns (id, first seen, state or '') of those in it for a
# whole lease.
_LIMBO = """
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
local here = {}
for _, id in ipairs(ids) do here[id] = true end
local dry = ARGV[4] == '1'
local flat = redis.call('HGETALL', KEYS[2])
local seen = {}
for i = 1, #flat, 2 do
  if here[flat[i]] then seen[flat[i]] = flat[i + 1] elseif not dry then redis.call('HDEL', KEYS[2], flat[i]) end
end
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local state = redis.call('HGET', ARGV[1] .. 'track:' .. id, 'state')
  if not state or state == 'queued' then
    local first = seen[id]
    if not first then
      if not dry then redis.call('HSETNX', KEYS[2], id, ARGV[2]) end
    elseif now - tonumber(first) >= ttl then
      out[#out + 1] = id
      out[#out + 1] = first
      out[#out + 1] = state or ''
    end
  end
end
return out
"""


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
    held_s: float = 0.0  # > 0: Redis restarted lately; some leases wait this long, to 0.1 s (see redis_started)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "scanned": self.scanned,
            "requeued": self.requeued,
            "failed": self.failed,
            "skipped_live": self.skipped_live,
        }


_CLIENT_NAME = re.compile(r"(?:^| )name=([^ \r\n]*)", re.MULTILINE)


def connection_names(client_list: bytes | str) -> set[str]:
    """The names in a CLIENT LIST reply (one client a line, `name=` one of its fields; Redis
    refuses a name with a space), clients without a name left out."""
    text = client_list.decode(errors="replace") if isinstance(client_list, bytes) else client_list
    return {name for name in _CLIENT_NAME.findall(text) if name}


class Tracker:
    """The recovery layer's view of Redis: start/beat/claim attempts, and sweep every queue.

    `queue_name` is where `enqueue` puts jobs (the service's queue); `queues` are the queues
    whose dequeue gap this tracker watches (default: just `queue_name`). Running jobs are swept
    on whatever queue they came from. `serializer` reads jobs whose track does not name one.
    """

    def __init__(
        self,
        connection: Redis,
        queue_name: str,
        *,
        liveness_ttl: float,
        max_attempts: int,
        failure_ttl: int | None = None,
        connection_grace: float = 0.6,
        heartbeat_interval: float | None = None,
        queues: Sequence[str] | None = None,
        serializer: Any = None,
        exception_handlers: Sequence[Callable[..., Any]] = (),
        death_penalty_class: type = UnixSignalDeathPenalty,
    ) -> None:
        self.connection_grace = connection_grace
        self.connection = connection
        self.queue_name = queue_name
        self.queues = list(queues) if queues else [queue_name]
        self.liveness_ttl = liveness_ttl
        self.heartbeat_interval = heartbeat_interval or liveness_ttl / 3
        self.max_attempts = max_attempts
        self.failure_ttl = failure_ttl
        self.serializer = resolve_serializer(serializer)
        self.exception_handlers = list(exception_handlers)
        self.death_penalty_class = death_penalty_class
        self.queue = Queue(queue_name, connection=connection, serializer=self.serializer)
        self._enqueue_once = connection.register_script(_ENQUEUE_ONCE)
        self._start = connection.register_script(_START)
        self._beat = connection.register_script(_BEAT)
        self._claim = connection.register_script(_CLAIM)
        self._suspects = connection.register_script(_SUSPECTS)
        self._limbo = connection.register_script(_LIMBO)
        self.clock = RedisClock(connection)  # every time compared across hosts is Redis's
        self._aof_unavailable_until = 0.0  # monotonic time until which WAITAOF is not tried
        self._missing: dict[str, float] = {}  # worker -> when (monotonic) its connection was first seen gone
        self._seen: set[str] = set()
        self._present: list[str] = []  # workers whose connection the last look found, sorted
        self._announced: set[str] = set()

    @classmethod
    def from_settings(cls, connection: Redis, settings: Settings, **options: Any) -> Tracker:
        return cls(
            connection,
            settings.queue_name,
            liveness_ttl=settings.liveness_ttl,
            max_attempts=settings.max_attempts,
            failure_ttl=getattr(settings, "failure_ttl", None),
            connection_grace=settings.connection_grace,
            heartbeat_interval=settings.heartbeat_interval,
            **options,
        )

    # -- enqueue side (the SHAP service's API) --------------------------------------------

    def enqueue(self, func: str, **options: Any) -> Job:
        """Enqueue a job and its tracking record in one step, so neither exists alone: the job
        of `enqueue_once` (same options), for callers that need not know whether it was new."""
        return self.enqueue_once(func, **options)[0]

    def enqueue_once(
        self,
        func: str,
        *,
        kwargs: dict[str, Any],
        job_timeout: int,
        result_ttl: int,
        job_id: str | None = None,
        guard_ttl: int = ENQUEUE_RETRY_GUARD_S,
        digest: str = "",
        wait_aof_ms: int = 0,
    ) -> Enqueued:
        """(the job, whether this call created it, its durability). One Lua script runs RQ's own enqueue
        commands and the track's, once per job id: a retried call (a reply lost to a timeout,
        a client that sends the same Idempotency-Key again within `guard_ttl` s) finds the
        guard and changes nothing, so a job is never pushed twice nor its track reset.
        `digest` names the request: the same job id for another digest raises EnqueueConflict.

        With `wait_aof_ms` > 0 and a Redis that has AOF on and WAITAOF (Redis >= 7.2, Valkey),
        the call returns only once the write is fsynced to the AOF (durability "aof"), else
        raises NotDurable; elsewhere the write is in Redis's memory only ("memory"). WAITAOF
        goes on the enqueue's own connection, as it must."""
        job_id = job_id or str(uuid.uuid4())
        with self.connection.pipeline(transaction=False) as pipe:
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
                mapping={
                    "state": "queued",
                    "attempt": 0,
                    "queue": self.queue_name,
                    "serializer": serializer_path(self.serializer),
                },
            )  # enqueued_at, and the job's place in the active set: the script, on Redis's clock
            commands = [args for args, _options in pipe.command_stack]
            pipe.reset()
        argv: list[Any] = [max(int(guard_ttl), 1), digest or "-", job_id, len(commands)]
        for args in commands:
            argv += [len(args), *args]
        keys = [enqueue_guard_key(job_id), track_key(job_id), active_key(self.queue_name)]
        wait = wait_aof_ms > 0 and time.monotonic() >= self._aof_unavailable_until
        replies = self._enqueue_and_wait(keys, argv, int(wait_aof_ms)) if wait else [self._enqueue_once(keys, argv)]
        if isinstance(replies[0], Exception):
            raise replies[0]
        outcome = int(replies[0])
        durability = "memory"
        if wait and isinstance(replies[1], ResponseError):  # no WAITAOF, or AOF off
            self._aof_unavailable_until = time.monotonic() + AOF_RECHECK_S
            emit("accepted_in_memory", level=logging.WARNING, why=str(replies[1]), recheck_s=AOF_RECHECK_S)
        elif wait and isinstance(replies[1], Exception):
            raise replies[1]
        elif wait:
            if int(replies[1][0]) < 1:
                raise NotDurable(job_id, wait_aof_ms)
            durability = "aof"
        if outcome < 0:
            raise EnqueueConflict(f"job id {job_id} was enqueued before for another request")
        return Enqueued(job, outcome == 1, durability)

    def _enqueue_and_wait(self, keys: list[str], argv: list[Any], wait_ms: int) -> list[Any]:
        """The enqueue script, then WAITAOF, on one connection in one round trip (a redis-py
        pipeline holding a Script would first ask SCRIPT EXISTS: one more round trip)."""
        for _ in range(2):
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._enqueue_once.sha, len(keys), *keys, *argv)
                pipe.execute_command("WAITAOF", 1, 0, wait_ms)
                replies = list(pipe.execute(raise_on_error=False))
            if not isinstance(replies[0], NoScriptError):
                return replies
            self.connection.script_load(_ENQUEUE_ONCE)  # a Redis that restarted: it ran nothing
        return replies

    # -- worker side ----------------------------------------------------------------------

    def start(self, job_id: str, *, token: str, worker: str, pid: int, queue: str | None = None) -> int:
        """Begin an attempt; returns its number, or a negative code: do not run the job."""
        ms = int(self.liveness_ttl * 1000)
        origin = queue or self.queue_name
        res = int(
            self._start(
                keys=[track_key(job_id), live_key(job_id), running_key(), fence_key(job_id)],
                args=[token, worker, pid, ms, origin, serializer_path(self.serializer)],
            )
        )
        return res

    def beat(self, job_id: str, token: str, *, connection: Redis | None = None) -> bool:
        ms = int(self.liveness_ttl * 1000)
        return bool(self._beat(keys=[track_key(job_id), live_key(job_id)], args=[token, ms], client=connection))

    def claim(self, job_id: str, *, mode: str, token: str = "", by: str, stale_after: float = 30.0) -> int:
        keys = [track_key(job_id), live_key(job_id), fence_key(job_id)]
        return int(self._claim(keys=keys, args=[mode, token, by, stale_after]))

    def count_late(self, job_id: str, *, worker: str, queue: str) -> None:
        """A superseded attempt tried to write its outcome and was refused: say so."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hincrby(track_key(job_id), "late_completions", 1)
            pipe.hset(track_key(job_id), mapping={"last_late_worker": worker, "last_late_at": self.clock.now()})
            pipe.hincrby(stats_key(queue), "late_completions_rejected", 1)
            pipe.execute()

    # -- recovery actions (only after a successful claim) ---------------------------------

    def fetch(self, job_id: str, track: dict[str, str] | None = None) -> Job:
        """RQ's job, read with the serializer of the worker that started it."""
        track = self.read(job_id) if track is None else track
        serializer = resolve_serializer(track["serializer"]) if track.get("serializer") else self.serializer
        return Job.fetch(job_id, connection=self.connection, serializer=serializer)

    def recover(
        self,
        job_id: str,
        *,
        attempt: int,
        reason: str,
        by: str,
        cause: str = "abandoned",
        refund: bool = False,
        exc_string: str = "",
        exception_handlers: Sequence[Callable[..., Any]] | None = None,
    ) -> str:
        """Requeue the claimed job while attempts are left, else give up on it. Returns the action.

        `cause` is a small closed set (a metrics label): abandoned, killed, handed_back,
        dequeue_gap. `exc_string` (a traceback, when there was one) is kept in front of the reason.
        """
        try:
            job = self.fetch(job_id)
        except NoSuchJobError:
            self._forget(job_id, vanished=True)
            return "vanished"
        if refund and attempt > 0:
            attempt -= 1
        if attempt < self.max_attempts:
            self._requeue(job, reason=reason, cause=cause, refund=refund)
            action = "requeued"
        else:
            reason = f"{reason}; attempts exhausted ({attempt}/{self.max_attempts})"
            action = self._give_up(job, reason=reason, cause=cause, exc_string=exc_string, handlers=exception_handlers)
        emit(f"job_{action}", level=logging.WARNING, job_id=job_id, attempt=attempt, by=by, cause=cause, reason=reason)
        return action

    def _silent_for(self, job_id: str, now: float) -> float | None:
        beat = self.connection.hget(track_key(job_id), "heartbeat_at")
        return now - float(beat) if beat else None

    def _drop_executions(self, pipe: Any, job: Job) -> None:
        """Remove the job's entries from RQ's started registry and the dequeue gap.

        Read from the registry itself: RQ 3 keeps an execution record about 90 s and its index
        about 150 s, so `job.get_executions()` raises for a job whose worker died a while ago.
        """
        registry = StartedJobRegistry(job.origin, connection=self.connection, serializer=self.serializer)
        mine = [m for m in (_s(x) for x in self.connection.zrange(registry.key, 0, -1)) if m.split(":")[0] == job.id]
        if mine:
            pipe.zrem(registry.key, *mine)
        pipe.lrem(Queue(job.origin, connection=self.connection).intermediate_queue_key, 0, job.id)

    def _requeue(self, job: Job, *, reason: str, cause: str, refund: bool = False) -> None:
        """Put the job back at the front of its own queue, exactly as RQ's retry does."""
        now = self.clock.now()
        silent = self._silent_for(job.id, now)
        queue = Queue(job.origin, connection=self.connection, serializer=job.serializer)
        enqueued_at = job.enqueued_at
        with self.connection.pipeline() as pipe:
            pipe.multi()
            self._drop_executions(pipe, job)
            pipe.hset(
                track_key(job.id),
                mapping={
                    "state": "queued",
                    "reason": reason,
                    "requeued_at": now,
                    "token": "",
                    "fix_requeued": "same" if refund else "next",
                },
            )
            pipe.hincrby(track_key(job.id), "requeues", 1)
            pipe.zrem(running_key(), job.id)
            pipe.hincrby(stats_key(job.origin), "requeued", 1)
            pipe.hdel(limbo_key(job.origin), job.id)
            metrics.record_recovery(pipe, job.origin, action="requeued", cause=cause, latency_s=silent)
            # RQ's own retry path: no dependency check (it ran, so its dependencies were met),
            # and no WATCH inside this MULTI. The job waited longest of all: the front.
            queue._enqueue_job(job, pipeline=pipe, at_front=True)
            if enqueued_at is not None:  # RQ's enqueued_at stays the first enqueue, as with its retry
                pipe.hset(job.key, "enqueued_at", utcformat(enqueued_at))
            pipe.execute()

    def _give_up(
        self,
        job: Job,
        *,
        reason: str,
        cause: str,
        exc_string: str = "",
        handlers: Sequence[Callable[..., Any]] | None = None,
    ) -> str:
        """What RQ's StartedJobRegistry.cleanup does with an abandoned job, with our reason.

        The failure callback and the exception handlers run; RQ's own Retry, if the job has one
        left, requeues it (a new life for the fix's count); else the job fails, its dependents
        that allow failure are enqueued, and webhooks fire.
        """
        now = self.clock.now()
        silent = self._silent_for(job.id, now)
        queue = Queue(job.origin, connection=self.connection, serializer=job.serializer)
        exc = AbandonedJobError(reason)
        # RQ's default death penalty is SIGALRM, which only the main thread may set: a sweeper
        # thread times the callback with a timer instead.
        on_main = threading.current_thread() is threading.main_thread()
        penalty = self.death_penalty_class if on_main else TimerDeathPenalty
        try:
            execute_failure_callback(job, penalty, AbandonedJobError, exc, None)
        except Exception:  # noqa: BLE001 - as in RQ: a raising callback must not stop the recovery
            log.exception("failure callback of job %s raised", job.id)
        handlers = self.exception_handlers if handlers is None else handlers
        if handlers:
            call_exception_handlers(list(handlers), job, AbandonedJobError, exc, None)
        full = f"{exc_string.rstrip()}\n{reason}" if exc_string.strip() else reason
        retry = bool(job.retries_left and job.retries_left > 0)
        with self.connection.pipeline() as pipe:
            pipe.multi()
            self._drop_executions(pipe, job)
            common = {"reason": reason, "token": "", "cause": cause}
            pipe.zrem(running_key(), job.id)
            pipe.hdel(limbo_key(job.origin), job.id)
            metrics.record_recovery(pipe, job.origin, action="failed", cause=cause, latency_s=silent)
            if retry:
                pipe.hset(track_key(job.id), mapping={**common, "state": "queued"})  # type: ignore[dict-item]
                pipe.hdel(track_key(job.id), "fix_requeued")
                job.retry(queue, pipe)
            else:
                pipe.hset(track_key(job.id), mapping={**common, "state": "failed", "ended_at": now})  # type: ignore[dict-item]
                record_job_failure(job, full, pipe)
                ttl = job.failure_ttl if job.failure_ttl is not None else self.failure_ttl
                if ttl is not None and ttl >= 0:
                    pipe.expire(track_key(job.id), max(int(ttl), 1))
                metrics.record_outcome(pipe, job.origin, outcome="failed", cause=cause)
                pipe.zrem(active_key(job.origin), job.id)
                pipe.hincrby(stats_key(job.origin), "failed_recovery", 1)
            pipe.execute()
        if not retry:
            try:
                queue.enqueue_dependents(job, refresh_job_status=False)
            except Exception:  # noqa: BLE001 - as in RQ: logged; its maintenance recovers them
                log.exception("enqueueing the dependents of job %s failed", job.id)
            job.send_webhooks(JobStatus.FAILED, exc_string=full)
        release_slot(job)
        return "retried" if retry else "failed"

    def _forget(self, job_id: str, origin: str | None = None, *, vanished: bool = False) -> None:
        """Drop the job from the fix's sets; `vanished` (RQ's job hash is gone: result_ttl=0,
        a delete, its TTL) also its track, which would otherwise stay `recovering` for ever."""
        with self.connection.pipeline() as pipe:
            pipe.zrem(running_key(), job_id)
            for queue in {origin or self.queue_name, self.queue_name}:
                pipe.zrem(active_key(queue), job_id)
                pipe.hdel(limbo_key(queue), job_id)
            pipe.delete(live_key(job_id), fence_key(job_id))
            if vanished:
                pipe.delete(track_key(job_id))
            pipe.execute()

    # -- reading --------------------------------------------------------------------------

    def read(self, job_id: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.connection.hgetall(track_key(job_id)).items()}

    def running_ids(self) -> list[str]:
        return [_s(x) for x in self.connection.zrange(running_key(), 0, -1)]

    def watch_connections(self, names: set[str] | None = None) -> bool:
        """Note which workers' connections vanished; True when one just passed CONNECTION_GRACE.

        Cheap (one CLIENT LIST), so the sweepers call it in turn, five times a second, and run a full
        sweep only when a worker has really gone: that is what recovers a killed worker's job
        in about a second instead of a lease.
        """
        names = self.live_connections() if names is None else names
        if names is None:
            return False
        now = time.monotonic()
        present = {n.removeprefix(CONNECTION_PREFIX) for n in names if n.startswith(CONNECTION_PREFIX)}
        self._present = sorted(present)
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
        epoch: EpochWatch | None = None,
    ) -> None:
        """Sweep every `interval` until `stop`; with `connection_check`, also at once when a
        worker's connection has been gone for the grace period. Before each sweep, `epoch`
        (default: this sweeper's own) checks that Redis still holds the data it knew."""
        epoch = epoch or EpochWatch(self.connection, by=by)
        start = time.monotonic() + min(WATCH_TICK, interval)
        next_full = next_watch = start
        holding = False
        while not stop.wait(max(0.0, min(next_full, next_watch if connection_check else next_full) - time.monotonic())):
            try:
                now = time.monotonic()
                urgent = False
                if connection_check and now >= next_watch:
                    urgent = self.watch_connections()
                    next_watch = now + min(self._turn_in(by), interval)
                if urgent or now >= next_full:
                    next_full = time.monotonic() + interval
                    epoch.check()
                    report = self.sweep(by=by, connection_check=connection_check)
                    if report.held_s > 0 and not holding:
                        emit("sweep_held", level=logging.WARNING, by=by, why="Redis restarted", held_s=report.held_s)
                    holding = report.held_s > 0
                    if on_report is not None:
                        on_report(report)
            except Exception as exc:  # noqa: BLE001 - Redis away: try again next tick
                log.debug("sweeper %s: %s", by, exc)
                next_watch = max(next_watch, time.monotonic() + WATCH_TICK)
                next_full = max(next_full, time.monotonic() + WATCH_TICK)

    def _turn_in(self, by: str) -> float:
        """Seconds until sweeper `by` looks at CLIENT LIST again.

        The sweepers of the workers the last look found connected take turns, WATCH_TICK apart
        on Redis's clock, so Redis is asked about five times a second however many workers
        there are (each used to ask five times a second). A sweeper that is not one of them
        (the API's) takes the turn its name hashes to.
        """
        turns = self._present
        n = max(1, len(turns))
        mine = turns.index(by) if by in turns else zlib.crc32(by.encode()) % n
        now = self.clock.now()
        slot = math.floor(now / WATCH_TICK)
        return (slot + ((mine - slot) % n or n)) * WATCH_TICK - now

    def live_connections(self) -> set[str] | None:
        """Names of connected clients, or None where CLIENT LIST is not allowed (managed Redis).

        The reply is read raw (`connection_names`): redis-py's `client_list()` makes a dict of
        every field of every client, which the sweepers, looking five times a second while the
        horses run, would pay for in copied pages."""
        try:
            reply = self.connection.execute_command("CLIENT", "LIST")
        except Exception:  # noqa: BLE001 - a refused command just disables the shortcut
            return None
        return connection_names(reply)

    def rq_worker_alive(self, name: str, *, names: set[str] | None = None) -> bool:
        """Does a plain RQ worker of this name still live?

        RQ names its connection after the worker: where CLIENT LIST is allowed, that settles it
        (a killed worker's sockets close at once, while its registration lingers for its TTL).
        Elsewhere, a registration whose heartbeat is younger than 90 s (RQ beats every 30 s
        while a job runs) counts as alive.
        """
        if not name or name == "?":
            return False
        if names is not None:
            return name in names or connection_name(name) in names
        raw = self.connection.hget(f"rq:worker:{name}", "last_heartbeat")
        if raw is None:
            return False
        try:
            beat = datetime.fromisoformat(_s(raw).replace("Z", "+00:00"))
        except ValueError:
            return True  # registered, heartbeat unreadable: do not guess it dead
        return self.clock.now() - beat.replace(tzinfo=beat.tzinfo or UTC).timestamp() < 90

    def adopt_untracked(self, *, silent_after: float, dry_run: bool = False, force: bool = False) -> list[str]:
        """Track started jobs the fix never saw (plain RQ workers, jobs from before the fix).

        Such a job is adopted only when RQ's own heartbeat on it is older than `silent_after`
        and, unless `force`, its worker is gone (RQ's registration and its connection); it then
        has no lease, so the next sweep recovers it. Returns the ids adopted (or that would be).
        """
        names = self.live_connections()
        now = self.clock.now()  # against RQ's own heartbeat, on its worker's clock
        adopted: list[str] = []
        for queue in self.queues:
            registry = StartedJobRegistry(queue, connection=self.connection, serializer=self.serializer)
            for job_id in registry.get_job_ids(cleanup=False):
                state = self.connection.hget(track_key(job_id), "state")
                if state is not None and _s(state) not in ("queued",) + FINAL:
                    continue  # started by a worker with the fix: its lease says everything
                try:
                    job = Job.fetch(job_id, connection=self.connection, serializer=self.serializer)
                    status = getattr(job.get_status(refresh=False), "value", None)
                except Exception:  # noqa: BLE001 - vanished, or unreadable: nothing to adopt
                    continue
                beat = job.last_heartbeat or job.started_at
                if status != JobStatus.STARTED.value or beat is None:
                    continue
                beat_ts = beat.replace(tzinfo=beat.tzinfo or UTC).timestamp()
                if now - beat_ts < silent_after:
                    continue
                if not force and self.rq_worker_alive(job.worker_name or "", names=names):
                    continue
                adopted.append(job_id)
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
                            "queue": job.origin,
                            "serializer": serializer_path(self.serializer),
                        },
                    )
                    pipe.zadd(running_key(), {job_id: beat_ts})
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
        partitioned one's linger, so those fall back to the lease): either its connection was
        seen to vanish for CONNECTION_GRACE, or (a sweeper that just started, a burst worker)
        it is absent now and the worker has missed a beat. `force` also takes jobs whose worker
        still beats. `dry_run` reports what would happen and changes nothing.
        """
        report = SweepReport()
        names = self.live_connections() if connection_check else None
        if names is not None:
            self.watch_connections(names)
        mono = time.monotonic()
        gone = {w for w, t in self._missing.items() if mono - t >= self.connection_grace} if connection_check else set()
        present = {n.removeprefix(CONNECTION_PREFIX) for n in names or () if n.startswith(CONNECTION_PREFIX)}
        if force:
            ids = self.running_ids()
            report.scanned = len(ids)
            now = self.clock.now()
        else:
            # One script reads the whole running set and returns only the suspects (lease gone,
            # worker's connection gone, or not plainly running): a healthy 10,000-job sweep is
            # one round trip, not 20,000 commands. A worker absent right now is a suspect too.
            threshold = self.heartbeat_interval + self.connection_grace
            args: list[str | float] = [PREFIX, int(names is not None), threshold, len(gone)]
            args += [*sorted(gone), *sorted(present)]
            scanned, ids, redis_now = self._suspects(keys=[running_key()], args=args)
            now = float(_s(redis_now))
            self.clock.observe(now)
            ids = [_s(x) for x in ids]
            report.scanned = int(scanned)
            report.skipped_live = report.scanned - len(ids)
        redis_started = functools.cache(self.redis_started)  # one INFO per sweep, and only if needed

        def in_outage(ts: float) -> bool:
            """Did this lease (last renewed at `ts`) lapse partly while Redis was down?"""
            if force:
                return False
            started_at, uptime = redis_started()
            if ts >= started_at or uptime >= self.liveness_ttl:
                return False
            report.held_s = max(report.held_s, math.ceil((self.liveness_ttl - uptime) * 10) / 10)  # > 0 while held
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
            if state == "recovering":
                self._sweep_stale(report, job_id, track, by=by, now=now, dry_run=dry_run)
                continue
            if state != "running":
                if not dry_run:
                    self._forget(job_id, track.get("queue"))  # ended, or RQ took it back itself
                continue
            token = track.get("token", "")
            worker = track.get("worker", "?")
            beat_age = now - float(track.get("heartbeat_at") or track.get("started_at") or now)
            lease_alive = pttl > 0
            conn_gone = worker in gone or (
                names is not None
                and worker not in present
                and beat_age >= self.heartbeat_interval + self.connection_grace
                and token != "adopted"
                and track.get("named") != "0"
            )
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

    def orphans(self, queues: set[str], *, exclude: str = "") -> list[str]:
        """Running jobs on `queues` whose worker looks gone: no named connection (or, where
        CLIENT LIST is refused, a missed beat). A sweep recovers them once their lease ends."""
        names = self.live_connections()
        present = {n.removeprefix(CONNECTION_PREFIX) for n in names or () if n.startswith(CONNECTION_PREFIX)}
        now, out = self.clock.now(), []
        for job_id in self.running_ids():
            track = self.read(job_id)
            worker = track.get("worker", "")
            if track.get("state") != "running" or track.get("queue") not in queues or worker == exclude:
                continue
            beat_age = now - float(track.get("heartbeat_at") or now)
            if (names is not None and worker not in present) or beat_age > 1.5 * self.heartbeat_interval:
                out.append(job_id)
        return out

    def redis_started(self) -> tuple[float, float]:
        """The latest moment Redis can have (re)started, on its clock, and the least time it
        has been up since.

        Lease expiry times are absolute, so a lease also runs out while Redis is down: right
        after a restart, every worker that beat before it looks dead. `sweep` gives such a job
        one whole lease of Redis uptime for its worker to beat again. Redis counts its uptime
        as its whole-second clock minus its whole-second start time, up to a second more than
        it has been up (3 s after 2.06 s); read as exact, that cut the hold short by as much.
        Read as bounds, the hold lasts a lease and up to a second more, never less. Where INFO
        is refused (some managed Redis) or has no uptime, Redis counts as up for ever: leases
        are judged at once.
        """
        try:
            info = self.connection.info("server")
            uptime = int(info["uptime_in_seconds"])
        except (ResponseError, KeyError):
            forever = float(1 << 30)
            return self.clock.now() - forever, forever
        micros = info.get("server_time_usec")  # Redis >= 6.2: this reply's TIME, whose seconds it counts
        now = int(micros) / 1e6 if micros else self.clock.now()
        whole = math.floor(now) if micros else now
        started_at = min(now, whole - uptime + 1)
        return started_at, now - started_at

    def _recover_claimed(
        self, report: SweepReport, job_id: str, *, mode: str, token: str, reason: str, by: str
    ) -> None:
        attempt = self.claim(job_id, mode=mode, token=token, by=by)
        if attempt < 0:
            return  # someone else won, or the worker beat in time
        # A job that wrote its outcome just before dying, was stopped or canceled, or that RQ
        # itself put back on a queue or scheduled is only finalized (as RQ's own cleanup leaves
        # alone all but `started` jobs). Still `queued` but on no queue: its worker died between
        # taking it and its horse marking it started; that is an abandoned attempt too.
        track = self.read(job_id)
        try:
            job = self.fetch(job_id, track)
            status = getattr(job.get_status(refresh=True), "value", None)
        except NoSuchJobError:
            self._forget(job_id, track.get("queue"), vanished=True)
            return
        abandoned = status == JobStatus.STARTED.value or (status == JobStatus.QUEUED.value and not self._on_queue(job))
        if not abandoned:
            self.connection.hset(track_key(job_id), mapping={"state": status or "queued", "ended_at": self.clock.now()})
            self._forget(job_id, job.origin)
            report.finalized += 1
            return
        action = self.recover(job_id, attempt=attempt, reason=reason, by=by)
        report.actions.append({"job_id": job_id, "action": action, "reason": reason})
        if action == "requeued":
            report.requeued += 1
        elif action in ("failed", "retried"):
            report.failed += action == "failed"
            report.requeued += action == "retried"

    def _on_queue(self, job: Job) -> bool:
        """Is the job waiting in its queue's list (where a worker will find it)?"""
        try:
            return self.connection.lpos(Queue(job.origin, connection=self.connection).key, job.id) is not None
        except ResponseError:  # no LPOS (Redis < 6.0.6): look the slow way
            return job.id in {_s(x) for x in self.connection.lrange(f"rq:queue:{job.origin}", 0, -1)}

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
        for queue in self.queues:
            self._sweep_limbo_of(queue, report, by=by, now=now, dry_run=dry_run, in_outage=in_outage)

    def _sweep_limbo_of(
        self,
        queue: str,
        report: SweepReport,
        *,
        by: str,
        now: float,
        dry_run: bool,
        in_outage: Callable[[float], bool],
    ) -> None:
        intermediate = Queue(queue, connection=self.connection).intermediate_queue_key
        due = [
            _s(x)
            for x in self._limbo(
                keys=[intermediate, limbo_key(queue)], args=[PREFIX, now, self.liveness_ttl, int(dry_run)]
            )
        ]
        for job_id, seen, known in zip(due[0::3], due[1::3], due[2::3], strict=True):
            first, state = float(seen), known or None
            if in_outage(first):
                continue
            reason = f"lost between dequeue and start for {now - first:.1f} s"
            if dry_run:
                report.actions.append({"job_id": job_id, "action": "requeue", "reason": reason, "dry_run": True})
                continue
            if state is None:  # a job enqueued without our API: track it from here on
                self.connection.hset(track_key(job_id), mapping={"state": "queued", "attempt": 0, "queue": queue})
            attempt = self.claim(job_id, mode="limbo", by=by)
            if attempt < 0:
                continue
            try:
                job = self.fetch(job_id)
            except NoSuchJobError:
                self._forget(job_id, queue, vanished=True)
                continue
            if getattr(job.get_status(refresh=False), "value", None) in FINAL:
                self.connection.hset(track_key(job_id), "state", job.get_status(refresh=False).value)
                self.connection.lrem(intermediate, 0, job_id)
                continue
            # refund: the attempt never started, so it must not count
            self._requeue(job, reason=reason, cause="dequeue_gap", refund=True)
            report.requeued += 1
            report.actions.append({"job_id": job_id, "action": "requeued", "reason": reason})
