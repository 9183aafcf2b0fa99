"""`harness bench`: figures measured side by side on this machine, printed and saved as JSON.

    harness bench recovery [--fix bundled|none] [--trials N] [--parallel K] [--cap S]
    harness bench service  [--trials N]

`recovery` SIGKILLs the whole process tree of the worker running a job (production defaults,
one surviving idle worker) and times kill -> requeued and kill -> terminal. `service` times
worker start -> first job finished, and the latency of one TreeExplainer job of 100 rows.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .checkers import percentile
from .stack import Stack, StackConfig

__all__ = ["main"]

ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.017]


def _poll(stack: Stack, job_id: str, until, *, cap: float, interval: float = 0.02) -> tuple[float | None, dict]:
    t0 = time.monotonic()
    view: dict = {}
    while time.monotonic() - t0 < cap:
        view = stack.job(job_id)
        if until(view):
            return time.monotonic(), view
        time.sleep(interval)
    return None, view


def _kill_trial(stack: Stack, *, job_s: float, cap: float) -> dict[str, Any]:
    job_id = stack.submit([ROW], chaos={"sleep_s": job_s})["job_id"]
    _, view = _poll(stack, job_id, lambda v: v["status"] == "started" and v["worker"], cap=60)
    victim = stack.worker(view["worker"])
    time.sleep(0.5)  # mid-job, not at its first instant
    t_kill = time.monotonic()
    victim.process.signal_tree(signal.SIGKILL)
    t_requeue, _ = _poll(
        stack, job_id, lambda v: v["status"] == "queued" or (v["status"] == "started" and v["worker"] != victim.name)
        or v["status"] in ("finished", "failed"), cap=cap,
    )
    t_end, end = _poll(stack, job_id, lambda v: v["status"] in ("finished", "failed"), cap=cap)
    stack.add_worker(wait=False)  # a platform restart brings the capacity back
    return {
        "requeue_s": None if t_requeue is None else round(t_requeue - t_kill, 3),
        "terminal_s": None if t_end is None else round(t_end - t_kill, 3),
        "status": end.get("status"),
        "recovery": end.get("recovery"),
    }


def _dist(values: list[float | None], cap: float) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    return {
        "n": len(values),
        "capped": len(values) - len(done),
        "p50": percentile(done, 50) if len(done) == len(values) else f"> {cap:.0f}",
        "p99": percentile(done, 99) if len(done) == len(values) else f"> {cap:.0f}",
        "max": max(done) if done and len(done) == len(values) else f"> {cap:.0f}",
        "min": min(done) if done else None,
    }


def bench_recovery(*, fix: str, trials: int, parallel: int, cap: float, job_s: float) -> dict[str, Any]:
    def one_stack(n: int) -> list[dict]:
        with Stack(StackConfig(workers=2, fix=fix)) as stack:
            return [_kill_trial(stack, job_s=job_s, cap=cap) for _ in range(n)]

    per = [trials // parallel + (1 if i < trials % parallel else 0) for i in range(parallel)]
    with ThreadPoolExecutor(parallel) as pool:
        results = [r for batch in pool.map(one_stack, [n for n in per if n]) for r in batch]
    return {
        "fix": fix,
        "trials": results,
        "requeue_s": _dist([r["requeue_s"] for r in results], cap),
        "terminal_s": _dist([r["terminal_s"] for r in results], cap),
        "job_s": job_s,
        "cap_s": cap,
    }


def bench_service(*, trials: int) -> dict[str, Any]:
    from sklearn.datasets import load_diabetes

    rows = load_diabetes().data[:100].tolist()
    with Stack(StackConfig(workers=0, chaos_hooks=False)) as stack:
        t0 = time.monotonic()
        stack.add_worker(wait=False)
        job_id = stack.submit([ROW])["job_id"]
        t_first, _ = _poll(stack, job_id, lambda v: v["status"] == "finished", cap=120, interval=0.01)
        first = (t_first or float("nan")) - t0
        stack.add_worker()  # (ready) keep it comparable: latency below is one job at a time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("recovery", help="kill -> requeue / terminal after a whole-worker SIGKILL")
    rec.add_argument("--fix", default="bundled", choices=["bundled", "none"])
    rec.add_argument("--trials", type=int, default=20)
    rec.add_argument("--parallel", type=int, default=1, help="stacks in parallel (for slow stock-RQ trials)")
    rec.add_argument("--cap", type=float, default=600.0, help="seconds before a trial counts as '> cap'")
    rec.add_argument("--job-s", type=float, default=5.0, help="how long the killed job runs")
    svc = sub.add_parser("service", help="worker start -> first job; TreeExplainer latency for 100 rows")
    svc.add_argument("--trials", type=int, default=20)
    for p in (rec, svc):
        p.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.what == "recovery":
        result = bench_recovery(fix=args.fix, trials=args.trials, parallel=args.parallel, cap=args.cap,
                                job_s=args.job_s)
    else:
        result = bench_service(trials=args.trials)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
