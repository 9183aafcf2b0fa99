"""`run_scenario`: start a real stack, run the workload while the nemesis strikes, heal, judge.

    result = run_scenario(SCENARIO, fix="bundled", seed=42, report_dir=Path("reports/out/x"))
    assert result.passed, result.explain()

The run follows Jepsen: start a real stack, run the workload while the nemesis injects the
scheduled faults, then the final phase heals every fault, lets the stack settle, reads every
job's final state, and only then judges the history with the checkers. The same seed gives
the same workload and the same fault schedule.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, make_stack
from harness.backends.config import StackConfig, new_run_id
from harness.backends.local.stack import Stack
from harness.checkers import AllTerminal
from harness.checkers.evidence import DATA_LOSS_NOTE
from harness.checkers.witness import zombie_pids
from harness.defaults import (
    CLIENT_GRACE_S,
    DIAGNOSE_FILE,
    DIAGNOSE_TIMEOUT_S,
    HISTORY_FILE,
    REPAIR_EVERY_S,
    REPAIR_TIMEOUT_S,
    ZOMBIE_WAIT_S,
)
from harness.nemesis import FaultContext, fault_label
from harness.run.nemesis_thread import NemesisThread
from harness.run.reconcile import record_reconcile
from harness.run.result import ScenarioResult, judge
from harness.run.scenario import PROFILES, Profile, RunPlan, Scenario
from harness.run.schedule import RandomSchedule
from harness.targets.clients import client_factory
from harness.targets.target import Target
from harness.wait import eventually
from harness.workload import WorkloadRun
from harness.workload.history import NOTE, WITNESS, History

__all__ = ["for_target", "run_scenario", "target_skip_reason"]


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
        self._thread.join(timeout=REPAIR_TIMEOUT_S + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                out = subprocess.run(self.argv, capture_output=True, text=True, timeout=REPAIR_TIMEOUT_S)
                tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
                self.history.record(NOTE, text="repair command ran", repair_rc=out.returncode, output=tail)
            except Exception as exc:  # noqa: BLE001
                self.history.record(NOTE, text=f"repair command failed: {type(exc).__name__}: {exc}")


def _redis_memory(stack: Backend) -> tuple[int, int] | None:
    """(used_memory, keys) of the Redis under test, or None when it cannot be read."""
    try:
        return int(stack.redis.info("memory")["used_memory"]), int(stack.redis.dbsize())
    except Exception:  # noqa: BLE001 - only reported
        return None


def _note_memory(stack: Backend, history: History, start: tuple[int, int] | None) -> None:
    """The report's line on Redis memory at the start and the end of the run (a soak's growth)."""
    end = _redis_memory(stack)
    if start is None or end is None:
        return
    history.record(
        NOTE,
        text=f"redis memory: {start[0] / 1e6:.1f} MB and {start[1]} keys at the start,"
        f" {end[0] / 1e6:.1f} MB and {end[1]} keys at the end",
        used_memory=[start[0], end[0]],
        keys=[start[1], end[1]],
    )


def _redis_version(stack: Backend) -> str | None:
    try:
        return str(stack.redis.info("server").get("redis_version"))
    except Exception:  # noqa: BLE001 - only shown in the report
        return None


def _diagnose(stack: Backend) -> dict[str, Any]:
    """`diagnose-worker --json` (read-only) of the Redis under test; never raises."""
    try:
        argv = [sys.executable, "-m", "rq_recovery.diagnose_worker", "--redis-url", stack.redis_url]
        argv += ["--queue", stack.config.queue, "--json"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=DIAGNOSE_TIMEOUT_S)
        try:
            report: Any = json.loads(out.stdout)
        except ValueError:
            report = {"stdout": out.stdout[-4000:]}
        return {"exit_code": out.returncode, "report": report, "stderr": out.stderr[-2000:]}
    except Exception as exc:  # noqa: BLE001 - a missing diagnosis must not break the run
        return {"error": f"{type(exc).__name__}: {exc}"}


def _record_data_loss_report(stack: Backend, history: History) -> None:
    """After a fault that empties Redis: what the service says about it (`diagnose-worker`
    reads the recovery layer's record of the loss), for `DataLossReported` to judge."""
    data = _diagnose(stack)
    report = data.get("report")
    if not isinstance(report, dict):
        report = {}
    history.record(NOTE, text=DATA_LOSS_NOTE, redis_data_loss=report.get("redis_data_loss"), error=data.get("error"))


def _capture_diagnosis(stack: Backend, history: History, path: Path) -> None:
    """At the deadline, when jobs are not finished/failed: `diagnose-worker --json` (read-only)
    into `path`. The report shows it beside the stuck jobs' event trails; the service is seen
    only through its own CLI. Never raises: a missing diagnosis must not break the run."""
    try:
        if not AllTerminal().check(history).details.get("stuck"):
            return
    except Exception:  # noqa: BLE001
        return
    data = _diagnose(stack)
    data["t"] = history.record(NOTE, text="diagnose-worker --json captured: jobs not ended at the deadline").t
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    except OSError:
        pass


def _await_zombies(stack: Backend, history: History, *, timeout: float = ZOMBIE_WAIT_S) -> None:
    """After the heal: wait until every execution a freezing fault stopped has ended in the
    witness (the zombie acted, so fencing is put to the test), up to `timeout`."""
    witness = getattr(stack, "witness", None)
    frozen = zombie_pids(history)
    if witness is None or not frozen:
        return

    def idle() -> list[str]:
        try:
            seen = witness.executions()
        except Exception:  # noqa: BLE001 - an unread witness proves nothing: still idle
            return sorted(frozen)
        return [j for j, pids in frozen.items() for x in seen.get(j, []) if x.pid in pids and x.ended is None]

    t0 = time.monotonic()
    acted = eventually(lambda: not idle(), timeout=timeout, interval=0.1)
    waited = round(time.monotonic() - t0, 2)
    if acted:
        history.record(NOTE, text=f"zombies acted: every frozen execution ended {waited} s after the heal")
    else:
        history.record(NOTE, text=f"zombies did not act within {timeout} s of the heal", jobs=idle())


def _record_witness(stack: Backend, history: History) -> None:
    """What the witness saw, one `witness` event per job (the checkers' count of executions)."""
    witness = getattr(stack, "witness", None)
    if witness is None:
        return
    try:
        seen = witness.executions()
    except Exception as exc:  # noqa: BLE001 - without it the verdicts that need it are unknown
        history.record(NOTE, text=f"witness could not be read: {type(exc).__name__}: {exc}")
        return
    for job_id, executions in sorted(seen.items()):
        history.record(WITNESS, job_id, executions=[dataclasses.asdict(e) for e in executions])


def _note_exited_workers(stack: Backend, ctx: FaultContext, history: History) -> None:
    """Workers that died without a fault aimed at them (e.g. RQ quitting on a Redis error)."""
    for handle in stack.workers:
        with ctx.lock:
            held = handle.name in ctx.held
        if not held and not handle.alive():
            code = handle.exit_code()
            history.record(NOTE, text=f"worker {handle.name} exited on its own (exit code {code})", worker=handle.name)


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
) -> NemesisThread:
    """The run itself on a started stack: workload + nemesis, then the final phase."""
    workload, schedule = plan.workload, plan.schedule
    target = getattr(stack.config, "target", None)
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
        target=target.name if target is not None else None,
        witness=getattr(stack, "witness", None) is not None,
    )
    memory_at_start = _redis_memory(stack)
    seed_s = f"{seed}:{scenario.name}"
    now = time.monotonic()
    deadline = now + plan.deadline_s
    submit_until = now + plan.submit_s if plan.submit_s is not None else None
    run = WorkloadRun(
        workload,
        clients=client_factory(stack, workload),
        history=history,
        seed=seed_s,
        deadline=deadline,
        submit_until=submit_until,
    )
    ctx = FaultContext(
        stack=stack,
        history=history,
        rng=random.Random(f"faults:{seed_s}"),
        fix=fix,
        deadline=deadline,
        kind_of=run.kind_of,
    )
    nem = NemesisThread(schedule, ctx, until=run.submissions_over if plan.open_ended else None)
    repairer = _Repairer(repair_cmd, stack, history, every_s=repair_every_s) if repair_cmd else None
    run.start()
    nem.start()
    if repairer:
        repairer.start()
    try:
        run.join(timeout=max(0.0, deadline - time.monotonic()) + CLIENT_GRACE_S)
    finally:
        run.stop()
        ctx.stop.set()  # faults still waiting for a target give up
        nem.join()
        if diagnose_path is not None:  # before healing: what an operator would see at the deadline
            _capture_diagnosis(stack, history, diagnose_path)
        nem.heal_all()  # final phase: heal everything, then let the stack settle
    history.record(NOTE, text="final phase: faults healed")
    _await_zombies(stack, history)
    time.sleep(scenario.settle_s)
    run.final_pass()
    if any(getattr(f, "loses_data", False) for _, f in schedule):
        _record_data_loss_report(stack, history)
    record_reconcile(stack, history)
    _record_witness(stack, history)
    _note_memory(stack, history, memory_at_start)
    if repairer:
        repairer.stop()
    _note_exited_workers(stack, ctx, history)
    return nem


