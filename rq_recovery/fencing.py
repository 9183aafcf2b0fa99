"""The outcome commit: RQ's own MULTI/EXEC, fenced by the attempt's token and ending the attempt.

RQ writes a job's outcome (finished, failed, retried, repeated, stopped) in one transaction of
its own. While a worker with the fix writes the outcome of an attempt, its connection hands out
`FencedPipeline`s: the transaction also WATCHes the job's fence key (`keys.fence_key`, the
current attempt's token: a start, a claim or an end changes it, a heartbeat never does), checks
that the token is still this attempt's, and ends the attempt (state, lease, running set, expiry)
in the same EXEC. A sweeper that claims the job between the check and the EXEC deletes the fence
key, so the EXEC aborts: a worker presumed dead (frozen, partitioned) can never overwrite the
attempt that replaced it, not even if it froze right after the check.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.job import Job, JobStatus

from .keys import active_key, fence_key, live_key, running_key, stats_key, track_key

__all__ = ["Fence", "FencedPipeline", "Superseded", "fenced_client"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Superseded(Exception):
    """This attempt was presumed dead and recovered elsewhere: its outcome is refused."""


@dataclass
class Fence:
    """One attempt's right to write its job's outcome."""

    job: Job
    token: str
    default_result_ttl: int
    ends: bool = True  # False: only check the token (the horse's start), never end the attempt
    clock: Callable[[], float] = time.time  # the worker passes Redis's (`clock.RedisClock.now`)
    committed: bool = False
    superseded: bool = False

    def check(self, pipe: Pipeline) -> None:
        """In WATCH mode: is the token still current? Raises Superseded if not.

        The fence key alone says it, in one round trip: only this attempt's start wrote this
        token there, and whatever ends or takes over the attempt (its end, a claim, a newer
        start) deletes or replaces the key."""
        token = pipe.get(fence_key(self.job.id))
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
        """Queue the commands that end this attempt (inside the MULTI)."""
        job, state = self.job, self.final_state()
        key = track_key(job.id)
        pipe.hset(key, mapping={"state": state, "ended_at": self.clock(), "token": "", "ended_token": self.token})
        pipe.hdel(key, "fix_requeued")
        pipe.delete(live_key(job.id), fence_key(job.id))
        pipe.zrem(running_key(), job.id)
        pipe.zrem(active_key(job.origin), job.id)
        pipe.hincrby(stats_key(job.origin), state, 1)
        ttl = self._ttl(state)
        if ttl is not None:
            pipe.expire(key, ttl)

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
        result = super().watch(*names, fence_key(self.fence.job.id))
        if not self.fence.committed:
            self.fence.check(self)
        return result

    def multi(self) -> None:
        if not self.watching and not self.fence.committed:
            self.watch()
        super().multi()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        transactional = self.explicit_transaction or bool(vars(self).get("transaction"))
        if self.fence.committed or not transactional:
            return super().execute(raise_on_error)
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
        return result


def fenced_client(connection: Redis, fence: Fence) -> Redis:
    """`connection`, whose transactional pipelines are fenced; everything else is unchanged."""
    client = copy.copy(connection)
    # The copy shares the pool: when it is collected, it must not close it (a copy of a client
    # that made its own pool would: every fenced write then cost the process a reconnect).
    client.auto_close_connection_pool = False

    def pipeline(transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = FencedPipeline(connection.connection_pool, connection.response_callbacks, transaction, shard_hint)
        pipe.fence = fence
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]
    return client
