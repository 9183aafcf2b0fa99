"""Faults: one injected failure each, with `inject(ctx)` and `heal(ctx)` (the Jepsen nemesis).

A fault aimed at "a worker running a job right now" finds one from Redis: RQ's started
registry ``rq:wip:<queue>`` (members ``job_id:execution_id``) and the job hash's
``worker_name`` work for any RQ service, stock RQ included; with the bundled fix the tracked
job hash ``shap:track:<id>`` (state ``running``, ``worker``) is consulted as well, so a job
already presumed dead and recovered is not mistaken for a running one.

`inject` returns what it did (target worker, job id, pids...); the scenario runner records
it as a ``fault_injected`` event, and ``fault_healed`` after `heal`. A fault whose `for_s`
is set is healed that many seconds after injection; every fault is healed in the final phase.

Faults act through the backend interface (`harness.backends.base`): on the local backend signals
go to the real process tree (psutil), on the docker backend to containers (`docker kill`,
`pause`, `network disconnect`, `exec kill -9` of the horse, the kernel's OOM killer).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import psutil

from harness.workload.history import FAULT_INJECTED, NOTE, History
from harness.workload.plan import LONG_KINDS

if TYPE_CHECKING:
    from harness.backends.base import Backend, WorkerControl

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
    "OOM_DOCKER_MODE",
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
#: How OOM is realised on the docker backend: the kernel kills inside the container's memory cgroup.
OOM_DOCKER_MODE = "container mem_limit (kernel OOM killer)"
#: Docker, kill="tree": a worker container limit this tight makes the worker parent the kernel's
#: victim. Measured here: an idle worker container charges ~150 MB (peak ~180 MB while it trains
#: its models at start); its parent maps ~95 MB of shared libraries (RssFile) that a freshly forked
#: horse does not map. The OOM killer picks the largest RSS: with less headroom than those ~95 MB
#: the horse is still smaller than its parent when the cgroup runs out, so the parent (the
#: container's PID 1) dies and the container with it. 200-220 MB: parent every time; 240 MB:
#: either; 260 MB and up: the horse.
OOM_TREE_LIMIT_MB = 210


class FaultError(RuntimeError):
    """A fault could not be injected as asked (misconfigured scenario, missing capability)."""


class NoTarget(FaultError):
    """No worker was running a suitable job before the deadline."""


@runtime_checkable
class Fault(Protocol):
    name: str

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
            if state in ("completing", "recovering", "finished", "failed"):
                continue  # writing its outcome, or presumed dead and being recovered
            if state == "running":
                worker = tracked_worker or worker
            # "queued" in the fix's track but started in RQ: a worker without the fix runs it.
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
        for r in running_jobs(self.stack.redis, self.stack.config.queue, fix=self.fix):
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


def _restart_worker(ctx: FaultContext) -> str:
    """A fresh worker in place of a dead one (a platform restarting the instance)."""
    return ctx.stack.add_worker(wait=False).name


# -- worker faults ----------------------------------------------------------------------------


@dataclass
class KillWorker:
    """SIGKILL a busy worker's whole process tree, work-horse included (a container dies).

    Docker: `docker kill` of the worker's container (exit code 137)."""

    restart: bool = False  # start a fresh worker, to keep capacity
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "kill-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)
        data: dict[str, Any] = {"target": target.worker, "job_id": target.job_id, **handle.kill()}
        if self.restart:
            data["restarted"] = _restart_worker(ctx)
        return data

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: a killed worker stays dead (restart=True already replaced it)."""


KILL_HORSE_TRIES = 5


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
class PauseWorker:
    """SIGSTOP a busy worker's whole tree (a frozen VM); heal sends SIGCONT: a zombie resumes.

    Docker: `docker pause` / `docker unpause` (the cgroup freezer)."""

    for_s: float | None = None  # None: paused until the final phase
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "pause-worker"
    _target: str | None = field(default=None, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)
        data = handle.pause()
        self._target = target.worker
        return {"target": target.worker, "job_id": target.job_id, **data}

    def heal(self, ctx: FaultContext) -> None:
        if self._target is None:
            return
        ctx.stack.worker(self._target).resume()
        ctx.release(self._target)
        self._target = None


@dataclass
class TermWorker:
    """SIGTERM a busy worker's parent (a deploy restart): warm shutdown finishes or hands back.

    Docker: `docker stop -t grace_s` (SIGTERM, SIGKILL after the grace), not waited for."""

    restart: bool = False
    grace_s: float = 30.0
    kinds: tuple[str, ...] | None = LONG_KINDS
    for_s: float | None = None
    name: ClassVar[str] = "term-worker"

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)  # it is leaving: no other fault should pick it
        data: dict[str, Any] = {"target": target.worker, "job_id": target.job_id, **handle.terminate(self.grace_s)}
        if self.restart:
            data["restarted"] = _restart_worker(ctx)
        return data

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: the worker shuts down on its own terms."""


