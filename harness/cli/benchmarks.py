"""The measurements behind `harness bench`: each `bench_*` starts what it needs, measures, and
returns a JSON-ready dict. Nothing here asserts a target: a benchmark reports, a test decides."""

from __future__ import annotations

import os
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from harness.backends.config import StackConfig
from harness.backends.local.stack import Stack
from harness.checkers import percentile
from harness.defaults import BENCH_POLL_RESOLUTION
from harness.defaults import SAMPLE_ROW as ROW
from harness.defaults import TERMINAL_STATUSES as TERMINAL
from harness.wait import eventually

__all__ = [
    "bench_dropin",
    "bench_memory",
    "bench_recovery",
    "bench_scale",
    "bench_service",
    "bench_shap",
    "bench_stack",
    "bench_suite",
    "bench_sweep",
]


def _poll(stack: Stack, job_id: str, until, *, cap: float, interval: float = 0.02) -> tuple[float | None, dict]:
    """When `until(view)` first held (monotonic time, or None after `cap` s) and the last view.

    Known to within 0.2 % of the wait (the polls space out as it lasts): stock RQ's 13.5-minute
    trials, which run beside the other benchmarks, poll a few times a second, not 50.
    """
    view: dict = {}

    def reached() -> bool:
        view.clear()
        view.update(stack.job(job_id))
        return bool(until(view))

    held = eventually(reached, timeout=cap, interval=interval, relative=BENCH_POLL_RESOLUTION)
    return (time.monotonic() if held else None), dict(view)


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


