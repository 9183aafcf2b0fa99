"""Redis faults: the Redis under test dies and comes back, its data kept only by the AOF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.nemesis.base import FaultContext, FaultError, Outage

__all__ = ["RedisRestart", "RedisRestartEmpty"]


@dataclass
class RedisRestart(Outage):
    """SIGKILL Redis once some job runs; heal starts it again on the same port `for_s` later.

    The two halves of `Stack.restart_redis`, so that the event times are the kill and the
    restart. Data survives only through the AOF: needs StackConfig(redis_aof=True), which
    `stack_options` asks for. Docker: `docker kill` + `docker start` of the Redis container
    (a `docker restart` with the down time in between); the AOF is on a named volume.
    """

    for_s: float | None = 1.0  # how long Redis stays down
    name: ClassVar[str] = "redis-restart"
    stack_options: ClassVar[dict[str, Any]] = {"redis_aof": True}
    loses_data: ClassVar[bool] = False

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if not ctx.stack.config.redis_aof:
            raise FaultError("redis-restart needs StackConfig(redis_aof=True), or every job is lost")
        return self._take_down(ctx, "redis", lambda: ctx.stack.kill_redis(), all_running=True)

    def heal(self, ctx: FaultContext) -> None:
        self._bring_back(lambda: ctx.stack.start_redis())


@dataclass
class RedisRestartEmpty(RedisRestart):
    """The same restart without persistence (StackConfig(redis_aof=False)): Redis comes back
    empty, as after a failover to an empty replica. Every job it held is lost; what is expected
    is that the loss is noticed and reported (`DataLossReported`), and that jobs accepted after
    it run as usual."""

    name: ClassVar[str] = "redis-restart-empty"
    stack_options: ClassVar[dict[str, Any]] = {"redis_aof": False}
    loses_data: ClassVar[bool] = True

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if ctx.stack.config.redis_aof:
            raise FaultError("redis-restart-empty needs StackConfig(redis_aof=False): with AOF nothing is lost")
        return self._take_down(ctx, "redis", lambda: ctx.stack.kill_redis(), all_running=True)