@dataclass
class RedisPartition:
    """Cut a busy worker off Redis; heal restores the connection.

    Local: through the worker's TcpProxy; needs StackConfig(worker_redis_via_proxy=True), which
    `stack_options` asks for. Docker: `docker network disconnect` / `connect` of the container.
    """

    for_s: float | None = 3.0
    kinds: tuple[str, ...] | None = LONG_KINDS
    name: ClassVar[str] = "redis-partition"
    stack_options: ClassVar[dict[str, Any]] = {"worker_redis_via_proxy": True}
    _target: str | None = field(default=None, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        if ctx.backend == "local" and not getattr(ctx.stack.config, "worker_redis_via_proxy", False):
            raise FaultError("redis-partition needs StackConfig(worker_redis_via_proxy=True)")
        target = ctx.wait_target(self.kinds)
        handle = ctx.stack.worker(target.worker)
        ctx.hold(target.worker)
        try:
            data = handle.partition()
        except Exception:
            ctx.release(target.worker)
            raise
        self._target = target.worker
        return {"target": target.worker, "job_id": target.job_id, **data}

    def heal(self, ctx: FaultContext) -> None:
        if self._target is None:
            return
        ctx.stack.worker(self._target).heal_partition()
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
    `stack_options` asks for. Docker: `docker kill` + `docker start` of the Redis container
    (a `docker restart` with the down time in between); the AOF is on a named volume.
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
        data = ctx.stack.kill_redis()
        self._down = True
        return {"target": "redis", **data, "running_jobs": running}

    def heal(self, ctx: FaultContext) -> None:
        if self._down:
            ctx.stack.start_redis()
            self._down = False


@dataclass
class ApiCrash:
    """SIGKILL the API process; heal starts it again. Clients retry; workers carry on.

    Docker: `docker kill` + `docker start` of the API container (same mapped port)."""

    for_s: float | None = 2.0
    name: ClassVar[str] = "api-crash"
    _down: bool = field(default=False, init=False, repr=False, compare=False)

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        target = ctx.wait_target(None)  # crash while a job runs
        data = ctx.stack.kill_api()
        self._down = True
        return {"target": "api", **data, "running_jobs": [target.job_id]}

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

    Local: there is no delegated cgroup v2 memory controller to enforce `memory.max`, so an
    RSS watchdog (PSS-summed, see `tree_memory_mb`) SIGKILLs a worker's whole tree once it
    exceeds `limit_mb`, as a platform kills an instance that ran out of memory; `kill="horse"`
    kills only the work-horse instead (the kernel's usual pick inside a container).

    Docker: the kernel does it. Every worker container gets `mem_limit` (`stack_options`) and
    the harness only watches: each `oom` event of a worker container becomes a kill, recorded
    with the container's `State.OOMKilled`, exit code and status. Which process the kernel
    kills is decided by the limit: `kill="horse"` uses `limit_mb` (roomy: the allocating horse
    is the largest process and dies, the container survives, RQ's parent sees `waitpid
    returned 9`); `kill="tree"` uses `tree_limit_mb` (tight: the parent is the victim, PID 1
    dies and the whole container with it, exit 137, OOMKilled true). See OOM_TREE_LIMIT_MB.

    Each kill is a `fault_injected` event; `inject` returns the first. Heal disarms the watch.
    """

    limit_mb: int = 380
    kill: str = "tree"  # "tree" | "horse"
    restart: bool = True  # after a tree kill, start a fresh worker (the platform restarts it)
    interval_s: float = 0.1
    for_s: float | None = None
    tree_limit_mb: int = OOM_TREE_LIMIT_MB  # docker, kill="tree": the containers' mem_limit
    name: ClassVar[str] = "oom"
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    _first: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _fired: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False, compare=False)
    _busy: threading.Event = field(default_factory=threading.Event, init=False, repr=False, compare=False)
    kills: int = field(default=0, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.kill not in ("tree", "horse"):
            raise ValueError("kill must be 'tree' or 'horse'")

    @property
    def label(self) -> str:
        return self.label_for("local")

    def label_for(self, backend: str | None) -> str:
        return f"oom: {OOM_DOCKER_MODE if backend == 'docker' else OOM_LOCAL_MODE}"

    @property
    def container_limit_mb(self) -> int:
        """The worker containers' mem_limit on the docker backend."""
        return self.tree_limit_mb if self.kill == "tree" else self.limit_mb

    @property
    def stack_options(self) -> dict[str, Any]:
        """Docker: the workers' memory limit; the local backend does not enforce it."""
        return {"worker_mem_limit_mb": self.container_limit_mb}

    def inject(self, ctx: FaultContext) -> dict[str, Any]:
        watch = self._watch_docker if ctx.backend == "docker" else self._watch
        self._thread = threading.Thread(target=watch, args=(ctx,), name="oom-watchdog", daemon=True)
        self._thread.start()
        while not self._fired.is_set():
            if ctx.stop.is_set() or time.monotonic() >= ctx.deadline:
                if self._busy.is_set() and self._fired.wait(3.0):
                    break  # a kill seen just before the run ended is still being recorded
                if ctx.backend == "docker":
                    raise NoTarget(f"no worker container ({self.container_limit_mb} MB) ran out of memory in time")
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

    def _record(self, ctx: FaultContext, job_id: str | None, data: dict[str, Any]) -> None:
        self.kills += 1
        if self._first is None:
            self._first = {"job_id": job_id, **data}
            self._fired.set()  # the runner records this one as the fault's injection
        else:
            ctx.history.record(FAULT_INJECTED, job_id, fault=self.name, label=self.label_for(ctx.backend), **data)

    # -- local: the RSS watchdog ----------------------------------------------------------------

    def _watch(self, ctx: FaultContext) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._scan(ctx)
            except Exception as exc:  # noqa: BLE001 - a watchdog bug must show, not end the fault
                ctx.note(f"oom watchdog error: {type(exc).__name__}: {exc}", fault=self.name)

    def _scan(self, ctx: FaultContext) -> None:
        for handle in list(ctx.stack.workers):
            if not handle.alive():
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
                pids = handle.kill()["pids"]
            else:
                pids = handle.kill_horse()
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
            self._record(ctx, job_id, data)

    # -- docker: the kernel kills, the harness watches ----------------------------------------

    def _watch_docker(self, ctx: FaultContext) -> None:
        """Each burst of `oom` events of one worker container is one kill by the kernel."""
        stack: Any = ctx.stack
        seen = stack.container_events_count()
        last_job: dict[str, str] = {}  # worker -> the job it ran when last looked at
        consumed_until: dict[str, float] = {}  # worker -> oom events up to here are handled
        stopping = False
        while not stopping:  # after heal one last pass: a kill just before the run ended counts too
            stopping = self._stop.wait(self.interval_s)
            try:
                for r in running_jobs(stack.redis, stack.config.queue, fix=ctx.fix):
                    last_job[r.worker] = r.job_id
            except Exception:  # noqa: BLE001 - Redis busy: the last view will do
                pass
            try:
                events, seen = stack.container_events(since=seen)
                for event in events:
                    worker = event.get("worker")
                    if event["action"] != "oom" or worker is None:
                        continue
                    if event["t"] <= consumed_until.get(worker, -1.0):
                        continue
                    self._busy.set()
                    try:
                        job_id = self._job_of(ctx, worker) or last_job.get(worker)
                        consumed_until[worker] = self._docker_kill(ctx, worker, event, job_id)
                    finally:
                        self._busy.clear()
            except Exception as exc:  # noqa: BLE001
                ctx.note(f"oom watch error: {type(exc).__name__}: {exc}", fault=self.name)

    #: After a container's last `oom` event, how long to wait for its `die` event before deciding
    #: that only the horse died. Measured here: `die` follows the last `oom` within 20-60 ms.
    DIE_WAIT_S: ClassVar[float] = 0.3

    def _docker_kill(self, ctx: FaultContext, worker: str, first: dict[str, Any], job_id: str | None) -> float:
        """Wait for the kill to settle (the container died, or only its horse did), record it."""
        stack: Any = ctx.stack
        t_oom = first["t"]
        give_up = t_oom + 2.0
        burst: list[dict[str, Any]] = [first]
        died: dict[str, Any] | None = None
        while died is None:
            events = [e for e in stack.container_events(since=0)[0] if e.get("worker") == worker and e["t"] >= t_oom]
            burst = [e for e in events if e["action"] == "oom"] or [first]
            died = next((e for e in events if e["action"] == "die"), None)
            now = time.monotonic()
            if died is not None or now >= give_up or now >= burst[-1]["t"] + self.DIE_WAIT_S:
                break
            time.sleep(0.02)
        settled = died["t"] if died is not None else burst[-1]["t"]
        state = stack.worker(worker).state()
        dead = died is not None or state.get("status") in ("exited", "dead")
        data: dict[str, Any] = {
            "target": worker,
            "killed": "container" if dead else "horse",
            "oom_killed": state.get("oom_killed"),
            "exit_code": state.get("exit_code") if dead else None,
            "container_status": state.get("status"),
            "container": state.get("id"),
            "oom_events": len(burst),
            "mem_limit_mb": self.container_limit_mb,
            "mode": OOM_DOCKER_MODE,
        }
        if dead:
            ctx.hold(worker)
            if self.restart:
                data["restarted"] = _restart_worker(ctx)  # docker: starts in the background
        data["seen_after_s"] = round(time.monotonic() - t_oom, 3)  # kernel kill -> this record
        self._record(ctx, job_id, data)
        return settled
