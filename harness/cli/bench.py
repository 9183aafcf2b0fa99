"""`harness bench`: figures measured side by side on this machine, printed and saved as JSON.

    harness bench all [--quick] [--out bench.json]      every benchmark below, one table
    harness bench recovery [--fault F] [--fix bundled|none] [--trials N] [--parallel K] [--cap S]
    harness bench overhead | stack [--backend docker] | suite | scale | sweep | shap | service

Targets are printed next to the figures; nothing here asserts them (this machine is shared
and noisy; a benchmark reports, a test decides). `--quick` runs small versions of everything
in under two minutes, for CI to check the output's shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from harness.backends.local.stack import Stack, StackConfig
from harness.checkers import percentile
from harness.defaults import SAMPLE_ROW as ROW
from harness.defaults import TERMINAL_STATUSES as TERMINAL

__all__ = ["main", "run_all"]


def _poll(stack: Stack, job_id: str, until, *, cap: float, interval: float = 0.02) -> tuple[float | None, dict]:
    t0 = time.monotonic()
    view: dict = {}
    while time.monotonic() - t0 < cap:
        view = stack.job(job_id)
        if until(view):
            return time.monotonic(), view
        time.sleep(interval)
    return None, view


def _dist(values: list[float | None], cap: float) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    complete = len(done) == len(values) and bool(values)
    return {
        "n": len(values),
        "capped": len(values) - len(done),
        "p50": percentile(done, 50) if complete else f"> {cap:.0f}",
        "p99": percentile(done, 99) if complete else f"> {cap:.0f}",
        "max": max(done) if complete else f"> {cap:.0f}",
        "min": min(done) if done else None,
    }


# -- recovery latency -------------------------------------------------------------------------


def _fault_trial(stack: Stack, *, fault: str, job_s: float, cap: float) -> dict[str, Any]:
    job_id = stack.submit([ROW], chaos={"sleep_s": job_s})["job_id"]
    _, view = _poll(stack, job_id, lambda v: v["status"] == "started" and v["worker"], cap=60)
    victim = stack.worker(view["worker"])
    time.sleep(0.5)  # mid-job, not at its first instant
    t_fault = time.monotonic()
    if fault == "kill-worker":
        victim.process.signal_tree(signal.SIGKILL)
    elif fault == "kill-horse":
        for pid in victim.horse_pids():
            os.kill(pid, signal.SIGKILL)
    elif fault == "pause-worker":
        victim.process.signal_tree(signal.SIGSTOP)
    else:
        raise ValueError(f"unknown fault {fault}")

    def moved(v: dict) -> bool:
        return (
            v["status"] == "queued"
            or (v["status"] == "started" and (v["worker"] != victim.name or v["attempts"] > view["attempts"]))
            or v["status"] in TERMINAL
        )

    t_moved, _ = _poll(stack, job_id, moved, cap=cap)
    t_end, end = _poll(stack, job_id, lambda v: v["status"] in TERMINAL, cap=cap)
    if fault == "pause-worker":
        victim.process.signal_tree(signal.SIGCONT)
    elif fault == "kill-worker":
        stack.add_worker(wait=False)  # a platform restart brings the capacity back
    return {
        "requeue_s": None if t_moved is None else round(t_moved - t_fault, 3),
        "terminal_s": None if t_end is None else round(t_end - t_fault, 3),
        "status": end.get("status"),
        "recovery": end.get("recovery"),
    }


def bench_recovery(
    *,
    fault: str = "kill-worker",
    fix: str = "bundled",
    trials: int = 20,
    parallel: int = 1,
    cap: float = 600.0,
    job_s: float = 5.0,
) -> dict[str, Any]:
    """Fault -> requeued and fault -> terminal, production defaults, one idle worker surviving."""

    def one_stack(n: int) -> list[dict]:
        with Stack(StackConfig(workers=2, fix=fix)) as stack:
            return [_fault_trial(stack, fault=fault, job_s=job_s, cap=cap) for _ in range(n)]

    per = [trials // parallel + (1 if i < trials % parallel else 0) for i in range(parallel)]
    with ThreadPoolExecutor(parallel) as pool:
        results = [r for batch in pool.map(one_stack, [n for n in per if n]) for r in batch]
    return {
        "fault": fault,
        "fix": fix,
        "requeue_s": _dist([r["requeue_s"] for r in results], cap),
        "terminal_s": _dist([r["terminal_s"] for r in results], cap),
        "job_s": job_s,
        "cap_s": cap,
        "trials": results,
    }


# -- overhead ----------------------------------------------------------------------------------


def _commands(stack: Stack) -> int:
    return sum(int(v["calls"]) for k, v in stack.redis.info("commandstats").items() if k.startswith("cmdstat_"))


def bench_overhead(*, jobs: int = 2000, workers: int = 4, fix: str = "bundled") -> dict[str, Any]:
    """Jobs per second through `workers` workers, queue pre-filled, small TreeExplainer jobs."""
    from rq.suspension import resume, suspend

    with Stack(StackConfig(workers=workers, fix=fix, chaos_hooks=False)) as stack:
        suspend(stack.redis)  # workers idle while the queue fills, so only their work is timed
        time.sleep(1.5)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: stack.submit([ROW] * 5), range(jobs)))
        q = stack.config.queue
        c0, t0 = _commands(stack), time.monotonic()
        resume(stack.redis)
        while stack.redis.zcard(f"rq:finished:{q}") + stack.redis.zcard(f"rq:failed:{q}") < jobs:
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        commands = _commands(stack) - c0
    return {
        "fix": fix,
        "jobs": jobs,
        "workers": workers,
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(jobs / elapsed, 2),
        "redis_commands_per_job": round(commands / jobs, 1),
    }


# -- harness speed -----------------------------------------------------------------------------


def bench_stack(*, trials: int = 10, workers: int = 2, backend: str = "local") -> dict[str, Any]:
    """Redis + API + `workers` workers ready (PING, /ping, registered in RQ), p50 of `trials`.

    The docker backend needs an engine and the images (never built or pulled here): without
    them the result says why instead of a figure.
    """
    if backend == "docker":
        from harness.backends.docker.stack import DockerStack, preflight
        from harness.backends.local.stack import EnvironmentMissing

        try:
            preflight()
        except EnvironmentMissing as exc:
            return {"backend": backend, "workers": workers, "trials": 0, "skipped": str(exc)}
        make: Any = DockerStack
    else:
        make = Stack
    times = []
    for _ in range(trials):
        with make(StackConfig(workers=workers)) as stack:
            times.append(stack.startup_s["total"])
    return {
        "backend": backend,
        "workers": workers,
        "trials": trials,
        "ready_s": {
            "p50": round(statistics.median(times), 3),
            "min": round(min(times), 3),
            "max": round(max(times), 3),
        },
    }


def bench_suite(*, scenarios: tuple[str, ...] = ()) -> dict[str, Any]:
    """Wall time of the default local chaos suite (`harness run`; `scenarios` narrows it)."""
    import subprocess

    argv = [sys.executable, "-m", "harness", "run"]
    for name in scenarios:
        argv += ["--scenario", name]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.monotonic() - t0
    return {
        "scenarios": list(scenarios) or "all (local)",
        "seconds": round(elapsed, 1),
        "passed": proc.returncode == 0,
        "exit_code": proc.returncode,
    }


# -- scale -------------------------------------------------------------------------------------


def bench_scale(*, jobs: int = 10_000, workers: int = 8, kill_every: float = 2.0, cap: float = 1800.0) -> dict:
    """`jobs` jobs, `workers` workers, a random busy worker SIGKILLed every `kill_every` s."""
    with Stack(StackConfig(workers=workers, chaos_hooks=False)) as stack:
        stop = threading.Event()
        kills: list[float] = []

        def nemesis() -> None:
            rng = random.Random(1)
            while not stop.wait(kill_every):
                alive = [w for w in stack.workers if w.process.alive()]
                busy = [w for w in alive if w.horse_pids()] or alive
                if not busy:
                    continue
                rng.choice(busy).process.signal_tree(signal.SIGKILL)
                kills.append(time.monotonic())
                stack.add_worker(wait=False)

        t0 = time.monotonic()
        killer = threading.Thread(target=nemesis, daemon=True)
        killer.start()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: stack.submit([ROW])["job_id"], range(jobs)))
        deadline = time.monotonic() + cap
        statuses: list[str] = []
        while time.monotonic() < deadline:
            with stack.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(f"rq:job:{job_id}", "status")
                statuses = pipe.execute()
            if all(s in TERMINAL for s in statuses):
                break
            time.sleep(1.0)
        stop.set()
        elapsed = time.monotonic() - t0
        with stack.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(f"shap:track:{job_id}", ["attempt", "late_completions"])
            tracks = pipe.execute()
    attempts = [int(a or 0) for a, _ in tracks]
    return {
        "jobs": jobs,
        "workers": workers,
        "kills": len(kills),
        "seconds": round(elapsed, 1),
        "terminal_pct": round(100 * sum(s in TERMINAL for s in statuses) / jobs, 3),
        "lost": sum(s is None for s in statuses),
        "finished": statuses.count("finished"),
        "failed": statuses.count("failed"),
        "executed_more_than_once": sum(a > 1 for a in attempts),
        "late_completions_rejected": sum(int(x or 0) for _, x in tracks),
    }


def bench_sweep(*, entries: int = 10_000) -> dict[str, Any]:
    """One sweep pass over `entries` started attempts (all alive), and the fix's memory per job."""
    from rq_recovery.keys import running_key
    from rq_recovery.tracking import Tracker  # a benchmark of the fix itself

    with Stack(StackConfig(workers=0)) as stack:
        r = stack.redis
        tracker = Tracker(r, "bench", liveness_ttl=600, max_attempts=3)
        ids = [str(uuid.uuid4()) for _ in range(entries)]
        for job_id in ids:
            tracker.start(job_id, token=f"t{job_id}", worker="w1", pid=1)
        r.client_setname("shapfix:w1")
        passes = []
        for _ in range(5):
            t = time.perf_counter()
            report = tracker.sweep(by="bench")
            passes.append((time.perf_counter() - t) * 1000)
        per_job = (r.memory_usage(f"shap:track:{ids[0]}") or 0) + (r.memory_usage(f"shap:live:{ids[0]}") or 0)
        zset = (r.memory_usage(running_key()) or 0) / entries
    return {
        "entries": entries,
        "sweep_ms": {"p50": round(statistics.median(passes), 1), "max": round(max(passes), 1)},
        "skipped_live": report.skipped_live,
        "fix_bytes_per_running_job": round(per_job + zset),
    }


