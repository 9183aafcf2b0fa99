"""`harness bench all --quick` runs end to end and prints / writes well-formed figures.

The numbers are not asserted (a loaded 2-core machine is noisy); their shape and sanity are.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]


def test_quick_bench_is_well_formed(tmp_path, harness_cli):
    out = tmp_path / "bench.json"
    run = harness_cli("bench", "all", "--quick", "--out", str(out), timeout=380)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "throughput on / off" in run.stdout and "sweep over" in run.stdout
    res = json.loads(out.read_text())
    assert res["quick"] is True and res["machine"]["cores"] >= 1
    for name in ("kill-worker", "kill-horse", "pause-worker"):
        r = res["recovery"][name]
        assert r["requeue_s"]["capped"] == 0 and 0 < r["requeue_s"]["p50"] <= r["requeue_s"]["max"]
        assert all(t["status"] == "finished" for t in r["trials"])
    for name in ("kill-worker-stock", "pause-worker-stock"):  # stock RQ leaves the job started
        stock = res["recovery"][name]
        assert stock["requeue_s"]["capped"] == 1 and stock["requeue_s"]["p50"].startswith(">"), stock
    horse = res["recovery"]["kill-horse-stock"]  # stock RQ fails the job of a dead horse at once
    assert [t["status"] for t in horse["trials"]] == ["failed"], horse
    assert res["overhead"]["on"]["jobs_per_s"] > 0 and res["overhead"]["off"]["jobs_per_s"] > 0
    for side in ("on", "off"):  # every role spent CPU on the jobs; the horses most of the workers'
        cpu = res["overhead"][side]["cpu_ms_per_job"]
        assert set(cpu) == {"worker_main", "worker_threads", "horses", "redis"}, cpu
        assert cpu["horses"] > cpu["worker_main"] > 0 and cpu["redis"] > 0, cpu
    assert "CPU ms per job: fix" in run.stdout
    # the overhead ran once both stock stacks had struck (well before the 120 s give-up)
    assert 0 < res["overhead"]["waited_for_stock_faults_s"] < 120, res["overhead"]
    assert isinstance(res["overhead"]["stock_trials_ran_throughout"], bool)
    assert res["overhead"]["then_waited_for_quiet_polls_s"] == 0, res["overhead"]  # 100 s in a full run
    assert res["scale"]["terminal_pct"] == 100.0 and res["scale"]["lost"] == 0 and res["scale"]["kills"] >= 1
    assert res["sweep"]["skipped_live"] == res["sweep"]["entries"] and res["sweep"]["sweep_ms"]["p50"] > 0
    assert res["shap"]["horse_peak_rss_mb"] > 50 and res["shap"]["worker_rss_at_rest_mb"] > 50
    assert res["service"]["worker_start_to_first_job_finished_s"] > 0
    assert res["stack"]["ready_s"]["p50"] > 0
    docker = res["stack_docker"]  # a figure where an engine and the images exist, else why not
    assert docker["ready_s"]["p50"] > 0 if "ready_s" in docker else "docker" in docker["skipped"]
    assert res["suite"]["passed"] is True and res["suite"]["seconds"] > 0, res["suite"]
    ratios = res["ratios"]
    assert ratios["lease_limit_s"] == 8.0  # production LIVENESS_TTL 6 + SWEEP_INTERVAL 2
    assert 0 < ratios["kill-worker requeue p99 / lease limit"] < 10
    assert str(ratios["stock / fix, kill-worker terminal p50"]).startswith(">")  # stock capped at 10 s
    assert str(ratios["stock / fix, pause-worker terminal p50"]).startswith(">")
    assert "suite wall time" in run.stdout and "stock / fix" in run.stdout
