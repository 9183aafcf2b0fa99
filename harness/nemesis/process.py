"""Process faults: a worker or the API dies, freezes or is told to stop, as a platform does it.

On the local backend signals go to the real process tree (psutil); on the docker backend to
containers (`docker kill`, `pause`, `stop`, `exec kill -9` of the horse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.defaults import KILL_HORSE_TRIES, LONG_KINDS, TERM_GRACE_S
from harness.nemesis.base import FaultContext, FaultError, HeldWorker, Outage, Running, strike

__all__ = ["ApiCrash", "KillHorse", "KillWorker", "PauseWorker", "TermWorker"]


@dataclass
class KillWorker:
    """SIGKILL a busy worker's whole process tree, work-horse included (a container dies).

    Docker: `docker kill` of the worker's container (exit code 137)."""

    restart: bool = False  # start a fresh worker, to keep capacity
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "kill-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        return strike(ctx, self.kinds, lambda handle: handle.kill(), restart=self.restart)

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: a killed worker stays dead (restart=True already replaced it)."""


@dataclass
class KillHorse:
    """SIGKILL only the work-horse running a job (what the kernel OOM killer usually picks).

    Docker: `docker exec` a `kill -9` of the worker parent's children inside the container."""

    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "kill-horse"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        def has_horse(r: Running) -> bool:
            handle = ctx.handle(r.worker)
            return handle is not None and bool(handle.horse_pids())

        # A horse can finish its job between being seen and being killed: pick again.
        for _ in range(KILL_HORSE_TRIES):
            target = ctx.wait_target(self.kinds, accept=has_horse)
            hit = ctx.stack.worker(target.worker).kill_horse()
            if hit:
                return {"target": target.worker, "job_id": target.job_id, "horse_pids": hit}
        raise FaultError(f"{KILL_HORSE_TRIES} horses in a row exited before they could be killed")

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the worker parent forks a new horse for its next job."""


@dataclass
class PauseWorker(HeldWorker):
    """SIGSTOP a busy worker's whole tree (a frozen VM); heal sends SIGCONT: a zombie resumes.

    Docker: `docker pause` / `docker unpause` (the cgroup freezer)."""

    for_s: float | None = None  # None: paused until the final phase
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "pause-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        return self._seize(ctx, self.kinds, lambda handle: handle.pause())

    def heal(self, ctx: FaultContext) -> None:
        self._let_go(ctx, lambda handle: handle.resume())


@dataclass
class TermWorker:
    """SIGTERM a busy worker's parent (a deploy restart): warm shutdown finishes or hands back.

    Docker: `docker stop -t grace_s` (SIGTERM, SIGKILL after the grace), not waited for."""

    restart: bool = False
    grace_s: float = TERM_GRACE_S
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "term-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        # The worker is held: it is leaving, no other fault should pick it.
        return strike(ctx, self.kinds, lambda handle: handle.terminate(self.grace_s), restart=self.restart)

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the worker shuts down on its own terms."""


@dataclass
class ApiCrash(Outage):
    """SIGKILL the API process; heal starts it again. Clients retry; workers carry on.

    Docker: `docker kill` + `docker start` of the API container (same mapped port)."""

    for_s: float | None = 2.0
    name: ClassVar[str] = "api-crash"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        return self._take_down(ctx, "api", lambda: ctx.stack.kill_api())  # crash while a job runs

    def heal(self, ctx: FaultContext) -> None:
        self._bring_back(lambda: ctx.stack.start_api())
