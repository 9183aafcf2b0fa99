"""Faults: one injected failure each, with `inject(ctx)` and `heal(ctx)` (the Jepsen nemesis).

A fault aimed at "a worker running a job right now" finds one from Redis: RQ's started
registry ``rq:wip:<queue>`` (members ``job_id:execution_id``) and the job hash's
``worker_name`` work for any RQ service, stock RQ included; with the bundled fix the tracked
job hash ``shap:track:<id>`` (state ``running``, ``worker``) is consulted as well, so a job
already presumed dead and recovered is not mistaken for a running one.

`inject` returns what it did (target worker, job id, pids...); the scenario runner records
it as a ``fault_injected`` event, and ``fault_healed`` after `heal`. A fault whose `for_s`
is set is healed that many seconds after injection; every fault is healed in the final phase.

Local backend only: signals go to the real process tree (psutil).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import psutil

from .history import FAULT_INJECTED, NOTE, History
from .workload import LONG_KINDS

if TYPE_CHECKING:
    from .stack import Stack, WorkerHandle

__all__ = [
    "ApiCrash",
    "Fault",
    "FaultContext",
    "FaultError",
    "HangJob",
    "KillHorse",
    "KillWorker",
    "NoTarget",
    "OOM",
    "OOM_LOCAL_MODE",
    "PauseWorker",
    "RedisPartition",
    "RedisRestart",
    "Running",
    "TermWorker",
    "fault_label",
    "running_jobs",
    "tree_memory_mb",
]

#: How OOM is realised on the local backend; the summary says so.
OOM_LOCAL_MODE = "rss-watchdog (no delegated cgroup v2)"


class FaultError(RuntimeError):
    """A fault could not be injected as asked (misconfigured scenario, missing capability)."""


class NoTarget(FaultError):
    """No worker was running a suitable job before the deadline."""


@runtime_checkable
class Fault(Protocol):
    name: str

    def inject(self, ctx: FaultContext) -> dict[str, Any]: ...

    def heal(self, ctx: FaultContext) -> None: ...


def fault_label(fault: Any) -> str:
    """How a fault is named in reports (`label` when it has one, else `name`)."""
    return str(getattr(fault, "label", None) or getattr(fault, "name", type(fault).__name__))


@dataclass(frozen=True)
class Running:
    """A job a worker is running now."""

    worker: str
    job_id: str


def _s(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def running_jobs(redis: Any, queue: str, *, fix: str = "bundled") -> list[Running]:
    """Jobs being executed right now, from RQ's own data (and the fix's, when it runs)."""
    out = []
    for member in redis.zrange(f"rq:wip:{queue}", 0, -1):
        job_id = (_s(member) or "").split(":", 1)[0]
        if not job_id:
            continue
        status, worker = (_s(v) for v in redis.hmget(f"rq:job:{job_id}", "status", "worker_name"))
        if status != "started":
            continue
        if fix != "none":
            state, tracked_worker = (_s(v) for v in redis.hmget(f"shap:track:{job_id}", "state", "worker"))
            if state is not None:
                if state != "running":
                    continue  # completing, or presumed dead and being recovered
                worker = tracked_worker or worker
        if worker:
            out.append(Running(worker, job_id))
    return out


def tree_memory_mb(pid: int) -> float:
    """Memory of a process tree in MB, counted as a cgroup would charge it.

    Summing RSS would count twice every page the worker parent shares copy-on-write with its
    forked work-horse (~230 MB of model and libraries here); PSS splits shared pages among
    their users, so the sum is the tree's real footprint. RSS is the fallback where smaps is
    not readable.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            try:
                total += proc.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return total / 2**20


