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
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from harness.backends.base import BACKENDS
from harness.cli.benchmarks import (
    bench_dropin,
    bench_memory,
    bench_recovery,
    bench_scale,
    bench_service,
    bench_shap,
    bench_stack,
    bench_suite,
    bench_sweep,
)
from harness.cli.overhead import bench_overhead, bench_overhead_both
from harness.defaults import BENCH_POLL_RESOLUTION, BENCH_QUIET_POLL_RATE

__all__ = ["main", "print_table", "run_all"]


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
    stock_trials_n, stock_parallel = (1, 1) if q else (3, 3)
    faults = ("kill-worker", "pause-worker")
    struck = threading.Semaphore(0)

    def stock_trials(fault: str) -> None:
        try:
            stock[fault] = bench_recovery(
                fault=fault,
                fix="none",
                trials=stock_trials_n,
                parallel=stock_parallel,
                cap=stock_cap,
                job_s=2 if q else 5,
                struck=struck.release,
            )
        finally:
            struck.release(stock_trials_n)  # a trial that failed to start must not hold the wait

    stock_threads = [threading.Thread(target=stock_trials, args=(f,), daemon=True) for f in faults]
    for t in stock_threads:
        t.start()
    # The overhead is measured while every stock stack waits out RQ's cleanup: a steady load of
    # idle stacks, the same for the fix on and off. Their start (six stacks booting), their
    # first polls and their end (RQ's cleanup, teardown) would weigh on one side's runs only.
    t_wait = time.monotonic()
    for _ in range(len(faults) * stock_trials_n):
        struck.acquire(timeout=max(0.0, 120 - (time.monotonic() - t_wait)))
    waited_s = round(time.monotonic() - t_wait, 1)
    # ... and once their polls have spaced out (see BENCH_QUIET_POLL_RATE).
    settle_s = 0.0 if q else 1 / (BENCH_QUIET_POLL_RATE * BENCH_POLL_RESOLUTION)
    time.sleep(settle_s)
    out["overhead"] = bench_overhead_both(
        jobs=60 if q else 2000, workers=4, round_trip_jobs=30 if q else 200, rounds=1 if q else 2
    )
    out["overhead"]["waited_for_stock_faults_s"] = waited_s
    out["overhead"]["then_waited_for_quiet_polls_s"] = round(settle_s, 1)
    out["overhead"]["stock_trials_ran_throughout"] = all(t.is_alive() for t in stock_threads)
    out["recovery"] = {
        "kill-worker": bench_recovery(fault="kill-worker", trials=3 if q else 20, job_s=2 if q else 5),
        "kill-horse": bench_recovery(fault="kill-horse", trials=3 if q else 20, job_s=2 if q else 5),
        "pause-worker": bench_recovery(fault="pause-worker", trials=1 if q else 20, job_s=2 if q else 5),
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
            f"ratio {o['throughput_ratio']} (>= 0.97)"
            + ("" if o.get("stock_trials_ran_throughout", True) else "; stock trials ended meanwhile"),
        ),
        ("Redis commands per job: fix", f"{o['fix_commands_per_job']}", f"on {o['on']['redis_commands_per_job']}"),
        (
            "CPU ms per job: fix (main / threads / horses / Redis)",
            " / ".join(f"{v:+.2f}" for v in o["fix_cpu_ms_per_job"].values()),
            "worker main thread, its other threads, work-horses, Redis",
        ),
        (
            "Redis round trips per job: fix",
            f"{o.get('fix_round_trips_per_job', '-')}",
            f"on {o['on'].get('round_trips_per_job', '-')}, off {o['off'].get('round_trips_per_job', '-')}",
        ),
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
    ov.add_argument(
        "--fix", default="both", choices=["both", "bundled", "none"], help="both: on, then off, and the ratio"
    )
    ov.add_argument("--round-trip-jobs", type=int, default=200, help="jobs of the proxied run that counts round trips")
    ov.add_argument("--rounds", type=int, default=2, help="with --fix both: on/off pairs, in ABBA order")
    st = sub.add_parser("stack", help="stack ready time (local, or docker with warm images)")
    st.add_argument("--trials", type=int, default=10)
    st.add_argument("--backend", default="local", choices=BACKENDS)
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
    mem = sub.add_parser("memory", help="Redis memory and keys before, after many jobs, and after their TTL")
    mem.add_argument("--jobs", type=int, default=10_000)
    mem.add_argument("--result-ttl", type=int, default=5)
    for p in (a, rec, ov, st, su, sc, sw, sh, dr, svc, mem):
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
        if args.fix == "both":
            result = bench_overhead_both(
                jobs=args.jobs, workers=args.workers, round_trip_jobs=args.round_trip_jobs, rounds=args.rounds
            )
        else:
            result = bench_overhead(
                jobs=args.jobs, workers=args.workers, fix=args.fix, round_trip_jobs=args.round_trip_jobs
            )
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
    elif args.what == "memory":
        result = bench_memory(jobs=args.jobs, result_ttl=args.result_ttl)
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