def bench_shap(*, trials: int = 5) -> dict[str, Any]:
    """TreeExplainer jobs of 1 / 100 / 1,000 rows through a worker; worker RSS at rest and peak."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes().data
    out: dict[str, Any] = {}
    with Stack(StackConfig(workers=1, chaos_hooks=False)) as stack:
        worker = psutil.Process(stack.workers[0].pid)
        time.sleep(1)
        out["worker_rss_at_rest_mb"] = round(worker.memory_info().rss / 2**20, 1)
        peaks = []
        for n in (1, 100, 1000):
            rows = [data[i % len(data)].tolist() for i in range(n)]
            compute, wall = [], []
            for _ in range(trials):
                t = time.monotonic()
                job_id = stack.submit(rows)["job_id"]
                t_end, view = _poll(stack, job_id, lambda v: v["status"] in TERMINAL, cap=120, interval=0.005)
                wall.append((t_end or float("nan")) - t)
                compute.append(view["result"]["compute_s"])
                # The worker records the horse's facts just after RQ marks the job finished.
                _, view = _poll(stack, job_id, lambda v: "peak_rss_bytes" in v.get("facts", {}), cap=5)
                peaks.append(view.get("facts", {}).get("peak_rss_bytes") or 0)
            out[f"rows_{n}"] = {
                "compute_s_median": round(statistics.median(compute), 4),
                "end_to_end_s_median": round(statistics.median(wall), 4),
            }
        out["horse_peak_rss_mb"] = round(max(peaks) / 2**20, 1)
    return out


def bench_service(*, trials: int = 20) -> dict[str, Any]:
    """Worker start -> first job finished, and one 100-row TreeExplainer job's latency."""
    from sklearn.datasets import load_diabetes

    rows = load_diabetes().data[:100].tolist()
    with Stack(StackConfig(workers=0, chaos_hooks=False)) as stack:
        t0 = time.monotonic()
        stack.add_worker(wait=False)
        job_id = stack.submit([ROW])["job_id"]
        t_first, _ = _poll(stack, job_id, lambda v: v["status"] == "finished", cap=120, interval=0.01)
        first = (t_first or float("nan")) - t0
        lat, compute = [], []
        for _ in range(trials):
            t = time.monotonic()
            job_id = stack.submit(rows)["job_id"]
            t_end, view = _poll(stack, job_id, lambda v: v["status"] == "finished", cap=60, interval=0.005)
            lat.append((t_end or float("nan")) - t)
            compute.append(view["result"]["compute_s"])
    return {
        "worker_start_to_first_job_finished_s": round(first, 3),
        "tree_100_rows_end_to_end_s": {"median": round(statistics.median(lat), 4), "n": trials},
        "tree_100_rows_compute_s": {"median": round(statistics.median(compute), 4), "n": trials},
    }


