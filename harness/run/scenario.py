"""A scenario is plain data (workload + fault schedule + expectations); `run_scenario` runs it.

    SCENARIO = Scenario(
        name="kill-worker",
        workload=Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1}),
        faults=[(WHEN_RUNNING, KillWorker(restart=True))],
    )
    result = run_scenario(SCENARIO, fix="bundled", seed=42, report_dir=Path("reports/out/x"))
    assert result.passed, result.explain()

The run follows Jepsen: start a real stack, run the workload while the nemesis injects the
scheduled faults, then the final phase heals every fault, lets the stack settle, reads every
job's final state, and only then judges the history with the checkers. The same seed gives
the same workload and the same fault schedule.

A profile sizes the run (`PROFILES`): `ci`, or `soak`, under which a scenario that declares a
`soak` workload (the nemesis) submits `Soak.jobs` jobs or stops submitting after
`Soak.minutes`, whichever comes first, while its nemesis keeps drawing faults from the seed
(`Scenario.plan` says what a run does; HARNESS_SOAK_JOBS / HARNESS_SOAK_MINUTES resize it).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, make_stack
from harness.backends.local.stack import Stack, StackConfig, new_run_id
from harness.checkers import (
    AllTerminal,
    Duplicates,
    FaultsInjected,
    NoLost,
    RecoveryTime,
    Verdict,
    WorkloadRan,
    compose,
    default_checkers,
    run_checker,
)
from harness.defaults import (
    DEFAULT_SLACK_S,
    FAST_LEASES,
    MAX_SOAK_MINUTES,
    SERVICE_LIVENESS_TTL,
    SERVICE_SWEEP_INTERVAL,
    SOAK_JOBS_ENV,
    SOAK_MINUTES_ENV,
)
from harness.nemesis.faults import Fault, FaultContext, NoTarget, fault_label
from harness.workload.history import FAULT_HEALED, FAULT_INJECTED, NOTE, History
from harness.workload.plan import Workload, WorkloadRun

__all__ = [
    "CI_ENV",
    "DEFAULT_SLACK_S",
    "PROFILES",
    "WHEN_RUNNING",
    "FaultsInjected",
    "WorkloadRan",
    "Profile",
    "RandomSchedule",
    "RunPlan",
    "SOAK_JOBS_ENV",
    "SOAK_MINUTES_ENV",
    "Scenario",
    "ScenarioResult",
    "Soak",
    "nemesis",
    "recovery_bound_s",
    "run_scenario",
]

#: `diagnose-worker --json` output captured at the deadline when jobs are stuck (in <report-dir>/<scenario>/).
DIAGNOSE_FILE = "diagnose.json"

#: Schedule entry time meaning "as soon as a job runs". Every fault waits for a running
#: target anyway; a number means "not before this many seconds into the run".
WHEN_RUNNING = "when a job runs"

CI_ENV = FAST_LEASES

ScheduleEntry = tuple[float | str, Fault]
ScheduleFn = Callable[[random.Random], Sequence[ScheduleEntry]]


@dataclass(frozen=True)
class Soak:
    """What a soak run is: submit `jobs` jobs, or stop submitting after `minutes` of wall time,
    whichever comes first, while the nemesis keeps injecting faults drawn from the seed; then
    `drain_s` for the jobs still in flight to end. Applies to scenarios that declare a `soak`
    workload (the nemesis); other scenarios scale their workload by the profile's `job_scale`.

    `HARNESS_SOAK_JOBS` / `HARNESS_SOAK_MINUTES` override the size (e.g. 300 jobs for a check).
    """

    jobs: int = 5000
    minutes: float = 30.0
    drain_s: float = 120.0

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError(f"a soak needs at least 1 job, got {self.jobs}")
        if not 0 < self.minutes <= MAX_SOAK_MINUTES:
            raise ValueError(f"soak minutes must be in (0, {MAX_SOAK_MINUTES:g}], got {self.minutes}")
        if self.drain_s < 0:
            raise ValueError(f"drain_s must be >= 0, got {self.drain_s}")

    @property
    def span_s(self) -> float:
        """Seconds after which no job is submitted (and no fault is drawn)."""
        return self.minutes * 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Soak:
        """The default soak, resized by HARNESS_SOAK_JOBS / HARNESS_SOAK_MINUTES when set."""
        environ = os.environ if environ is None else environ
        size: dict[str, Any] = {}
        try:
            if environ.get(SOAK_JOBS_ENV, "").strip():
                size["jobs"] = int(environ[SOAK_JOBS_ENV])
            if environ.get(SOAK_MINUTES_ENV, "").strip():
                size["minutes"] = float(environ[SOAK_MINUTES_ENV])
            return cls(**size)
        except ValueError as exc:
            raise ValueError(f"{SOAK_JOBS_ENV} / {SOAK_MINUTES_ENV}: {exc}") from exc


@dataclass(frozen=True)
class Profile:
    """A named size for a run: `ci` (few jobs, short leases) or `soak` (see `Soak`)."""

    name: str
    env: Mapping[str, str]
    job_scale: float = 1.0
    deadline_scale: float = 1.0
    soak: Soak | None = None  # set: scenarios with a soak workload run as a soak


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", CI_ENV),
    "soak": Profile("soak", CI_ENV, job_scale=10.0, deadline_scale=8.0, soak=Soak.from_env()),
}


def recovery_bound_s(env: Mapping[str, str], *, slack_s: float) -> float:
    """Liveness TTL + sweep interval (from the stack's env) + slack."""
    ttl = float(env.get("LIVENESS_TTL", SERVICE_LIVENESS_TTL))
    sweep = float(env.get("SWEEP_INTERVAL", SERVICE_SWEEP_INTERVAL))
    return round(ttl + sweep + slack_s, 3)


def _fresh(fault: Fault) -> Fault:
    """A new instance with the same settings and no run state (faults keep their target)."""
    if dataclasses.is_dataclass(fault) and not isinstance(fault, type):
        return dataclasses.replace(fault)
    return copy.copy(fault)


def _at(entry_at: float | str) -> float:
    if entry_at == WHEN_RUNNING:
        return 0.0
    if isinstance(entry_at, str):
        raise ValueError(f"schedule time must be seconds or WHEN_RUNNING, got {entry_at!r}")
    return float(entry_at)


@dataclass(frozen=True)
class RandomSchedule:
    """Faults drawn from the seed: from `start_s`, one of `pool` every `every_s` (uniform).

    Called with the scenario's RNG: `count` faults (a ci run), or, given `span_s` (a soak),
    as many as start before `span_s`. The draws are the same either way, so a soak's schedule
    begins with the ci schedule and a shorter soak's is a prefix of a longer one's.
    """

    pool: tuple[Fault, ...]
    count: int
    start_s: float = 2.0
    every_s: tuple[float, float] = (3.0, 5.0)

    def __post_init__(self) -> None:
        if not self.pool or self.count < 1:
            raise ValueError("nemesis needs a non-empty pool and count >= 1")
        low, high = self.every_s
        if not 0 < low <= high:
            raise ValueError(f"every_s must be (low, high) with 0 < low <= high, got {self.every_s}")

    def __call__(self, rng: random.Random, span_s: float | None = None) -> list[ScheduleEntry]:
        out: list[ScheduleEntry] = []
        at = self.start_s
        while (len(out) < self.count) if span_s is None else (at < span_s):
            out.append((round(at, 3), _fresh(rng.choice(self.pool))))
            at += rng.uniform(*self.every_s)
        return out


def nemesis(
    pool: Sequence[Fault],
    *,
    count: int,
    start_s: float = 2.0,
    every_s: tuple[float, float] = (3.0, 5.0),
) -> RandomSchedule:
    """A random schedule drawn from the seed: `count` faults from `pool`, `every_s` apart
    (a soak draws them over its whole time span instead; see `RandomSchedule`)."""
    return RandomSchedule(tuple(pool), count, start_s, (float(every_s[0]), float(every_s[1])))


@dataclass(frozen=True)
class RunPlan:
    """What one run of a scenario does under a profile: the workload, the fault schedule, and
    when the clients stop. A soak (`soak` set) stops submitting at `submit_s` (or when every job
    is sent) and its nemesis stops there too: later faults of the schedule are not due."""

    workload: Workload
    schedule: list[tuple[float, Fault]]
    deadline_s: float  # the clients stop watching here; the final phase follows
    submit_s: float | None = None  # no submission after this (soak time cap)
    soak: Soak | None = None

    @property
    def open_ended(self) -> bool:
        """The nemesis draws faults while the workload submits, not a fixed list."""
        return self.soak is not None


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """Workload + fault schedule + expectations: what one chaos test is."""

    name: str
    workload: Workload
    faults: Sequence[ScheduleEntry] | ScheduleFn = ()
    workers: int = 2
    env: Mapping[str, str] = field(default_factory=dict)  # service settings on top of the profile's
    stack: Mapping[str, Any] = field(default_factory=dict)  # other StackConfig fields
    deadline_s: float = 25.0  # the workload stops here; the final phase follows
    settle_s: float = 2.0  # after healing, before the final read (a resumed zombie acts)
    slack_s: float | None = None  # default: the slowest job's clean run + DEFAULT_SLACK_S
    checkers: tuple[str, ...] = (
        "all_terminal",
        "no_lost",
        "duplicates",
        "reexecutions",
        "expected_outcome",
        "result_correct",
        "recovery_time",
    )
    backends: tuple[str, ...] = ("local", "docker")  # where it makes sense (see skip_reason)
    fault: str | None = None  # how reports name the fault; default: the scheduled faults' labels
    # The workload of a soak run (mix, concurrency, rate; `jobs` comes from the profile's Soak).
    # Needs a RandomSchedule, which keeps drawing faults for as long as the soak submits.
    soak: Workload | None = None

    def __post_init__(self) -> None:
        if self.soak is not None and not isinstance(self.faults, RandomSchedule):
            raise ValueError(f"scenario {self.name}: a soak workload needs a nemesis(...) schedule")
        if not callable(self.faults):
            for at, f in self.faults:
                _at(at)
                if not isinstance(f, Fault):
                    raise TypeError(f"{f!r} is not a Fault (needs name, inject(ctx), heal(ctx))")

    def schedule(self, seed: int | str, *, span_s: float | None = None) -> list[tuple[float, Fault]]:
        """The faults of one run, fresh instances, ordered by time; the same for the same seed.

        `span_s` (a soak): a nemesis draws faults until then instead of its `count`."""
        if span_s is not None and not isinstance(self.faults, RandomSchedule):
            raise ValueError(f"scenario {self.name}: only a nemesis(...) schedule can span {span_s} s")
        rng = random.Random(f"schedule:{seed}:{self.name}")
        if isinstance(self.faults, RandomSchedule):
            entries = list(self.faults(rng, span_s))
        elif callable(self.faults):
            entries = list(self.faults(rng))
        else:
            entries = list(self.faults)
        out = [(_at(at), _fresh(f)) for at, f in entries]
        out.sort(key=lambda e: e[0])
        return out

    def fault_pool(self) -> list[Fault]:
        """Every fault this scenario may inject (a nemesis' pool, or the fixed schedule's)."""
        pool = getattr(self.faults, "pool", None) if callable(self.faults) else [f for _, f in self.faults]
        return list(pool or ())

    def skip_reason(self, backend: str) -> str | None:
        """Why this scenario makes no sense on `backend` (None: it does).

        The scenario's `backends`, and each fault's optional `backends` class attribute."""
        if backend not in self.backends:
            return f"scenario {self.name} runs on backends {', '.join(self.backends)}, not {backend}"
        for f in self.fault_pool():
            allowed = getattr(f, "backends", None)
            if allowed is not None and backend not in allowed:
                return f"fault {f.name} has no {backend} form (it runs on {', '.join(allowed)})"
        return None

    def fault_names(self, backend: str | None = None) -> str:
        if self.fault:
            return self.fault
        pool = self.fault_pool()
        labels = list(dict.fromkeys(fault_label(f, backend) for f in pool))
        if callable(self.faults):
            return "nemesis: " + ", ".join(labels)
        return ", ".join(labels) or "none"

    def env_for(self, profile: Profile) -> dict[str, str]:
        return {**profile.env, **self.env}

    def workload_for(self, profile: Profile) -> Workload:
        """The workload a run under `profile` sends: the soak workload sized by the profile's
        Soak, else `workload` scaled by `job_scale`."""
        if profile.soak is not None and self.soak is not None:
            return dataclasses.replace(self.soak, jobs=profile.soak.jobs)
        return self.workload.scaled(profile.job_scale) if profile.job_scale != 1 else self.workload

    def plan(self, profile: Profile, seed: int | str) -> RunPlan:
        """The workload, fault schedule and time limits of one run; the same for the same seed."""
        workload = self.workload_for(profile)
        if profile.soak is not None and self.soak is not None:
            soak = profile.soak
            schedule = self.schedule(seed, span_s=soak.span_s)
            return RunPlan(workload, schedule, soak.span_s + soak.drain_s, submit_s=soak.span_s, soak=soak)
        return RunPlan(workload, self.schedule(seed), self.deadline_s * profile.deadline_scale)

    def bound_s(self, profile: Profile) -> float:
        """Lease + sweep + slack (re-running the longest job, and DEFAULT_SLACK_S).

        A soak adds a capacity allowance: its nemesis never stops, so a recovered job, though
        requeued at the front, may still wait for a worker: one busy with the longest job, or
        one that a fault holds for up to the pool's longest outage (`for_s`). That wait is the
        pool's capacity, not the recovery layer's latency: the bound allows it once.
        """
        env = self.env_for(profile)
        longest = self.workload_for(profile).longest_job_s(env)
        slack = self.slack_s if self.slack_s is not None else longest + DEFAULT_SLACK_S
        if profile.soak is not None and self.soak is not None:
            slack += longest + self.longest_outage_s()
        return recovery_bound_s(env, slack_s=slack)

    def longest_outage_s(self) -> float:
        """The longest `for_s` among the faults this scenario can draw (0 when none says)."""
        if isinstance(self.faults, RandomSchedule):
            faults: Sequence[Fault] = self.faults.pool
        elif callable(self.faults):
            return 0.0
        else:
            faults = [f for _, f in self.faults]
        return max((float(getattr(f, "for_s", None) or 0.0) for f in faults), default=0.0)

    def stack_options(self) -> dict[str, Any]:
        """StackConfig fields the faults need (e.g. redis_aof) plus the scenario's own."""
        opts: dict[str, Any] = {}
        pool = getattr(self.faults, "pool", ()) if callable(self.faults) else [f for _, f in self.faults]
        for f in pool:
            opts.update(getattr(f, "stack_options", {}) or {})
        opts.update(self.stack)
        return opts

    def stack_config(self, *, fix: str, profile: Profile, log_dir: Path | None) -> StackConfig:
        return StackConfig(
            workers=self.workers,
            fix=fix,
            env=self.env_for(profile),
            log_dir=log_dir,
            **self.stack_options(),
        )


class _Nemesis:
    """Injects the schedule on its own thread; heals after `for_s` or in the final phase.

    With `until` (a soak), the nemesis stops once that event is set (the workload stopped
    submitting): later faults of the schedule are not due, and a fault still waiting for a
    target when the run ends was cut off by the end, not missed. `expected()` says which
    faults the run must show injected and healed."""

    def __init__(
        self, schedule: list[tuple[float, Fault]], ctx: FaultContext, *, until: threading.Event | None = None
    ) -> None:
        self.schedule = schedule
        self.ctx = ctx
        self.until = until
        self.injected: list[Fault] = []
        self._attempted: list[Fault] = []
        self._cut_off: set[int] = set()
        self._healed: set[int] = set()
        self._heal_lock = threading.Lock()
        self._timers: list[threading.Timer] = []
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread.start()

    def join(self, timeout: float = 30.0) -> None:
        self._thread.join(timeout)

    def expected(self) -> list[str]:
        """Names of the faults that must have been injected: the whole schedule, or for a soak
        the faults that came due while the workload submitted (minus those the end cut off)."""
        if self.until is None:
            return [f.name for _, f in self.schedule]
        return [f.name for f in self._attempted if id(f) not in self._cut_off]

    def _ended(self) -> bool:
        return self.ctx.stop.is_set() or (self.until is not None and self.until.is_set())

    def _wait(self, seconds: float) -> bool:
        """Sleep until a fault's time; True when the run (or, for a soak, the submitting) ended first."""
        if self.until is None:
            return seconds > 0 and self.ctx.stop.wait(seconds)
        end = time.monotonic() + seconds
        while not self._ended():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.ctx.stop.wait(min(left, 0.1))
        return True

    def _run(self) -> None:
        ctx = self.ctx
        for i, (at, fault) in enumerate(self.schedule):
            if self._wait(self._t0 + at - time.monotonic()):
                if self.until is not None:
                    left = len(self.schedule) - i
                    ctx.note(
                        f"nemesis stopped with the workload's submissions; the schedule's last {left} faults were left",
                        left_out=left,
                    )
                    return
                ctx.note(f"fault {fault.name} not injected: the run ended first", fault=fault.name)
                continue
            self._attempted.append(fault)
            try:
                data = dict(fault.inject(ctx) or {})
            except NoTarget as exc:
                if self.until is not None and self.until.is_set():
                    self._cut_off.add(id(fault))
                    exc = NoTarget(f"{exc} (cut off: the workload stopped submitting while it waited)")
                ctx.note(f"fault {fault.name} not injected: {exc}", fault=fault.name)
                continue
            except Exception as exc:  # noqa: BLE001 - a nemesis bug makes the run unknown, not ok
                ctx.note(f"fault {fault.name} failed to inject: {type(exc).__name__}: {exc}", fault=fault.name)
                self.injected.append(fault)  # it may have half-happened: heal it too
                continue
            job_id = data.pop("job_id", None)
            label = fault_label(fault, ctx.backend)
            ctx.history.record(FAULT_INJECTED, job_id, fault=fault.name, label=label, **data)
            self.injected.append(fault)
            for_s = getattr(fault, "for_s", None)
            if for_s is not None:
                timer = threading.Timer(for_s, self.heal, args=(fault,))
                timer.daemon = True
                timer.start()
                self._timers.append(timer)

    def heal(self, fault: Fault) -> None:
        with self._heal_lock:
            if id(fault) in self._healed:
                return
            self._healed.add(id(fault))
            try:
                fault.heal(self.ctx)
                label = fault_label(fault, self.ctx.backend)
                self.ctx.history.record(FAULT_HEALED, fault=fault.name, label=label)
            except Exception as exc:  # noqa: BLE001
                self.ctx.note(f"fault {fault.name} failed to heal: {type(exc).__name__}: {exc}", fault=fault.name)

    def heal_all(self) -> None:
        """The final phase: every injected fault is healed, latest first."""
        for timer in self._timers:
            timer.cancel()
        for fault in reversed(self.injected):
            self.heal(fault)


class _Repairer:
    """Runs an external repair command every few seconds (a cron job beside stock RQ).

    `cmd` may use {redis_url} and {queue}; each run's exit code and output tail is a note.
    """

    def __init__(self, cmd: str, stack: Backend, history: History, *, every_s: float) -> None:
        self.argv = shlex.split(cmd.format(redis_url=stack.redis_url, queue=stack.config.queue))
        self.history = history
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="repairer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=35)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                out = subprocess.run(self.argv, capture_output=True, text=True, timeout=30)
                tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
                self.history.record(NOTE, text="repair command ran", repair_rc=out.returncode, output=tail)
            except Exception as exc:  # noqa: BLE001
                self.history.record(NOTE, text=f"repair command failed: {type(exc).__name__}: {exc}")


def _redis_version(stack: Backend) -> str | None:
    try:
        return str(stack.redis.info("server").get("redis_version"))
    except Exception:  # noqa: BLE001 - only shown in the report
        return None


def _capture_diagnosis(stack: Backend, history: History, path: Path) -> None:
    """At the deadline, when jobs are not finished/failed: `diagnose-worker --json` (read-only)
    into `path`. The report shows it beside the stuck jobs' event trails; the service is seen
    only through its own CLI. Never raises: a missing diagnosis must not break the run."""
    try:
        if not AllTerminal().check(history).details.get("stuck"):
            return
    except Exception:  # noqa: BLE001
        return
    try:
        argv = [sys.executable, "-m", "rq_recovery.diagnose_worker", "--redis-url", stack.redis_url]
        argv += ["--queue", stack.config.queue, "--json"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        try:
            report: Any = json.loads(out.stdout)
        except ValueError:
            report = {"stdout": out.stdout[-4000:]}
        data = {"exit_code": out.returncode, "report": report, "stderr": out.stderr[-2000:]}
    except Exception as exc:  # noqa: BLE001 - a missing diagnosis must not break the run
        data = {"error": f"{type(exc).__name__}: {exc}"}
    data["t"] = history.record(NOTE, text="diagnose-worker --json captured: jobs not ended at the deadline").t
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    except OSError:
        pass


def _note_exited_workers(stack: Backend, ctx: FaultContext, history: History) -> None:
    """Workers that died without a fault aimed at them (e.g. RQ quitting on a Redis error)."""
    for handle in stack.workers:
        with ctx.lock:
            held = handle.name in ctx.held
        if not held and not handle.alive():
            code = handle.exit_code()
            history.record(NOTE, text=f"worker {handle.name} exited on its own (exit code {code})", worker=handle.name)


@dataclass
class ScenarioResult:
    """One scenario's outcome: overall verdict, per-checker verdicts, counts, recovery times."""

    name: str
    fault: str
    fix: str
    seed: str
    overall: Verdict
    verdicts: list[Verdict]
    jobs: dict[str, int | None]
    recovery_s: dict[str, float | None]
    bound_s: float
    duration_s: float
    history: History
    history_path: Path | None = None
    log_dir: Path | None = None
    faults: dict[str, Any] = field(default_factory=lambda: {"injected": 0, "by_kind": {}})
    recoveries: int | None = None  # jobs hit by a fault that still reached finished/failed

    @property
    def verdict(self) -> str:
        return self.overall.status

    @property
    def passed(self) -> bool:
        return self.overall.valid is True

    def checker_statuses(self) -> dict[str, str]:
        return {v.name: v.status for v in self.verdicts}

    def summary_entry(self) -> dict[str, Any]:
        """This scenario as one entry of summary.json's `scenarios` list."""
        return {
            "name": self.name,
            "fault": self.fault,
            "verdict": self.verdict,
            "jobs": {k: self.jobs.get(k) for k in ("accepted", "finished", "failed", "stuck", "lost", "duplicates")},
            "recovery_s": {k: self.recovery_s.get(k) for k in ("p50", "p99", "max")},
            "bound_s": self.bound_s,
            "checkers": self.checker_statuses(),
            "faults": {
                "injected": int(self.faults.get("injected") or 0),
                "by_kind": dict(self.faults.get("by_kind") or {}),
            },
            "recoveries": self.recoveries,
        }

    def notes(self) -> list[str]:
        """Notes worth a reader's eye: faults that missed or failed, workers that died, crashes."""
        words = ("not injected", "failed to", "exited on its own", "crashed", "error")
        return [
            str(e.data.get("text"))
            for e in self.history.events
            if e.kind == NOTE and any(w in str(e.data.get("text")) for w in words)
        ]

    def explain(self, *, limit: int = 1500) -> str:
        """Why the verdict is not a pass: each failing or unknown checker with its details."""
        lines = [
            f"scenario {self.name} ({self.fault}, fix={self.fix}, seed={self.seed}): {self.verdict}",
            f"jobs {self.jobs}; recovery {self.recovery_s} bound {self.bound_s} s",
        ]
        for v in self.verdicts:
            if v.status != "pass":
                text = repr(_trim(v.details))
                lines.append(f"  {v.name}: {v.status}: {text[:limit]}")
        for note in self.notes():
            lines.append(f"  note: {note}")
        if self.history_path:
            lines.append(f"history: {self.history_path}")
        if self.log_dir:
            lines.append(f"logs: {self.log_dir}")
        return "\n".join(lines)


def _trim(details: dict[str, Any]) -> dict[str, Any]:
    """Drop bulky or empty fields from details for an assertion message."""
    out = {}
    for k, v in details.items():
        if k in ("samples",) or v in (None, [], {}, 0):
            continue
        out[k] = v
    return out


def _count(verdicts: dict[str, Verdict], name: str, key: str, *, length: bool = False) -> int | None:
    v = verdicts.get(name)
    if v is None or key not in v.details:
        return None
    value = v.details[key]
    return len(value) if length else int(value)


def _run_in(
    stack: Backend,
    history: History,
    *,
    scenario: Scenario,
    plan: RunPlan,
    fix: str,
    seed: int | str,
    prof: Profile,
    repair_cmd: str | None,
    repair_every_s: float,
    diagnose_path: Path | None = None,
) -> _Nemesis:
    """The run itself on a started stack: workload + nemesis, then the final phase."""
    workload, schedule = plan.workload, plan.schedule
    soak = {"jobs": plan.soak.jobs, "minutes": plan.soak.minutes} if plan.soak is not None else None
    history.record(
        NOTE,
        text=f"scenario {scenario.name} started",
        fix=fix,
        seed=str(seed),
        profile=prof.name,
        workers=[w.name for w in stack.workers],
        schedule=[[at, fault_label(f, getattr(stack, "backend", "local"))] for at, f in schedule],
        planned_jobs=workload.jobs,
        planned_faults=None if plan.open_ended else len(schedule),  # a soak's nemesis runs while it submits
        soak=soak,
        backend=getattr(stack, "backend", "local"),
        env=scenario.env_for(prof),
        redis_version=_redis_version(stack),
    )
    seed_s = f"{seed}:{scenario.name}"
    now = time.monotonic()
    deadline = now + plan.deadline_s
    submit_until = now + plan.submit_s if plan.submit_s is not None else None
    run = WorkloadRun(
        workload, api_url=stack.api_url, history=history, seed=seed_s, deadline=deadline, submit_until=submit_until
    )
    ctx = FaultContext(
        stack=stack,
        history=history,
        rng=random.Random(f"faults:{seed_s}"),
        fix=fix,
        deadline=deadline,
        kind_of=run.kind_of,
    )
    nem = _Nemesis(schedule, ctx, until=run.submissions_over if plan.open_ended else None)
    repairer = _Repairer(repair_cmd, stack, history, every_s=repair_every_s) if repair_cmd else None
    run.start()
    nem.start()
    if repairer:
        repairer.start()
    try:
        run.join(timeout=max(0.0, deadline - time.monotonic()) + 15)
    finally:
        run.stop()
        ctx.stop.set()  # faults still waiting for a target give up
        nem.join()
        if diagnose_path is not None:  # before healing: what an operator would see at the deadline
            _capture_diagnosis(stack, history, diagnose_path)
        nem.heal_all()  # final phase: heal everything, then let the stack settle
    history.record(NOTE, text="final phase: faults healed")
    time.sleep(scenario.settle_s)
    run.final_pass()
    if repairer:
        repairer.stop()
    _note_exited_workers(stack, ctx, history)
    return nem


def run_scenario(
    scenario: Scenario,
    *,
    fix: str = "bundled",
    seed: int | str = 0,
    report_dir: Path | str | None = None,
    profile: Profile | str = "ci",
    stack_factory: Callable[[StackConfig], Stack | Backend] | None = None,
    backend: str = "local",
    repair_cmd: str | None = None,
    repair_every_s: float = 2.0,
    run_id: str | None = None,
    on_history: Callable[[History], None] | None = None,
    services: dict[str, Any] | None = None,
) -> ScenarioResult:
    """Run `scenario` against a fresh stack and judge it; saves history.jsonl in report_dir.

    `on_history` is called with the live History as soon as it exists (progress displays)."""
    reason = scenario.skip_reason(backend)
    if reason is not None:
        raise ValueError(reason)
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    plan = scenario.plan(prof, seed)
    out_dir = Path(report_dir) / scenario.name if report_dir is not None else None
    log_dir = out_dir / "logs" if out_dir is not None else None
    config = scenario.stack_config(fix=fix, profile=prof, log_dir=log_dir)
    if services:  # another service's commands / queue ([tool.harness], --api-cmd ...)
        config = dataclasses.replace(config, **services)
    # Every process is labelled "<run id>.<scenario>": a whole run's leftovers are found by prefix.
    stack_id = f"{run_id or new_run_id()}.{scenario.name}"
    factory = stack_factory or (lambda cfg: make_stack(backend, cfg, run_id=stack_id))
    bound = scenario.bound_s(prof)
    t0 = time.monotonic()
    stack = factory(config)
    history: History | None = None
    nem: _Nemesis | None = None
    history_path = out_dir / "history.jsonl" if out_dir is not None else None
    try:
        with stack:
            history = History()  # t = 0 once the stack is ready
            if on_history is not None:
                on_history(history)
            nem = _run_in(
                stack,
                history,
                scenario=scenario,
                plan=plan,
                fix=fix,
                seed=seed,
                prof=prof,
                repair_cmd=repair_cmd,
                repair_every_s=repair_every_s,
                diagnose_path=out_dir / DIAGNOSE_FILE if out_dir is not None else None,
            )
    finally:
        if history is not None and history_path is not None:  # kept also when the run broke off
            history_path.parent.mkdir(parents=True, exist_ok=True)
            history.save(history_path)
    duration = time.monotonic() - t0

    wanted = set(scenario.checkers)
    checkers = [c for c in default_checkers(bound_s=bound) if c.name in wanted]
    assert history is not None and nem is not None
    checkers += [FaultsInjected(nem.expected()), WorkloadRan()]
    overall, verdicts = compose(checkers, history)
    by_name = {v.name: v for v in verdicts}
    # Counts come from the checkers' details; run them directly when a scenario left one out.
    for extra in (AllTerminal(), NoLost(), Duplicates()):
        if extra.name not in by_name:
            by_name[extra.name] = run_checker(extra, history)
    jobs = {
        "accepted": _count(by_name, "all_terminal", "accepted"),
        "finished": _count(by_name, "all_terminal", "finished"),
        "failed": _count(by_name, "all_terminal", "failed"),
        "stuck": _count(by_name, "all_terminal", "stuck"),
        "lost": _count(by_name, "no_lost", "lost", length=True),
        "duplicates": _count(by_name, "duplicates", "duplicated_jobs"),
    }
    rt = by_name.get("recovery_time")
    recovery = {k: (rt.details.get(k) if rt is not None else None) for k in ("p50", "p99", "max")}
    recovery = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in recovery.items()}
    counted = rt if rt is not None else run_checker(RecoveryTime(bound_s=bound), history)
    recovered = counted.details.get("n")
    return ScenarioResult(
        name=scenario.name,
        fault=scenario.fault_names(backend),
        fix=fix,
        seed=str(seed),
        overall=overall,
        verdicts=verdicts,
        jobs=jobs,
        recovery_s=recovery,
        bound_s=bound,
        duration_s=round(duration, 3),
        history=history,
        history_path=history_path,
        log_dir=log_dir,
        faults=fault_totals(history),
        recoveries=int(recovered) if isinstance(recovered, int) else None,
    )


def fault_totals(history: History) -> dict[str, Any]:
    """How many faults were injected, in total and by fault name (kill-worker, ...)."""
    by_kind: dict[str, int] = {}
    for e in history.events:
        if e.kind == FAULT_INJECTED:
            name = str(e.data.get("fault"))
            by_kind[name] = by_kind.get(name, 0) + 1
    return {"injected": sum(by_kind.values()), "by_kind": dict(sorted(by_kind.items()))}
