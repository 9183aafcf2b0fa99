"""The outcome commit: RQ's own MULTI/EXEC, fenced by the attempt's token and ending the attempt.

RQ writes a job's outcome (finished, failed, retried, repeated, stopped) in one transaction of
its own. While a worker with the fix writes the outcome of an attempt, its connection hands out
`FencedPipeline`s: the transaction also WATCHes the job's fence key (`keys.fence_key`, the
current attempt's token: a start, a claim or an end changes it, a heartbeat never does), checks
that the token is still this attempt's, and ends the attempt in the same EXEC: state, lease,
running set, expiry, and the attempt's facts and metrics (duration, peak RSS, queue wait,
histograms), one script (`_END`). A sweeper that claims the job between the check and the EXEC
deletes the fence key, so the EXEC aborts: a worker presumed dead (frozen, partitioned) can
never overwrite the attempt that replaced it, not even if it froze right after the check.

The WATCH and the token check travel together (one round trip), and the end is one command in
RQ's transaction: the fence costs RQ's outcome write no round trip of its own. The horse's start
(`ends=False`: RQ marks the job started) is one script that checks the token and runs RQ's
commands, so it costs none either.

What this leans on, and what catches a change in it: `FencedPipeline.watch` drives redis-py's
pipeline connection itself (`pack_commands`, `parse_response`, `reset`) to send the WATCH and
the GET together, and the start script answers True for each of RQ's commands, whose replies
`prepare_job_execution` ignores today. A redis-py or RQ release that changes either fails
`tests/test_fencing.py` and the RQ contract run (`make rq-contract`), not a user's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError
from rq.job import Job, JobStatus

from .clock import LUA_NOW
from .keys import active_key, durations_key, fence_key, live_key, long_key, peaks_key, running_key, stats_key, track_key
from .metrics import LUA_OBSERVE, counters_key, hist_key

__all__ = ["Fence", "FencedPipeline", "Superseded", "fenced_client"]

# KEYS: track, live, fence, running, active, stats, long, durations, peaks, counters,
#       hist duration, hist queue wait, hist peak RSS
# ARGV: job_id, state, token, ttl (-1: none), cause, error_type, duration_s, peak_rss_bytes (0: none)
# Returns the queue wait (first start - enqueue, seconds) as a string, or false.
_END = (
    LUA_NOW
    + LUA_OBSERVE
    + """
local job_id, state, token, ttl, cause = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local duration, rss = tonumber(ARGV[7]), tonumber(ARGV[8])
local first, enq = unpack(redis.call('HMGET', KEYS[1], 'first_started_at', 'enqueued_at'))
local wait = false
if first and enq then wait = string.format('%.4f', math.max(0, tonumber(first) - tonumber(enq))) end
local facts = {'state', state, 'ended_at', now, 'token', '', 'ended_token', token, 'cause', cause,
  'duration_s', ARGV[7]}
if ARGV[6] ~= '' then table.insert(facts, 'error_type') table.insert(facts, ARGV[6]) end
if rss > 0 then table.insert(facts, 'peak_rss_bytes') table.insert(facts, ARGV[8]) end
if wait then table.insert(facts, 'queue_wait_s') table.insert(facts, wait) end
redis.call('HSET', KEYS[1], unpack(facts))
redis.call('HDEL', KEYS[1], 'fix_requeued')
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], job_id)
redis.call('ZREM', KEYS[5], job_id)
redis.call('HINCRBY', KEYS[6], state, 1)
redis.call('SREM', KEYS[7], job_id)
if ttl >= 0 then redis.call('EXPIRE', KEYS[1], math.max(ttl, 1)) end
if state == 'finished' then
  redis.call('LPUSH', KEYS[8], ARGV[7])
  redis.call('LTRIM', KEYS[8], 0, 199)
end
if rss > 0 then
  redis.call('LPUSH', KEYS[9], ARGV[8])
  redis.call('LTRIM', KEYS[9], 0, 199)
end
observe(KEYS[11], 'job_duration_seconds', duration, ARGV[7])
if state == 'finished' or state == 'failed' then
  redis.call('HINCRBY', KEYS[10], 'jobs|' .. state .. '|' .. cause, 1)
  if wait then observe(KEYS[12], 'job_queue_wait_seconds', tonumber(wait), wait) end