# -- everything --------------------------------------------------------------------------------


def bench_dropin(*, trials: int = 20, job_s: float = 3.0, cap: float = 120.0) -> dict[str, Any]:
    """A plain `Queue.enqueue(time.sleep, ...)` job under `rq worker -w RecoveringWorker`.

    Two workers of RQ's own CLI with production defaults; each trial SIGKILLs the whole tree of
    the worker running the job (a container OOM kill) and times kill -> requeued (the job left
    the dead worker: queued, or started elsewhere) and kill -> finished, then starts a fresh
    worker. Nothing of the SHAP service runs: this is the fix as another team adopts it.
    """
    from redis import Redis
    from rq import Queue
    from rq.job import JobStatus

    from harness.backends.local.processes import ManagedProcess

    rq_cli = str(Path(sys.executable).parent / "rq")
    stack = Stack(StackConfig(workers=0))
    requeued: list[float | None] = []
    finished: list[float | None] = []
    procs: dict[str, ManagedProcess] = {}
    try:
        stack.start_redis()
        conn = Redis.from_url(stack.redis_url)
        queue = Queue("bench-app", connection=conn)

        def start(name: str) -> None:
            argv = [rq_cli, "worker", "-w", "rq_recovery.worker_process_fix.RecoveringWorker"]
            argv += ["--url", stack.redis_url, "--name", name, "bench-app"]
            env = {**os.environ, "HARNESS_PROC": name}
            procs[name] = ManagedProcess(name, argv, env=env, log_dir=stack.log_dir, run_id=stack.run_id).start()
            deadline = time.monotonic() + 30
            while not conn.exists(f"rq:worker:{name}") and time.monotonic() < deadline:
                time.sleep(0.05)

        for i in range(2):
            start(f"w{i}")
        for n in range(trials):
            job = queue.enqueue(time.sleep, job_s)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                job.refresh()
                if job.get_status(refresh=False) == JobStatus.STARTED and job.worker_name:
                    break
                time.sleep(0.02)
            victim = str(job.worker_name)
            time.sleep(random.uniform(0.2, job_s / 2))  # mid-job
            procs[victim].signal_tree(signal.SIGKILL)
            t0 = time.monotonic()
            t_requeue = t_finish = None
            while time.monotonic() - t0 < cap:
                job.refresh()
                status = job.get_status(refresh=False)
                if t_requeue is None and (status == JobStatus.QUEUED or job.worker_name != victim):
                    t_requeue = time.monotonic() - t0
                if status == JobStatus.FINISHED:
                    t_finish = time.monotonic() - t0
                    t_requeue = t_finish if t_requeue is None else t_requeue
                    break
                time.sleep(0.02)
            requeued.append(t_requeue)
            finished.append(t_finish)
            procs.pop(victim).stop()
            start(f"w{trials + n + 2}")
    finally:
        for proc in procs.values():
            proc.stop()
        stack.stop()
    return {
        "what": "plain RQ job (time.sleep), rq worker -w RecoveringWorker, whole-tree SIGKILL mid-job",
        "job_s": job_s,
        "kill_to_requeued_s": _dist(requeued, cap),
        "kill_to_finished_s": _dist(finished, cap),
        "trials": [{"requeued_s": r, "finished_s": f} for r, f in zip(requeued, finished, strict=True)],
    }


