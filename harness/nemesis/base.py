"""What every fault shares: the `Fault` protocol, its errors, the `FaultContext`, finding targets.

A fault aimed at "a worker running a job right now" finds one from Redis: RQ's started
registry ``rq:wip:<queue>`` (members ``job_id:execution_id``) and the job hash's
``worker_name`` work for any RQ service, stock RQ included; with the bundled fix the tracked
job hash ``<KEY_PREFIX>track:<id>`` (state ``running``, ``worker``) is consulted as well, so a
job already presumed dead and recovered is not mistaken for a running one. The prefix is the
one the service's workers are given (a target's ``KEY_PREFIX``), not the harness's own.
"""

from __future__ import annotations

import functools
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar, runtime_checkable

from harness.defaults import TARGET_POLL_S
from harness.text import text
from harness.wait import eventually
from harness.workload.history import NOTE, History
from rq_recovery.config import default

if TYPE_CHECKING:
    from harness.backends.base import Backend, WorkerControl

__all__ = [
    "Fault",
    "FaultContext",
    "FaultError",
    "HeldWorker",
    "NoTarget",
    "Outage",
    "Running",
    "fault_label",
    "running_jobs",
    "strike",
]

_T = TypeVar("_T")


class FaultError(RuntimeError):
    """A fault could not be injected as asked (misconfigured scenario, missing capability)."""


class NoTarget(FaultError):
    """No worker was running a suitable job before the deadline."""


@runtime_checkable
class Fault(Protocol):
    name: ClassVar[str]

    def inject(self, ctx: FaultContext) -> dict[str, Any]: ...

    def heal(self, ctx: FaultContext) -> None: ...


def fault_label(fault: Any, backend: str | None = None) -> str:
    """How a fault is named in reports (`label_for(backend)` or `label` when it has one, else `name`)."""
    label_for = getattr(fault, "label_for", None)
    if callable(label_for):
        return str(label_for(backend))
    return str(getattr(fault, "label", None) or getattr(fault, "name", type(fault).__name__))


@dataclass(frozen=True)
class Running:
    """A job a worker is running now."""

    worker: str
    job_id: str


def running_jobs(
    redis: Any, queues: str | Sequence[str], *, fix: str = "bundled", key_prefix: str = default("KEY_PREFIX")
) -> list[Running]:
    """Jobs being executed right now on `queues`, from RQ's own data (and the fix's, when it runs,
    under `key_prefix`)."""
    out = []
    members = []
    for queue in [queues] if isinstance(queues, str) else queues:
        members += redis.zrange(f"rq:wip:{queue}", 0, -1)
    for member in members:
        job_id = (text(member) or "").split(":", 1)[0]
        if not job_id:
            continue
        status, worker = (text(v) for v in redis.hmget(f"rq:job:{job_id}", "status", "worker_name"))
        if status != "started":
            continue
        if fix != "none":
            state, tracked_worker = (text(v) for v in redis.hmget(f"{key_prefix}track:{job_id}", "state", "worker"))
            if state in ("completing", "recovering", "finished", "failed"):
                continue  # writing its outcome, or presumed dead and being recovered
            if state == "running":
                worker = tracked_worker or worker
            # "queued" in the fix's track but started in RQ: a worker without the fix runs it.
        if worker:
            out.append(Running(worker, job_id))
    return out