def _fault_trial(
    stack: Stack, *, fault: str, job_s: float, cap: float, struck: Callable[[], None] | None = None
) -> dict[str, Any]:
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
    if struck is not None:
        struck()

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
    struck: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Fault -> requeued and fault -> terminal, production defaults, one idle worker surviving.

    `struck` is called each time a fault has hit (from the trial's thread)."""

    def one_stack(n: int) -> list[dict]:
        with Stack(StackConfig(workers=2, fix=fix)) as stack:
            return [_fault_trial(stack, fault=fault, job_s=job_s, cap=cap, struck=struck) for _ in range(n)]

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


# -- harness speed -----------------------------------------------------------------------------


def bench_stack(*, trials: int = 10, workers: int = 2, backend: str = "local") -> dict[str, Any]:
    """Redis + API + `workers` workers ready (PING, /ping, registered in RQ), p50 of `trials`.

    The docker backend needs an engine and the images (never built or pulled here): without
    them the result says why instead of a figure.
    """
    if backend == "docker":
        from harness.backends.base import EnvironmentMissing
        from harness.backends.docker.engine import preflight
        from harness.backends.docker.stack import DockerStack

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
    from rq_recovery.keys import track_key

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

        statuses: list[str] = []

        def all_ended() -> bool:
            with stack.redis.pipeline(transaction=False) as pipe:
                for job_id in ids:
                    pipe.hget(f"rq:job:{job_id}", "status")
                statuses[:] = pipe.execute()
            return all(s in TERMINAL for s in statuses)

        eventually(all_ended, timeout=cap, interval=1.0)
        stop.set()
        elapsed = time.monotonic() - t0
        with stack.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(track_key(job_id), ["attempt", "late_completions"])
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
    from rq_recovery.keys import connection_name, live_key, running_key, track_key
    from rq_recovery.tracking import Tracker  # a benchmark of the fix itself

    with Stack(StackConfig(workers=0)) as stack:
        r = stack.redis
        tracker = Tracker(r, "bench", liveness_ttl=600, max_attempts=3)
        ids = [str(uuid.uuid4()) for _ in range(entries)]
        for job_id in ids:
            tracker.start(job_id, token=f"t{job_id}", worker="w1", pid=1)
        r.client_setname(connection_name("w1"))
        passes = []
        for _ in range(5):
            t = time.perf_counter()
            report = tracker.sweep(by="bench")
            passes.append((time.perf_counter() - t) * 1000)
        per_job = (r.memory_usage(track_key(ids[0])) or 0) + (r.memory_usage(live_key(ids[0])) or 0)
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
            eventually(lambda: conn.exists(f"rq:worker:{name}"), timeout=30)

        for i in range(2):
            start(f"w{i}")
        for n in range(trials):
            job = queue.enqueue(time.sleep, job_s)

            def running(job=job) -> bool:
                job.refresh()
                return job.get_status(refresh=False) == JobStatus.STARTED and bool(job.worker_name)

            eventually(running, timeout=30, interval=0.02)
            victim = str(job.worker_name)
            time.sleep(random.uniform(0.2, job_s / 2))  # mid-job
            procs[victim].signal_tree(signal.SIGKILL)
            t0 = time.monotonic()
            seen: dict[str, float] = {}  # when it was first requeued / finished, seconds after the kill

            def ended(job=job, victim=victim, t0=t0, seen=seen) -> bool:
                job.refresh()
                status = job.get_status(refresh=False)
                if "requeue" not in seen and (status == JobStatus.QUEUED or job.worker_name != victim):
                    seen["requeue"] = time.monotonic() - t0
                if status == JobStatus.FINISHED:
                    seen["finish"] = time.monotonic() - t0
                    seen.setdefault("requeue", seen["finish"])
                return status == JobStatus.FINISHED

            eventually(ended, timeout=cap, interval=0.02)
            requeued.append(seen.get("requeue"))
            finished.append(seen.get("finish"))
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


#: The job bench_memory runs: a pure function of the harness, importable where rq workers run.
PROBE_VALUE = "harness.targets.probes.expected_value"


def bench_memory(*, jobs: int = 10_000, workers: int = 2, result_ttl: int = 5, cap: float = 1800.0) -> dict[str, Any]:
    """Does the fix's bookkeeping end with its jobs? `jobs` jobs through the enqueue path of the
    API (`Tracker.enqueue`) and `rq worker -w RecoveringWorker`, with a short result TTL: Redis's
    used_memory and key count before, when the last job finished, and after the TTL and the
    enqueue guards' retry window (with RQ's own registry cleanup run, as its workers do every
    10 minutes). `fix_keys` counts the keys under the fix's prefix."""
    from redis import Redis
    from rq import Queue
    from rq.registry import clean_registries

    from harness.backends.local.processes import ManagedProcess
    from rq_recovery.keys import PREFIX, stats_key
    from rq_recovery.tracking import ENQUEUE_RETRY_GUARD_S, Tracker

    rq_cli = str(Path(sys.executable).parent / "rq")
    stack = Stack(StackConfig(workers=0))
    procs: list[ManagedProcess] = []
    try:
        stack.start_redis()
        conn = Redis.from_url(stack.redis_url)

        def snapshot() -> dict[str, int]:
            conn.execute_command("MEMORY", "PURGE")
            fix = sum(1 for _ in conn.scan_iter(f"{PREFIX}*", count=1000))
            return {"used_memory": int(conn.info("memory")["used_memory"]), "keys": int(conn.dbsize()), "fix_keys": fix}

        for i in range(workers):
            argv = [rq_cli, "worker", "-w", "rq_recovery.worker_process_fix.RecoveringWorker"]
            argv += ["--url", stack.redis_url, "--name", f"m{i}", "bench-mem"]
            env = {**os.environ, "HARNESS_PROC": f"m{i}", "JOB_ALLOWLIST": "harness.targets.probes.*"}
            procs.append(ManagedProcess(f"m{i}", argv, env=env, log_dir=stack.log_dir, run_id=stack.run_id).start())
        eventually(lambda: conn.scard("rq:workers") == workers, timeout=60)
        time.sleep(1.0)  # the workers' first registration and sweep have written what they keep
        before = snapshot()
        baseline_keys = {k.decode() for k in conn.scan_iter("*", count=1000)}
        tracker = Tracker(conn, "bench-mem", liveness_ttl=6, max_attempts=3)
        t0 = time.monotonic()
        for i in range(jobs):
            kwargs = {"seed": f"m{i}", "rounds": 1}
            tracker.enqueue(PROBE_VALUE, kwargs=kwargs, job_timeout=60, result_ttl=result_ttl)
        enqueued_s = time.monotonic() - t0
        done = eventually(lambda: int(conn.hget(stats_key("bench-mem"), "finished") or 0) >= jobs, timeout=cap)
        run_s = time.monotonic() - t0
        at_end = snapshot()
        time.sleep(max(result_ttl, ENQUEUE_RETRY_GUARD_S) + 2)
        clean_registries(Queue("bench-mem", connection=conn))
        after = snapshot()
        kept = sorted(k.decode() for k in conn.scan_iter("*", count=1000) if k.decode() not in baseline_keys)
    finally:
        for proc in procs:
            proc.stop()
        stack.stop()
    return {
        "what": f"{jobs} jobs, result_ttl {result_ttl} s, rq worker -w RecoveringWorker x{workers}",
        "all_finished": bool(done),
        "enqueue_s": round(enqueued_s, 1),
        "run_s": round(run_s, 1),
        "jobs_per_s": round(jobs / run_s, 1) if run_s else None,
        "before": before,
        "at_end": at_end,
        "after_ttl": after,
        "left_over": {k: after[k] - before[k] for k in before},
        "keys_kept": kept,  # per queue or per function, not per job: they do not grow with jobs
    }