def _machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_all(*, quick: bool) -> dict[str, Any]:
    """Every benchmark; `quick` shrinks them to a CI-sized smoke run (< 2 min)."""
    t0 = time.monotonic()
    q = quick
    out: dict[str, Any] = {
        "quick": q,
        "machine": _machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    stock_cap = 10.0 if q else 900.0
    # Stock RQ's kill-worker and pause-worker trials mostly wait for RQ's own cleanup (13.5
    # minutes): nearly idle, so they run in the background beside the other benchmarks instead
    # of adding half an hour to the run.
    stock: dict[str, Any] = {}

    def stock_trials(fault: str) -> None:
        stock[fault] = bench_recovery(
            fault=fault,
            fix="none",
            trials=1 if q else 3,
            parallel=1 if q else 3,
            cap=stock_cap,
            job_s=2 if q else 5,
        )

    stock_threads = [
        threading.Thread(target=stock_trials, args=(f,), daemon=True) for f in ("kill-worker", "pause-worker")
    ]
    for t in stock_threads:
        t.start()
    out["recovery"] = {
        "kill-worker": bench_recovery(fault="kill-worker", trials=3 if q else 20, job_s=2 if q else 5),
        "kill-horse": bench_recovery(fault="kill-horse", trials=3 if q else 20, job_s=2 if q else 5),
        "pause-worker": bench_recovery(fault="pause-worker", trials=1 if q else 20, job_s=2 if q else 5),
    }
    on = bench_overhead(jobs=60 if q else 2000, workers=4, fix="bundled")
    off = bench_overhead(jobs=60 if q else 2000, workers=4, fix="none")
    out["overhead"] = {
        "on": on,
        "off": off,
        "throughput_ratio": round(on["jobs_per_s"] / off["jobs_per_s"], 3),
        "fix_commands_per_job": round(on["redis_commands_per_job"] - off["redis_commands_per_job"], 1),
    }
    out["stack"] = bench_stack(trials=2 if q else 10)
    out["stack_docker"] = bench_stack(trials=1 if q else 5, backend="docker")
    out["suite"] = bench_suite(scenarios=("kill-worker",) if q else ())
    out["scale"] = bench_scale(jobs=150 if q else 10_000, workers=4 if q else 8, cap=120 if q else 3600)
    out["sweep"] = bench_sweep(entries=1000 if q else 10_000)
    out["shap"] = bench_shap(trials=1 if q else 5)
    out["service"] = bench_service(trials=3 if q else 20)
    # Stock RQ handles a dead horse itself, at once (it fails the job): no need to wait.
    out["recovery"]["kill-horse-stock"] = bench_recovery(
        fault="kill-horse", fix="none", trials=1 if q else 5, job_s=2 if q else 5
    )
    for t in stock_threads:
        t.join()
    out["recovery"]["kill-worker-stock"] = stock["kill-worker"]
    out["recovery"]["pause-worker-stock"] = stock["pause-worker"]
    out["ratios"] = _ratios(out["recovery"])
    out["duration_s"] = round(time.monotonic() - t0, 1)
    return out


def _ratios(rec: dict[str, Any]) -> dict[str, Any]:
    """Stock RQ over the fix, and the fix's p99 over the lease limit (LIVENESS_TTL + SWEEP_INTERVAL,
    production defaults: nothing can tell a dead worker from a slow one faster than its lease)."""
    from shap_service.config import Settings

    limit = Settings().recovery_bound_s

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) else None

    out: dict[str, Any] = {"lease_limit_s": limit}
    for name, r in rec.items():
        if r.get("fix") == "bundled":
            for what in ("requeue_s", "terminal_s"):
                p99 = num(r[what]["p99"])
                out[f"{name} {what[:-2]} p99 / lease limit"] = None if p99 is None else round(p99 / limit, 3)
    for fault in ("kill-worker", "pause-worker"):
        stock, fix = rec.get(f"{fault}-stock") or {}, rec.get(fault) or {}
        if not (stock and fix):
            continue
        s50, f50 = num(stock["terminal_s"]["p50"]), num(fix["terminal_s"]["p50"])
        # A capped stock trial never ended: the ratio is then at least cap / fix.
        bound = s50 if s50 is not None else stock.get("cap_s")
        out[f"stock / fix, {fault} terminal p50"] = (
            None if not (bound and f50) else (round(bound / f50, 1) if s50 is not None else f"> {bound / f50:.0f}")
        )
    return out