@dataclass
class FaultContext:
    """What a fault may touch: the stack, the history, a seeded RNG, the workload's job kinds."""

    stack: Stack
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

    def handle(self, name: str) -> WorkerHandle | None:
        try:
            return self.stack.worker(name)
        except KeyError:
            return None

    def running(self, kinds: Sequence[str] | None = None) -> list[Running]:
        """Running jobs of `kinds` on workers this stack started, alive and not held by a fault."""
        found = []
        for r in running_jobs(self.stack.redis, self.stack.config.queue, fix=self.fix):
            handle = self.handle(r.worker)
            if handle is None or not handle.process.alive():
                continue
            with self.lock:
                if r.worker in self.held:
                    continue
            if kinds is not None and self.kind_of(r.job_id) not in kinds:
                continue
            found.append(r)
        return sorted(found, key=lambda r: (r.worker, r.job_id))

    def wait_target(
        self,
        kinds: Sequence[str] | None,
        *,
        accept: Callable[[Running], bool] | None = None,
        interval: float = 0.05,
    ) -> Running:
        """Block until some worker runs a job of `kinds` (and `accept` agrees); pick one by rng."""
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                candidates = [r for r in self.running(kinds) if accept is None or accept(r)]
            except Exception:  # noqa: BLE001 - Redis restarting: look again
                candidates = []
            if candidates:
                return self.rng.choice(candidates)
            self.stop.wait(interval)
        raise NoTarget(f"no worker ran a job of kinds {list(kinds) if kinds else 'any'} before the deadline")

    def hold(self, worker: str) -> None:
        with self.lock:
            self.held.add(worker)

    def release(self, worker: str) -> None:
        with self.lock:
            self.held.discard(worker)


def _wait_exit(handle: WorkerHandle, timeout: float = 5.0) -> None:
    proc = handle.process.proc
    if proc is not None:
        try:
            proc.wait(timeout=timeout)
        except Exception:  # noqa: BLE001 - stop() at teardown will finish it
            pass


def _restart_worker(ctx: FaultContext) -> str:
    """A fresh worker in place of a dead one (a platform restarting the instance)."""
    return ctx.stack.add_worker(wait=False).name


# -- worker faults ----------------------------------------------------------------------------


@dataclass
class KillWorker:
    """SIGKILL a busy worker's whole process tree, work-horse included (a container dies)."""

    restart: bool = False  # start a fresh worker, to keep capacity
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "kill-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)
        pids = handle.process.signal_tree(signal.SIGKILL)
        _wait_exit(handle)
        data: dict[str, Any] = {"target": target.worker, "job_id": target.job_id, "pids": pids}
        if self.restart:
            data["restarted"] = _restart_worker(ctx)
        return data

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: a killed worker stays dead (restart=True already replaced it)."""


@dataclass
class KillHorse:
    """SIGKILL only the work-horse running a job (what the kernel OOM killer usually picks)."""

    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "kill-horse"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        def has_horse(r: Running) -> bool:
            handle = ctx.handle(r.worker)
            return handle is not None and bool(handle.horse_pids())

        target = ctx.wait_target(self.kinds, accept=has_horse)
        handle = ctx.stack.worker(target.worker)
        horses = handle.horse_pids()
        hit = []
        for pid in horses:
            try:
                psutil.Process(pid).send_signal(signal.SIGKILL)
                hit.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not hit:
            raise FaultError(f"the horse of {target.worker} exited before it could be killed")
        return {"target": target.worker, "job_id": target.job_id, "horse_pids": hit}

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the worker parent forks a new horse for its next job."""


@dataclass
class PauseWorker:
    """SIGSTOP a busy worker's whole tree (a frozen VM); heal sends SIGCONT: a zombie resumes."""

    for_s: float | None = None  # None: paused until the final phase
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "pause-worker"
    _target: str | None = field(default=None, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)
        pids = handle.process.signal_tree(signal.SIGSTOP)
        self._target = target.worker
        return {"target": target.worker, "job_id": target.job_id, "pids": pids}

    def heal(self, ctx: FaultContext) -> None:
        if self._target is None:
            return
        ctx.stack.worker(self._target).process.signal_tree(signal.SIGCONT)
        ctx.release(self._target)
        self._target = None