@dataclass
class FaultContext:
    """What a fault may touch: the stack, the history, a seeded RNG, the workload's job kinds."""

    stack: Backend
    history: History
    rng: random.Random
    fix: str = "bundled"
    deadline: float = float("inf")  # monotonic; waiting for a target stops here
    kind_of: Callable[[str], str | None] = lambda job_id: None
    stop: threading.Event = field(default_factory=threading.Event)
    held: set[str] = field(default_factory=set)  # workers a fault holds (paused, cut off, dying)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, text: str, **data: Any) -> None:
        self.history.record(NOTE, text=text, **data)

    @functools.cached_property
    def key_prefix(self) -> str:
        """The recovery layer's KEY_PREFIX as the service's workers have it."""
        return self.stack.service_env().get("KEY_PREFIX") or default("KEY_PREFIX")

    def running_now(self) -> list[Running]:
        """Every job the stack's workers run now (`running` also leaves out held workers' jobs)."""
        return running_jobs(self.stack.redis, self.stack.config.queues, fix=self.fix, key_prefix=self.key_prefix)

    @property
    def backend(self) -> str:
        return str(getattr(self.stack, "backend", "local"))

    def handle(self, name: str) -> WorkerControl | None:
        try:
            return self.stack.worker(name)
        except KeyError:
            return None

    def running(self, kinds: Sequence[str] | None = None) -> list[Running]:
        """Running jobs of `kinds` on workers this stack started, alive and not held by a fault."""
        found = []
        for r in self.running_now():
            handle = self.handle(r.worker)
            if handle is None or not handle.alive():
                continue
            with self.lock:
                if r.worker in self.held:
                    continue
            if kinds is not None and self.kind_of(r.job_id) not in kinds:
                continue
            found.append(r)
        return sorted(found, key=lambda r: (r.worker, r.job_id))

    def poll(self, check: Callable[[], _T], *, interval: float = TARGET_POLL_S) -> _T | None:
        """`check`'s first truthy value, or None once the run stops or its deadline passes.

        An exception from `check` means "not yet" (Redis restarting: look again)."""
        found: list[_T] = []

        def over_or_found() -> bool:
            if self.stop.is_set() or time.monotonic() >= self.deadline:
                return True
            value = check()
            if value:
                found.append(value)
            return bool(value)

        # The deadline is absolute and the stop event ends the wait too: the check says when.
        eventually(over_or_found, timeout=math.inf, interval=interval)
        return found[0] if found else None

    def wait_target(
        self,
        kinds: Sequence[str] | None,
        *,
        accept: Callable[[Running], bool] | None = None,
        interval: float = TARGET_POLL_S,
    ) -> Running:
        """Block until some worker runs a job of `kinds` (and `accept` agrees); pick one by rng."""
        candidates = self.poll(
            lambda: [r for r in self.running(kinds) if accept is None or accept(r)], interval=interval
        )
        if not candidates:
            raise NoTarget(f"no worker ran a job of kinds {list(kinds) if kinds else 'any'} before the deadline")
        return self.rng.choice(candidates)

    def hold(self, worker: str) -> None:
        with self.lock:
            self.held.add(worker)

    def release(self, worker: str) -> None:
        with self.lock:
            self.held.discard(worker)

    def restart_worker(self) -> str:
        """A fresh worker in place of a dead one (a platform restarting the instance)."""
        return self.stack.add_worker(wait=False).name


def strike(
    ctx: FaultContext,
    kinds: Sequence[str] | None,
    act: Callable[[WorkerControl], dict[str, Any]],
    *,
    release_on_error: bool = False,
    restart: bool = False,
) -> dict[str, Any]:
    """Wait for a busy worker, hold it (no other fault picks it) and `act` on it.

    Returns what `act` did, with the target worker and its job. `release_on_error`: a failed
    `act` left the worker as it was, so other faults may pick it again. `restart`: a fresh
    worker takes the place of the one `act` ended (its name under "restarted")."""
    target = ctx.wait_target(kinds)
    handle = ctx.stack.worker(target.worker)
    ctx.hold(target.worker)
    try:
        data = act(handle)
    except Exception:
        if release_on_error:
            ctx.release(target.worker)
        raise
    out = {"target": target.worker, "job_id": target.job_id, **data}
    if restart:
        out["restarted"] = ctx.restart_worker()
    return out


@dataclass
class HeldWorker:
    """Base of the faults that hold one busy worker until heal undoes what they did."""

    _target: str | None = field(default=None, init=False, repr=False, compare=False)

    def _seize(
        self,
        ctx: FaultContext,
        kinds: Sequence[str] | None,
        act: Callable[[WorkerControl], dict[str, Any]],
        *,
        release_on_error: bool = False,
    ) -> dict[str, Any]:
        data = strike(ctx, kinds, act, release_on_error=release_on_error)
        self._target = data["target"]
        return data

    def _let_go(self, ctx: FaultContext, undo: Callable[[WorkerControl], object]) -> None:
        if self._target is None:
            return
        undo(ctx.stack.worker(self._target))
        ctx.release(self._target)
        self._target = None


def _running_ids(ctx: FaultContext) -> list[str]:
    try:
        return [r.job_id for r in ctx.running()]
    except Exception:  # noqa: BLE001
        return []


@dataclass
class Outage:
    """Base of the faults that take a whole service down while a job runs; heal starts it again."""

    _down: bool = field(default=False, init=False, repr=False, compare=False)

    def _take_down(
        self, ctx: FaultContext, service: str, kill: Callable[[], dict[str, Any]], *, all_running: bool = False
    ) -> dict[str, Any]:
        """`kill` the service once some job runs; `running_jobs`: that job, or (`all_running`)
        every job running just before the kill."""
        target = ctx.wait_target(None)
        running = (_running_ids(ctx) if all_running else []) or [target.job_id]
        data = kill()
        self._down = True
        return {"target": service, **data, "running_jobs": running}

    def _bring_back(self, start: Callable[[], object]) -> None:
        if self._down:
            start()
            self._down = False