def for_target(scenario: Scenario, target: Target | None) -> Scenario:
    """`scenario` as it runs against `target`: a nemesis draws only faults the target can take
    (no api-crash without an API). A fixed schedule is left alone (target_skip_reason skips it)."""
    if target is None or not isinstance(scenario.faults, RandomSchedule):
        return scenario
    pool = tuple(f for f in scenario.faults.pool if f.name not in target.impossible_faults)
    if not pool or len(pool) == len(scenario.faults.pool):
        return scenario
    return dataclasses.replace(scenario, faults=dataclasses.replace(scenario.faults, pool=pool))


def target_skip_reason(scenario: Scenario, target: Target | None) -> str | None:
    """Why `scenario` cannot run against `target` (None: it can, or there is no target)."""
    if target is None:
        return None
    scenario = for_target(scenario, target)
    kinds = [k for k, w in scenario.workload.mix.items() if w > 0]
    return target.skip_reason(faults=[f.name for f in scenario.fault_pool()], kinds=kinds)


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
    repair_every_s: float = REPAIR_EVERY_S,
    run_id: str | None = None,
    on_history: Callable[[History], None] | None = None,
    services: dict[str, Any] | None = None,
) -> ScenarioResult:
    """Run `scenario` against a fresh stack and judge it; saves history.jsonl in report_dir.

    `on_history` is called with the live History as soon as it exists (progress displays)."""
    scenario = for_target(scenario, (services or {}).get("target"))
    reason = scenario.skip_reason(backend) or target_skip_reason(scenario, (services or {}).get("target"))
    if reason is not None:
        raise ValueError(reason)
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    plan = scenario.plan(prof, seed)
    out_dir = Path(report_dir) / scenario.name if report_dir is not None else None
    log_dir = out_dir / "logs" if out_dir is not None else None
    config = scenario.stack_config(fix=fix, profile=prof, log_dir=log_dir)
    if services:  # the service under test: its target, or commands / queue (--api-cmd ...)
        config = dataclasses.replace(config, **services)
    # Every process is labelled "<run id>.<scenario>": a whole run's leftovers are found by prefix.
    stack_id = f"{run_id or new_run_id()}.{scenario.name}"
    factory = stack_factory or (lambda cfg: make_stack(backend, cfg, run_id=stack_id))
    bound = scenario.bound_s(prof)
    t0 = time.monotonic()
    stack = factory(config)
    history: History | None = None
    nem: NemesisThread | None = None
    history_path = out_dir / HISTORY_FILE if out_dir is not None else None
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
    assert history is not None and nem is not None
    return ScenarioResult(
        name=scenario.name,
        fault=scenario.fault_names(backend),
        fix=fix,
        seed=str(seed),
        bound_s=bound,
        duration_s=round(duration, 3),
        history=history,
        history_path=history_path,
        log_dir=log_dir,
        **judge(
            history,
            checkers=scenario.checkers,
            expected_faults=nem.expected(),
            bound_s=bound,
            result_check=config.target.result_check if config.target is not None else "shap",
            result_path=config.target.workdir if config.target is not None else None,
            availability=scenario.availability,
        ),
    )