@dataclass
class TermWorker:
    """SIGTERM a busy worker's parent (a deploy restart): warm shutdown finishes or hands back."""

    restart: bool = False
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "term-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)  # it is leaving: no other fault should pick it
        assert handle.process.proc is not None
        handle.process.proc.send_signal(signal.SIGTERM)
        data: dict[str, Any] = {"target": target.worker, "job_id": target.job_id, "pid": handle.pid}
        if self.restart:
            data["restarted"] = _restart_worker(ctx)
        return data

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the worker shuts down on its own terms."""


@dataclass
class RedisPartition:
    """Cut a busy worker off Redis through its TcpProxy; heal restores the connection.

    Needs StackConfig(worker_redis_via_proxy=True), which `stack_options` asks for.
    """

    for_s: float | None = 3.0
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "redis-partition"
    stack_options: ClassVar[dict[str, Any]] = {"worker_redis_via_proxy": True}
    _target: str | None = field(default=None, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if not getattr(ctx.stack.config, "worker_redis_via_proxy", False):
            raise FaultError("redis-partition needs StackConfig(worker_redis_via_proxy=True)")
        target = ctx.wait_target(self.kinds)
        proxy = ctx.stack.worker(target.worker).proxy
        if proxy is None:
            raise FaultError(f"worker {target.worker} has no proxy in front of Redis")
        ctx.hold(target.worker)
        cut = proxy.cut()
        self._target = target.worker
        return {"target": target.worker, "job_id": target.job_id, "connections_cut": cut}

    def heal(self, ctx: FaultContext) -> None:
        if self._target is None:
            return
        proxy = ctx.stack.worker(self._target).proxy
        if proxy is not None:
            proxy.restore()
        ctx.release(self._target)
        self._target = None


# -- whole-stack faults -----------------------------------------------------------------------


def _running_ids(ctx: FaultContext) -> list[str]:
    try:
        return [r.job_id for r in ctx.running()]
    except Exception:  # noqa: BLE001
        return []


@dataclass
class RedisRestart:
    """SIGKILL Redis once some job runs; heal starts it again on the same port `for_s` later.

    The two halves of `Stack.restart_redis`, so that the event times are the kill and the
    restart. Data survives only through the AOF: needs StackConfig(redis_aof=True), which
    `stack_options` asks for.
    """

    for_s: float | None = 1.0  # how long Redis stays down
    name: ClassVar[str] = "redis-restart"
    stack_options: ClassVar[dict[str, Any]] = {"redis_aof": True}
    _down: bool = field(default=False, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if not ctx.stack.config.redis_aof:
            raise FaultError("redis-restart needs StackConfig(redis_aof=True), or every job is lost")
        target = ctx.wait_target(None)
        running = _running_ids(ctx) or [target.job_id]
        redis = ctx.stack.redis_proc
        if redis is None:
            raise FaultError("the stack has no Redis process")
        pids = redis.signal_tree(signal.SIGKILL)
        if redis.proc is not None:
            redis.proc.wait(timeout=5)
        self._down = True
        return {"target": "redis", "pids": pids, "running_jobs": running}

    def heal(self, ctx: FaultContext) -> None:
        if self._down:
            ctx.stack.start_redis()
            self._down = False


@dataclass
class ApiCrash:
    """SIGKILL the API process; heal starts it again. Clients retry; workers carry on."""

    for_s: float | None = 2.0
    name: ClassVar[str] = "api-crash"
    _down: bool = field(default=False, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(None)  # crash while a job runs
        api = ctx.stack.api_proc
        if api is None:
            raise FaultError("the stack has no API process")
        pids = api.signal_tree(signal.SIGKILL)
        if api.proc is not None:
            api.proc.wait(timeout=5)
        self._down = True
        return {"target": "api", "pids": pids, "running_jobs": [target.job_id]}

    def heal(self, ctx: FaultContext) -> None:
        if self._down:
            ctx.stack.start_api()
            self._down = False


# -- workload-driven faults -------------------------------------------------------------------


@dataclass
class HangJob:
    """The job hangs by itself (workload kind "hang"); this marks when one is seen running.

    Only a job timeout or a job-level heartbeat can end it; nothing is done to any process.
    """

    kinds: tuple[str, ...] | None = ("hang",)
    for_s: float | None = None
    name: ClassVar[str] = "hang-job"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        return {"target": target.worker, "job_id": target.job_id, "how": "job code blocks (chaos hang)"}

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the service's timeout policy must end the job."""


