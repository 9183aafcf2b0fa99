"""A scenario is plain data (workload + fault schedule + expectations); `run_scenario` runs it.

    SCENARIO = Scenario(
        name="kill-worker",
        workload=Workload(jobs=8, concurrency=2, mix={"light": 1, "slow": 1}),
        faults=[(WHEN_RUNNING, KillWorker(restart=True))],
    )

A profile sizes the run (`PROFILES`): `ci`, or `soak`, under which a scenario that declares a
`soak` workload (the nemesis) submits `Soak.jobs` jobs or stops submitting after
`Soak.minutes`, whichever comes first, while its nemesis keeps drawing faults from the seed
(`Scenario.plan` says what a run does; HARNESS_SOAK_JOBS / HARNESS_SOAK_MINUTES resize it).
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends.config import StackConfig
from harness.checkers import DEFAULT_CHECKER_NAMES
from harness.defaults import (
    AVAILABILITY_DURING,
    AVAILABILITY_OUTSIDE,
    DEFAULT_SLACK_S,
    FAST_LEASES,
    MAX_SOAK_MINUTES,
    SCENARIO_DEADLINE_S,
    SCENARIO_SETTLE_S,
    SCENARIO_WORKERS,
    SERVICE_LIVENESS_TTL,
    SERVICE_SWEEP_INTERVAL,
    SOAK_DEADLINE_SCALE,
    SOAK_DRAIN_S,
    SOAK_JOB_SCALE,
    SOAK_JOBS,
    SOAK_JOBS_ENV,
    SOAK_MINUTES,
    SOAK_MINUTES_ENV,
)
from harness.nemesis import Fault, fault_label
from harness.run.schedule import RandomSchedule, ScheduleEntry, ScheduleFn, entry_time, fresh
from harness.workload import Workload

__all__ = ["PROFILES", "Profile", "RunPlan", "Scenario", "Soak", "recovery_bound_s"]


@dataclass(frozen=True)
class Soak:
    """What a soak run is: submit `jobs` jobs, or stop submitting after `minutes` of wall time,
    whichever comes first, while the nemesis keeps injecting faults drawn from the seed; then
    `drain_s` for the jobs still in flight to end. Applies to scenarios that declare a `soak`
    workload (the nemesis); other scenarios scale their workload by the profile's `job_scale`.

    `HARNESS_SOAK_JOBS` / `HARNESS_SOAK_MINUTES` override the size (e.g. 300 jobs for a check).
    """

    jobs: int = SOAK_JOBS
    minutes: float = SOAK_MINUTES
    drain_s: float = SOAK_DRAIN_S

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
    "ci": Profile("ci", FAST_LEASES),
    "soak": Profile(
        "soak", FAST_LEASES, job_scale=SOAK_JOB_SCALE, deadline_scale=SOAK_DEADLINE_SCALE, soak=Soak.from_env()
    ),
}


def recovery_bound_s(env: Mapping[str, str], *, slack_s: float) -> float:
    """Liveness TTL + sweep interval (from the stack's env) + slack."""
    ttl = float(env.get("LIVENESS_TTL", SERVICE_LIVENESS_TTL))
    sweep = float(env.get("SWEEP_INTERVAL", SERVICE_SWEEP_INTERVAL))
    return round(ttl + sweep + slack_s, 3)


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
    workers: int = SCENARIO_WORKERS
    env: Mapping[str, str] = field(default_factory=dict)  # service settings on top of the profile's
    stack: Mapping[str, Any] = field(default_factory=dict)  # other StackConfig fields
    deadline_s: float = SCENARIO_DEADLINE_S  # the workload stops here; the final phase follows
    settle_s: float = SCENARIO_SETTLE_S  # after healing, before the final read (a resumed zombie acts)
    slack_s: float | None = None  # default: the slowest job's clean run + DEFAULT_SLACK_S
    checkers: tuple[str, ...] = DEFAULT_CHECKER_NAMES
    backends: tuple[str, ...] = ("local", "docker")  # where it makes sense (see skip_reason)
    fault: str | None = None  # how reports name the fault; default: the scheduled faults' labels
    # The workload of a soak run (mix, concurrency, rate; `jobs` comes from the profile's Soak).
    # Needs a RandomSchedule, which keeps drawing faults for as long as the soak submits.
    soak: Workload | None = None
    # The share of submission attempts that must be accepted (outside, during) fault windows.
    availability: tuple[float, float] = (AVAILABILITY_OUTSIDE, AVAILABILITY_DURING)

    def __post_init__(self) -> None:
        if self.soak is not None and not isinstance(self.faults, RandomSchedule):
            raise ValueError(f"scenario {self.name}: a soak workload needs a nemesis(...) schedule")
        if not callable(self.faults):
            for at, f in self.faults:
                entry_time(at)
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
        out = [(entry_time(at), fresh(f)) for at, f in entries]
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
        return max((float(getattr(f, "for_s", None) or 0.0) for f in self.fault_pool()), default=0.0)

    def stack_options(self) -> dict[str, Any]:
        """StackConfig fields the faults need (e.g. redis_aof) plus the scenario's own."""
        opts: dict[str, Any] = {}
        for f in self.fault_pool():
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
