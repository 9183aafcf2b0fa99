"""The overhead benchmark: what the recovery layer costs a busy queue, on and off.

Throughput through pre-filled queues (the workers idle while it fills, so only their work is
timed), Redis commands per job (`INFO commandstats`), and round trips per job, counted as the
workers' sends through the harness's proxies in a second, smaller run (the proxies slow the
workers, so that run is not timed). CPU per job by role is read from `/proc` over the timed
drain: the workers' main threads (RQ's loop and the fork), their other threads (RQ's command
listener; with the recovery layer, its lifeline and sweeper too), their reaped work-horses, and
Redis. `bench_overhead_both` runs the two sides in ABBA order.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.backends.config import StackConfig
from harness.backends.local.stack import Stack
from harness.defaults import SAMPLE_ROW as ROW

__all__ = ["CPU_ROLES", "bench_overhead", "bench_overhead_both", "cpu_by_role"]

#: What `cpu_by_role` reports, in this order.
CPU_ROLES = ("worker_main", "worker_threads", "horses", "redis")


def _commands(stack: Stack) -> int:
    return sum(int(v["calls"]) for k, v in stack.redis.info("commandstats").items() if k.startswith("cmdstat_"))


def cpu_by_role(worker_pids: list[int], redis_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far, by role (psutil's reading of /proc); a process gone
    counts 0. Horses are counted once reaped (their parent's children times): read after a drain.
    """
    import psutil

    out = dict.fromkeys(CPU_ROLES, 0.0)
    for pid in worker_pids:
        try:
            proc = psutil.Process(pid)
            for t in proc.threads():
                out["worker_main" if t.id == pid else "worker_threads"] += t.user_time + t.system_time
            times = proc.cpu_times()
            out["horses"] += times.children_user + times.children_system
        except psutil.NoSuchProcess:
            continue
    try:
        times = psutil.Process(redis_pid).cpu_times()
        out["redis"] = times.user + times.system
    except psutil.NoSuchProcess:
        pass
    return out


def bench_overhead(
    *, jobs: int = 2000, workers: int = 4, fix: str = "bundled", round_trip_jobs: int = 200
) -> dict[str, Any]:
    """Jobs per second through `workers` workers, queue pre-filled, small TreeExplainer jobs;
    Redis commands per job (INFO commandstats); and, in a second, smaller run whose workers reach
    Redis through the harness's proxies (which slow them: not timed), round trips per job: the
    workers' sends to Redis, a pipeline or a script being one."""
    out: dict[str, Any] = {"fix": fix, "jobs": jobs, "workers": workers}
    with Stack(StackConfig(workers=workers, fix=fix, chaos_hooks=False)) as stack:
        elapsed, commands, _, cpu = _drain(stack, jobs)
    out.update(seconds=round(elapsed, 2), jobs_per_s=round(jobs / elapsed, 2))
    out["redis_commands_per_job"] = round(commands / jobs, 1)
    out["cpu_ms_per_job"] = {role: round(1000 * s / jobs, 2) for role, s in cpu.items()}
    if round_trip_jobs > 0:
        config = StackConfig(workers=workers, fix=fix, chaos_hooks=False, worker_redis_via_proxy=True)
        with Stack(config) as stack:
            _, _, sends, _ = _drain(stack, round_trip_jobs)
        out["round_trip_jobs"] = round_trip_jobs
        out["round_trips_per_job"] = round(sends / round_trip_jobs, 1)
    return out


def _drain(stack: Stack, jobs: int) -> tuple[float, int, int, dict[str, float]]:
    """Fill the suspended queue with `jobs`, resume, wait until all are terminal: (seconds,
    Redis commands, workers' sends through their proxies, CPU seconds by role) from the resume
    to the last."""
    from rq.suspension import resume, suspend

    suspend(stack.redis)  # workers idle while the queue fills, so only their work is timed
    time.sleep(1.5)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: stack.submit([ROW] * 5), range(jobs)))
    q = stack.config.queue

    def sends() -> int:
        return sum(w.proxy.stats.requests for w in stack.workers if w.proxy is not None)

    if stack.redis_proc is None:
        raise RuntimeError("the stack's Redis is not running")
    worker_pids, redis_pid = [w.pid for w in stack.workers], stack.redis_proc.pid

    def cpu() -> dict[str, float]:
        return cpu_by_role(worker_pids, redis_pid)

    cpu0, c0, s0, t0 = cpu(), _commands(stack), sends(), time.monotonic()
    resume(stack.redis)
    while stack.redis.zcard(f"rq:finished:{q}") + stack.redis.zcard(f"rq:failed:{q}") < jobs:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    reaped_by = time.monotonic() + 5  # the last horses commit, then their parents reap them
    while any(w.horse_pids() for w in stack.workers) and time.monotonic() < reaped_by:
        time.sleep(0.02)
    cpu1 = cpu()
    return elapsed, _commands(stack) - c0, sends() - s0, {r: cpu1[r] - cpu0[r] for r in CPU_ROLES}


def bench_overhead_both(
    *, jobs: int = 2000, workers: int = 4, round_trip_jobs: int = 200, rounds: int = 2
) -> dict[str, Any]:
    """The recovery layer on and off (plain RQ workers), in ABBA order over `rounds` pairs (on,
    off, off, on, ...) so that a machine that gets busier or quieter meanwhile weighs on both
    alike; the ratio is of the pooled throughputs. Round trips are counted once per side."""
    order = [("bundled", "none") if i % 2 == 0 else ("none", "bundled") for i in range(max(1, rounds))]
    runs: dict[str, list[dict[str, Any]]] = {"bundled": [], "none": []}
    for pair in order:
        for fix in pair:
            counted = round_trip_jobs if not runs[fix] else 0
            runs[fix].append(bench_overhead(jobs=jobs, workers=workers, fix=fix, round_trip_jobs=counted))

    def pooled(fix: str) -> dict[str, Any]:
        rs = runs[fix]
        total_s = sum(r["seconds"] for r in rs)
        out = {**rs[0], "runs": len(rs), "seconds": round(total_s, 2)}
        out["jobs_per_s"] = round(sum(r["jobs"] for r in rs) / total_s, 2)
        out["jobs_per_s_each"] = [r["jobs_per_s"] for r in rs]
        out["redis_commands_per_job"] = round(statistics.mean(r["redis_commands_per_job"] for r in rs), 1)
        out["cpu_ms_per_job"] = {
            role: round(statistics.mean(r["cpu_ms_per_job"][role] for r in rs), 2) for role in CPU_ROLES
        }
        return out

    on, off = pooled("bundled"), pooled("none")
    out = {
        "on": on,
        "off": off,
        "order": [fix for pair in order for fix in pair],
        "throughput_ratio": round(on["jobs_per_s"] / off["jobs_per_s"], 3),
        "fix_commands_per_job": round(on["redis_commands_per_job"] - off["redis_commands_per_job"], 1),
        "fix_cpu_ms_per_job": {
            role: round(on["cpu_ms_per_job"][role] - off["cpu_ms_per_job"][role], 2) for role in CPU_ROLES
        },
    }
    if round_trip_jobs > 0:
        out["fix_round_trips_per_job"] = round(on["round_trips_per_job"] - off["round_trips_per_job"], 1)
    return out