end
if rss > 0 then observe(KEYS[13], 'horse_peak_rss_bytes', rss, ARGV[8]) end
return wait
"""
)


# KEYS: fence  ARGV: token, then each command as (its length, its words...)
# The horse's start: RQ's commands run only while the token is current, in one atomic step.
_IF_CURRENT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Superseded(Exception):
    """This attempt was presumed dead and recovered elsewhere: its outcome is refused."""


@dataclass
class Fence:
    """One attempt's right to write its job's outcome, and the facts that outcome records."""

    job: Job
    token: str
    default_result_ttl: int
    ends: bool = True  # False: only check the token (the horse's start), never end the attempt
    started: float | None = None  # monotonic start of the attempt (None: now), for its duration
    peak_rss: Callable[[], int | None] = lambda: None  # bytes, read at the commit
    func: str = "?"  # the job's function: its finished durations are kept per function
    cause: str = ""  # why a failure failed (exception, timeout); "" for a success
    error_type: str = ""
    committed: bool = False
    superseded: bool = False
    #: What the commit wrote (state, cause, duration_s, queue_wait_s, peak_rss_bytes), once made.
    outcome: dict[str, Any] | None = None

    def verify(self, token: bytes | str | None) -> None:
        """`token` is the fence key, read under WATCH: is it still this attempt's? Raises
        Superseded if not. Only this attempt's start wrote this token there, and whatever ends
        or takes over the attempt (its end, a claim, a newer start) deletes or replaces it."""
        if token is None or _text(token) != self.token:
            self.superseded = True
            raise Superseded(f"job {self.job.id}: attempt {self.token[:8]} was superseded; its outcome is refused")

    def final_state(self) -> str:
        """The track state that matches what RQ is about to write."""
        status = getattr(self.job.get_status(refresh=False), "value", None)
        if status in (JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.STOPPED.value):
            return str(status)
        return "queued"  # RQ's Retry or Repeat put it back: a new life

    def end(self, pipe: Pipeline) -> None:
        """Queue the one command that ends this attempt and records its facts (inside the MULTI)."""
        job, state = self.job, self.final_state()
        q = job.origin
        duration = round(time.monotonic() - (self.started if self.started is not None else time.monotonic()), 4)
        rss = self.peak_rss() or 0
        cause = "ok" if state == JobStatus.FINISHED.value else self.cause or "exception"
        ttl = self._ttl(state)
        keys = [
            track_key(job.id),
            live_key(job.id),
            fence_key(job.id),
            running_key(),
            active_key(q),
            stats_key(q),
            long_key(q),
            durations_key(self.func),
            peaks_key(q),
            counters_key(q),
            hist_key(q, "job_duration_seconds"),
            hist_key(q, "job_queue_wait_seconds"),
            hist_key(q, "horse_peak_rss_bytes"),
        ]
        args = [job.id, state, self.token, -1 if ttl is None else ttl, cause, self.error_type, duration, rss]
        pipe.execute_command("EVAL", _END, len(keys), *keys, *args)
        self.outcome = {"state": state, "cause": cause, "duration_s": duration, "peak_rss_bytes": rss or None}

    def _ttl(self, state: str) -> int | None:
        """The track lives as long as RQ keeps the job: result_ttl / failure_ttl (-1: for ever)."""
        ttl: int | None
        if state == JobStatus.FINISHED.value:
            ttl = self.job.get_result_ttl(self.default_result_ttl)
        elif state in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
            ttl = self.job.failure_ttl
        else:
            return None
        if ttl is None or ttl < 0:
            return None
        return max(int(ttl), 1)


class FencedPipeline(Pipeline):
    """A redis-py pipeline whose transaction is fenced by `fence` (see the module docstring)."""

    fence: Fence

    def watch(self, *names: Any) -> Any:
        """WATCH `names` and the fence key, and read the fence key: both in one round trip."""
        if self.fence.committed:
            return super().watch(*names)
        key = fence_key(self.fence.job.id)
        for retry in (True, False):  # nothing is watched until the reply: the pair may be resent
            conn = self.connection
            if conn is None:
                conn = self.connection = self.connection_pool.get_connection()
            try:
                conn.send_packed_command(conn.pack_commands([("WATCH", *names, key), ("GET", key)]))
                result = self.parse_response(conn, "WATCH")
                token = self.parse_response(conn, "GET")
                break
            except (RedisConnectionError, RedisTimeoutError) as exc:
                conn.disconnect()  # which drops the watch too
                self.watching = False
                self.reset()
                if not retry:
                    raise WatchError(f"connection lost while watching the fence key: {exc}") from exc
        self.fence.verify(token)
        return result

    def multi(self) -> None:
        if not self.watching and not self.fence.committed:
            self.watch()
        super().multi()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        transactional = self.explicit_transaction or bool(vars(self).get("transaction"))
        if self.fence.committed or not transactional:
            return super().execute(raise_on_error)
        if not self.fence.ends and not self.watching:
            return self._execute_if_current()
        if not self.watching:
            # RQ queued its commands without WATCH or MULTI: WATCH and check now, then send them
            # as one MULTI/EXEC (redis-py sends a WATCH at once, even with commands buffered).
            stack, self.command_stack = self.command_stack, []
            self.watch()
            super().multi()
            self.command_stack = stack
        if not self.fence.ends:
            return super().execute(raise_on_error)
        self.fence.end(self)
        result = super().execute(raise_on_error)
        self.fence.committed = True
        if self.fence.outcome is not None:
            wait = result[-1]
            self.fence.outcome["queue_wait_s"] = float(_text(wait)) if wait else None
        return result

    def _execute_if_current(self) -> list[Any]:
        """The start's check and RQ's commands as one script: no WATCH, one round trip. RQ
        ignores these replies (`prepare_job_execution`); each command here answers True."""
        stack, self.command_stack = self.command_stack, []
        words: list[Any] = []
        for args, _options in stack:
            words += [len(args), *args]
        try:
            current = self.immediate_execute_command(
                "EVAL", _IF_CURRENT, 1, fence_key(self.fence.job.id), self.fence.token, *words
            )
        finally:
            self.reset()
        if not current:
            self.fence.verify(None)
        return [True] * len(stack)


def fenced_client(connection: Redis, fence: Fence) -> Redis:
    """`connection`, whose transactional pipelines are fenced; everything else is unchanged."""
    # What copy.copy does, without its pickling protocol (`copyreg._slotnames` walks the class's
    # MRO in every fresh horse, whose cache dies with it; see BENCHMARKS.md, overhead).
    cls = type(connection)
    client = cls.__new__(cls)
    client.__dict__.update(vars(connection))
    # The copy shares the pool: when it is collected, it must not close it (a copy of a client
    # that made its own pool would: every fenced write then cost the process a reconnect).
    client.auto_close_connection_pool = False

    def pipeline(transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = FencedPipeline(connection.connection_pool, connection.response_callbacks, transaction, shard_hint)
        pipe.fence = fence
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]
    return client
