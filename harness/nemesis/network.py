"""Network faults: one busy worker cut off Redis while everything else keeps its connections.

Local: through the worker's own `TcpProxy` (harness.nemesis.proxy); docker: the container is
disconnected from the stack's network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.defaults import LONG_KINDS
from harness.nemesis.base import FaultContext, FaultError, HeldWorker

__all__ = ["RedisPartition"]


@dataclass
class RedisPartition(HeldWorker):
    """Cut a busy worker off Redis; heal restores the connection.

    Local: through the worker's TcpProxy; needs StackConfig(worker_redis_via_proxy=True), which
    `stack_options` asks for. Docker: `docker network disconnect` / `connect` of the container.
    """

    for_s: float | None = 3.0
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "redis-partition"
    stack_options: ClassVar[dict[str, Any]] = {"worker_redis_via_proxy": True}

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if ctx.backend == "local" and not getattr(ctx.stack.config, "worker_redis_via_proxy", False):
            raise FaultError("redis-partition needs StackConfig(worker_redis_via_proxy=True)")
        return self._seize(ctx, self.kinds, lambda handle: handle.partition(), release_on_error=True)

    def heal(self, ctx: FaultContext) -> None:
        self._let_go(ctx, lambda handle: handle.heal_partition())
