"""/metrics against a real stack: the counters match what happened to the jobs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.defaults import FAST_LEASES
from harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, -0.002, 0.02, -0.017]


def scrape(stack) -> dict[tuple[str, tuple], float]:
    r = requests.get(f"{stack.api_url}/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_started(stack, job_id, *, attempt=1, timeout=30):
    def started() -> dict | None:
        view = stack.job(job_id)
        return view if view["status"] == "started" and view["attempts"] >= attempt else None

    view = eventually(started, timeout=timeout, interval=0.02)
    if view is None:
        raise AssertionError(f"{job_id} never started: {stack.job(job_id)}")
    return view


def test_metrics_count_what_happened(stack_factory):
    env = {
        **FAST_LEASES,
        "MEMORY_LIMIT_MB": "400",
        "MEMORY_WARN_SHARE": "0.5",
        "LONG_RUNNING_MIN_S": "1",
        "LONG_RUNNING_FACTOR": "3",
    }
    stack = stack_factory(workers=2, env=env)
    q = stack.config.queue
    light = [stack.submit([ROW])["job_id"] for _ in range(6)]
    for job_id in light:
        stack.wait_terminal(job_id)

    boom = stack.submit([ROW], chaos={"raise": "boom"})["job_id"]
    assert stack.wait_terminal(boom)["status"] == "failed"

    # A worker killed mid-job: one requeue (abandoned), then finished elsewhere.
    killed = stack.submit([ROW], chaos={"sleep_s": 2})["job_id"]
    victim = wait_started(stack, killed)["worker"]
    stack.worker(victim).process.signal_tree(signal.SIGKILL)
    stack.add_worker(wait=False)
    assert stack.wait_terminal(killed, timeout=30)["status"] == "finished"

    # Its horse killed (what the kernel OOM killer does): one requeue (killed), then finished.
    horse = stack.submit([ROW], chaos={"sleep_s": 2})["job_id"]
    running_on = stack.worker(wait_started(stack, horse)["worker"])
    for pid in running_on.horse_pids():
        subprocess.run(["kill", "-9", str(pid)], check=False)
    assert stack.wait_terminal(horse, timeout=30)["status"] == "finished"

    # Memory-hungry (250 MB > half of the 400 MB limit) and long-running (3 s >> light p95).
    hungry = stack.submit([ROW], chaos={"alloc_mb": 250, "hold_s": 2.5})["job_id"]
    slow = stack.submit([ROW], chaos={"sleep_s": 3})["job_id"]
    wait_started(stack, slow)
    eventually(lambda: value(scrape(stack), "shap_jobs_long_running", queue=q) >= 1, timeout=10, interval=0.2)
    assert value(scrape(stack), "shap_jobs_long_running", queue=q) == 1
    for job_id in (hungry, slow):
        assert stack.wait_terminal(job_id, timeout=30)["status"] == "finished"

    views = {j: stack.wait_settled(j) for j in [*light, boom, killed, horse, hungry, slow]}
    finished = sum(v["status"] == "finished" for v in views.values())
    assert finished == 10
    assert views[slow]["facts"]["long_running"] is True
    assert views[hungry]["facts"]["memory_warning"] > 200 * 2**20
    assert views[hungry]["facts"]["peak_rss_bytes"] > 250 * 2**20
    assert views[light[0]]["facts"]["queue_wait_s"] >= 0 and views[light[0]]["facts"]["cause"] == "ok"
    assert views[boom]["facts"]["cause"] == "exception" and views[boom]["facts"]["error_type"] == "RuntimeError"

    m = scrape(stack)
    assert value(m, "shap_jobs_total", queue=q, outcome="finished", cause="ok") == finished
    assert value(m, "shap_jobs_total", queue=q, outcome="failed", cause="exception") == 1
    assert value(m, "shap_recoveries_total", queue=q, action="requeued", cause="abandoned") == 1
    assert value(m, "shap_recoveries_total", queue=q, action="requeued", cause="killed") == 1
    assert value(m, "shap_recovery_latency_seconds_count", queue=q) == 2
    assert value(m, "shap_job_duration_seconds_count", queue=q) == finished + 1 + 1  # + boom + the killed horse
    assert value(m, "shap_job_queue_wait_seconds_count", queue=q) == finished + 1  # once per job, at its end
    assert value(m, "shap_horse_peak_rss_bytes_count", queue=q) >= finished
    assert value(m, "shap_queue_jobs", queue=q, registry="finished") == finished
    assert value(m, "shap_queue_jobs", queue=q, registry="failed") == 1
    assert value(m, "shap_workers", queue=q) == 2
    assert value(m, "shap_late_completions_rejected_total", queue=q) == 0
    assert value(m, "shap_redis_roundtrip_seconds") > 0
    assert value(m, "shap_jobs_long_running", queue=q) == 0  # unflagged when it ended

    diag = subprocess.run(
        [sys.executable, "-m", "rq_recovery.diagnose_worker", "--redis-url", stack.redis_url, "--queue", q, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    report = json.loads(diag.stdout)
    assert report["memory"]["memory_warnings"] == 1
    assert report["memory"]["recommended_render_plan"] == "starter"  # ~250 MB x 1.25 < 512 MB
    assert any("memory limit" in r for r in report["recommendations"])


_TREE = """
import subprocess, sys, threading, time
ballast = bytearray(40 * 2**20)  # touched: resident
spawned = threading.Event()
def spawn():  # from a second, living thread: the kernel lists its child under that thread's task
    subprocess.Popen([sys.executable, "-c", "b = bytearray(30 * 2**20); import time; time.sleep(60)"])
    spawned.set()
    time.sleep(60)
threading.Thread(target=spawn, daemon=True).start()
spawned.wait()
print("ready", flush=True)
time.sleep(60)
"""


def test_tree_rss_counts_a_process_and_every_descendant():
    import psutil

    from rq_recovery.metrics import tree_rss_bytes

    proc = subprocess.Popen([sys.executable, "-c", _TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        tree = psutil.Process(proc.pid)
        grown = lambda: len(tree.children(recursive=True)) == 1 and tree.children()[0].memory_info().rss > 30e6  # noqa: E731
        assert eventually(grown, timeout=20)
        expected = tree.memory_info().rss + sum(c.memory_info().rss for c in tree.children(recursive=True))
        got = tree_rss_bytes(proc.pid)
        assert got > 70 * 2**20 and abs(got - expected) < 0.05 * expected, (got, expected)
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()
    with pytest.raises(ProcessLookupError):
        tree_rss_bytes(proc.pid)