@dataclass
class OOM:
    """A job allocates past a memory limit (workload kind "hungry") and is killed for it.

    Locally there is no delegated cgroup v2 memory controller to enforce `memory.max`, so an
    RSS watchdog (PSS-summed, see `tree_memory_mb`) SIGKILLs a worker's whole tree once it
    exceeds `limit_mb`, as a platform kills an instance that ran out of memory; `kill="horse"`
    kills only the work-horse instead (the kernel's usual pick inside a container). Each kill
    is a `fault_injected` event; `inject` returns the first. Heal disarms the watchdog.
    """

    limit_mb: int = 380
    kill: str = "tree"  # "tree" | "horse"
    restart: bool = True  # after a tree kill, start a fresh worker (the platform restarts it)
    interval_s: float = 0.1
    for_s: float | None = None
    name: ClassVar[str] = "oom"
    label: ClassVar[str] = f"oom: {OOM_LOCAL_MODE}"
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    _first: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _fired: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    kills: int = field(default=0, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.kill not in ("tree", "horse"):
            raise ValueError("kill must be 'tree' or 'horse'")

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self._thread = threading.Thread(target=self._watch, args=(ctx,), name="oom-watchdog", daemon=True)
        self._thread.start()
        while not self._fired.is_set():
            if ctx.stop.is_set() or time.monotonic() >= ctx.deadline:
                raise NoTarget(f"no worker tree grew past {self.limit_mb} MB before the deadline")
            self._fired.wait(0.05)
        assert self._first is not None
        return self._first

    def heal(self, ctx: FaultContext) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _job_of(self, ctx: FaultContext, worker: str) -> str | None:
        try:
            for r in running_jobs(ctx.stack.redis, ctx.stack.config.queue, fix=ctx.fix):
                if r.worker == worker:
                    return r.job_id
        except Exception:  # noqa: BLE001
            pass
        return None

    def _watch(self, ctx: FaultContext) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._scan(ctx)
            except Exception as exc:  # noqa: BLE001 - a watchdog bug must show, not end the fault
                ctx.note(f"oom watchdog error: {type(exc).__name__}: {exc}", fault=self.name)

    def _scan(self, ctx: FaultContext) -> None:
        for handle in list(ctx.stack.workers):
            if not handle.process.alive():
                continue
            with ctx.lock:
                if handle.name in ctx.held:
                    continue
            mb = tree_memory_mb(handle.pid)
            if mb <= self.limit_mb:
                continue
            job_id = self._job_of(ctx, handle.name)
            if self.kill == "tree":
                ctx.hold(handle.name)
                pids = handle.process.signal_tree(signal.SIGKILL)
                _wait_exit(handle)
            else:
                pids = []
                for pid in handle.horse_pids():
                    try:
                        psutil.Process(pid).kill()
                        pids.append(pid)
                    except psutil.NoSuchProcess:
                        pass
            data: dict[str, Any] = {
                "target": handle.name,
                "memory_mb": round(mb, 1),
                "limit_mb": self.limit_mb,
                "killed": self.kill,
                "pids": pids,
                "mode": OOM_LOCAL_MODE,
            }
            if self.kill == "tree" and self.restart:
                data["restarted"] = _restart_worker(ctx)
            self.kills += 1
            if self._first is None:
                self._first = {"job_id": job_id, **data}
                self._fired.set()  # the runner records this one as the fault's injection
            else:
                ctx.history.record(FAULT_INJECTED, job_id, fault=self.name, label=self.label, **data)
