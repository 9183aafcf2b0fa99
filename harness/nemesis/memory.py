"""Memory faults: a job allocates past a limit and is killed for it, as a platform kills it.

Local: an RSS watchdog (there is no delegated cgroup v2 memory controller to enforce
`memory.max`); docker: the kernel's OOM killer inside the container's memory cgroup, watched.
The mode is named in the fault's label, so the report says which one a run used.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psutil

from harness.defaults import (
    OOM_DIE_WAIT_S,
    OOM_LATE_KILL_S,
    OOM_LIMIT_MB,
    OOM_SETTLE_S,
    OOM_TREE_LIMIT_MB,
    OOM_WATCH_INTERVAL_S,
)
from harness.nemesis.base import FaultContext, NoTarget
from harness.wait import eventually
from harness.workload.history import FAULT_INJECTED

__all__ = ["OOM", "OOM_DOCKER_MODE", "OOM_LOCAL_MODE", "tree_memory_mb"]

#: How OOM is realised on the local backend; the summary says so.
OOM_LOCAL_MODE = "rss-watchdog (no delegated cgroup v2)"
#: How OOM is realised on the docker backend: the kernel kills inside the container's memory cgroup.
OOM_DOCKER_MODE = "container mem_limit (kernel OOM killer)"


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
    dies and the whole container with it, exit 137, OOMKilled true). See harness.defaults.OOM_TREE_LIMIT_MB.

    Each kill is a `fault_injected` event; `inject` returns the first. Heal disarms the watch.
    """

    limit_mb: int = OOM_LIMIT_MB
    kill: str = "tree"  # "tree" | "horse"
    restart: bool = True  # after a tree kill, start a fresh worker (the platform restarts it)
    interval_s: float = OOM_WATCH_INTERVAL_S
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
        # The first kill, seen by the watch thread; the run's stop or deadline ends the wait.
        ctx.poll(self._fired.is_set, interval=0.01)
        if not self._fired.is_set():
            # a kill seen just before the run ended is still being recorded
            if not (self._busy.is_set() and self._fired.wait(OOM_LATE_KILL_S)):
                if ctx.backend == "docker":
                    raise NoTarget(f"no worker container ({self.container_limit_mb} MB) ran out of memory in time")
                raise NoTarget(f"no worker tree grew past {self.limit_mb} MB before the deadline")
        assert self._first is not None
        return self._first

    def heal(self, ctx: FaultContext) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _job_of(self, ctx: FaultContext, worker: str) -> str | None:
        try:
            for r in ctx.running_now():
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
                data["restarted"] = ctx.restart_worker()
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
                for r in ctx.running_now():
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

    #: After a container's last `oom` event, how long to wait for its `die` event (see defaults).
    DIE_WAIT_S: ClassVar[float] = OOM_DIE_WAIT_S

    def _docker_kill(self, ctx: FaultContext, worker: str, first: dict[str, Any], job_id: str | None) -> float:
        """Wait for the kill to settle (the container died, or only its horse did), record it."""
        stack: Any = ctx.stack
        t_oom = first["t"]
        seen: dict[str, Any] = {"burst": [first], "died": None}

        def kill_settled() -> bool:
            events = [e for e in stack.container_events(since=0)[0] if e.get("worker") == worker and e["t"] >= t_oom]
            seen["burst"] = [e for e in events if e["action"] == "oom"] or [first]
            seen["died"] = next((e for e in events if e["action"] == "die"), None)
            return seen["died"] is not None or time.monotonic() >= seen["burst"][-1]["t"] + self.DIE_WAIT_S

        eventually(kill_settled, timeout=max(0.0, t_oom + OOM_SETTLE_S - time.monotonic()), interval=0.02)
        burst: list[dict[str, Any]] = seen["burst"]
        died: dict[str, Any] | None = seen["died"]
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
                data["restarted"] = ctx.restart_worker()  # docker: starts in the background
        data["seen_after_s"] = round(time.monotonic() - t_oom, 3)  # kernel kill -> this record
        self._record(ctx, job_id, data)
        return settled