def _count(r: dict[str, Any], status: str) -> int:
    return sum(t["status"] == status for t in r["trials"])


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def print_table(res: dict[str, Any]) -> None:
    rec = res["recovery"]
    rows = []
    for name, r in rec.items():
        rows.append(
            (
                f"recovery {name}: requeue p50/p99/max s",
                f"{_fmt(r['requeue_s']['p50'])} / {_fmt(r['requeue_s']['p99'])} / {_fmt(r['requeue_s']['max'])}",
                "p99 <= 10 s (fix)",
            )
        )
        rows.append(
            (
                f"recovery {name}: terminal p50/p99/max s",
                f"{_fmt(r['terminal_s']['p50'])} / {_fmt(r['terminal_s']['p99'])} / {_fmt(r['terminal_s']['max'])}",
                f"job {r['job_s']} s; ended finished {_count(r, 'finished')}/{len(r['trials'])}",
            )
        )
    o = res["overhead"]
    rows += [
        (
            "throughput on / off (jobs/s)",
            f"{o['on']['jobs_per_s']} / {o['off']['jobs_per_s']}",
            f"ratio {o['throughput_ratio']} (>= 0.97)",
        ),
        ("Redis commands per job: fix", f"{o['fix_commands_per_job']}", f"on {o['on']['redis_commands_per_job']}"),
        ("local stack ready p50 s", f"{res['stack']['ready_s']['p50']}", "<= 3 s"),
        (
            "docker stack ready p50 s (warm images)",
            str(res["stack_docker"]["ready_s"]["p50"]) if "ready_s" in res["stack_docker"] else "skipped",
            res["stack_docker"].get("skipped", "")[:60],
        ),
        (
            f"suite wall time s ({res['suite']['scenarios']})",
            f"{res['suite']['seconds']} ({'pass' if res['suite']['passed'] else 'FAIL'})",
            "<= 180 s",
        ),
        (
            "scale: terminal % / lost / kills",
            f"{res['scale']['terminal_pct']} / {res['scale']['lost']} / {res['scale']['kills']}",
            f"{res['scale']['jobs']} jobs, 100 % / 0",
        ),
        (
            "scale: executed > once / late rejected",
            f"{res['scale']['executed_more_than_once']} / {res['scale']['late_completions_rejected']}",
            "counted",
        ),
        (f"sweep over {res['sweep']['entries']} started: p50 ms", f"{res['sweep']['sweep_ms']['p50']}", "<= 50 ms"),
        ("fix memory per running job (bytes)", f"{res['sweep']['fix_bytes_per_running_job']}", ""),
        (
            "TreeExplainer 1 / 100 / 1000 rows compute s",
            " / ".join(str(res["shap"][f"rows_{n}"]["compute_s_median"]) for n in (1, 100, 1000)),
            "",
        ),
        (
            "worker RSS at rest / horse peak MB",
            f"{res['shap']['worker_rss_at_rest_mb']} / {res['shap']['horse_peak_rss_mb']}",
            "",
        ),
        ("worker start -> first job s", f"{res['service']['worker_start_to_first_job_finished_s']}", ""),
    ]
    for name, value in res["ratios"].items():
        if name != "lease_limit_s":
            target = "p99 <= 1.2 x lease limit" if "lease limit" in name else "stock RQ / bundled fix"
            rows.append((name, _fmt(value), target))
    width = max(len(r[0]) for r in rows)
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<28} {target}")
    print(
        f"({res['duration_s']} s, {res['machine']['cores']} cores, {res['machine']['memory_gb']} GB, "
        f"quick={res['quick']})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    a = sub.add_parser("all", help="every benchmark, one table")
    a.add_argument("--quick", action="store_true", help="small versions of everything (< 2 min)")
    rec = sub.add_parser("recovery", help="fault -> requeue / terminal")
    rec.add_argument("--fault", default="kill-worker", choices=["kill-worker", "kill-horse", "pause-worker"])
    rec.add_argument("--fix", default="bundled", choices=["bundled", "none"])
    rec.add_argument("--trials", type=int, default=20)
    rec.add_argument("--parallel", type=int, default=1, help="stacks in parallel (for slow stock-RQ trials)")
    rec.add_argument("--cap", type=float, default=600.0, help="seconds before a trial counts as '> cap'")
    rec.add_argument("--job-s", type=float, default=5.0, help="how long the faulted job runs")
    ov = sub.add_parser("overhead", help="jobs/s with the recovery layer on or off")
    ov.add_argument("--jobs", type=int, default=2000)
    ov.add_argument("--workers", type=int, default=4)
    ov.add_argument("--fix", default="bundled", choices=["bundled", "none"])
    st = sub.add_parser("stack", help="stack ready time (local, or docker with warm images)")
    st.add_argument("--trials", type=int, default=10)
    st.add_argument("--backend", default="local", choices=["local", "docker"])
    su = sub.add_parser("suite", help="wall time of the default local chaos suite (harness run)")
    su.add_argument("--scenario", action="append", default=[], metavar="NAME", help="only these (repeatable)")
    sc = sub.add_parser("scale", help="many jobs, a worker killed every few seconds")
    sc.add_argument("--jobs", type=int, default=10_000)
    sc.add_argument("--workers", type=int, default=8)
    sc.add_argument("--kill-every", type=float, default=2.0)
    sw = sub.add_parser("sweep", help="one sweep pass over many started attempts")
    sw.add_argument("--entries", type=int, default=10_000)
    sh = sub.add_parser("shap", help="TreeExplainer latency by rows; worker RSS")
    sh.add_argument("--trials", type=int, default=5)
    dr = sub.add_parser("dropin", help="a plain RQ job under rq worker -w: kill -> requeued / finished")
    dr.add_argument("--trials", type=int, default=20)
    dr.add_argument("--job-s", type=float, default=3.0)
    svc = sub.add_parser("service", help="worker start -> first job; 100-row latency")
    svc.add_argument("--trials", type=int, default=20)
    for p in (a, rec, ov, st, su, sc, sw, sh, dr, svc):
        p.add_argument("--out", help="also write the JSON here")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    if args.what == "all":
        result = run_all(quick=args.quick)
    elif args.what == "recovery":
        result = bench_recovery(
            fault=args.fault, fix=args.fix, trials=args.trials, parallel=args.parallel, cap=args.cap, job_s=args.job_s
        )
    elif args.what == "overhead":
        result = bench_overhead(jobs=args.jobs, workers=args.workers, fix=args.fix)
    elif args.what == "stack":
        result = bench_stack(trials=args.trials, backend=args.backend)
    elif args.what == "suite":
        result = bench_suite(scenarios=tuple(args.scenario))
    elif args.what == "scale":
        result = bench_scale(jobs=args.jobs, workers=args.workers, kill_every=args.kill_every)
    elif args.what == "sweep":
        result = bench_sweep(entries=args.entries)
    elif args.what == "dropin":
        result = bench_dropin(trials=args.trials, job_s=args.job_s)
    elif args.what == "shap":
        result = bench_shap(trials=args.trials)
    else:
        result = bench_service(trials=args.trials)
    text = json.dumps(result, indent=2)
    if args.what == "all":
        print_table(result)
    else:
        print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
