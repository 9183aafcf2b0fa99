"""A Redis that comes back empty is detected and reported, not mistaken for late completions.

Redis runs without persistence and is SIGKILLed and started again while a job runs: everything
it held is gone. The worker's horse then finishes and its outcome is refused (there is nothing
left to write it to); before, that counted as a late completion and nothing said the data was
lost. Now the loss is a log line (`redis_data_lost`, from every sweeper that knew the old data;
`outcome_lost` for the refused outcome), a counter on /metrics and a finding of diagnose-worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from harness.wait import eventually

pytestmark = pytest.mark.integration


def _events(stack, name: str) -> list[dict]:
    out = []
    for log in stack.log_dir.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if f'"event": "{name}"' in line:
                out.append(json.loads(line[line.index("{") :]))
    return out


def _metric(stack, name: str) -> float | None:
    for line in requests.get(f"{stack.api_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_redis_that_restarted_empty_is_reported_not_counted_as_late(stack_factory):
    stack = stack_factory(workers=1, env={"SWEEP_INTERVAL": "0.5"})
    worker = stack.workers[0]
    job_id = stack.submit(chaos={"sleep_s": 5})["job_id"]
    assert eventually(lambda: stack.job(job_id)["status"] == "started", timeout=30)
    time.sleep(1.5)  # every sweeper has seen the data at least once
    stack.restart_redis(down_s=0.5)  # no AOF: it comes back empty

    assert eventually(lambda: _events(stack, "outcome_lost"), timeout=30), "the horse's refused outcome went unsaid"
    lost = _events(stack, "redis_data_lost")
    assert {e["by"] for e in lost} == {"api", worker.name}, lost  # every sweeper that knew the data
    assert sum(e["recorded"] for e in lost) == 1, lost  # counted once
    assert [e["job_id"] for e in _events(stack, "outcome_lost")] == [job_id]
    assert _events(stack, "late_completion_rejected") == []
    assert requests.get(f"{stack.api_url}/jobs/{job_id}", timeout=10).status_code == 404  # gone, as Redis lost it

    assert _metric(stack, "shap_redis_data_losses_total") == 1
    assert _metric(stack, "shap_late_completions_rejected_total") in (None, 0.0)

    diag = subprocess.run(
        [sys.executable, "-m", "rq_recovery.diagnose_worker", "--redis-url", stack.redis_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(diag.stdout)
    assert report["redis_data_loss"]["count"] == 1, report
    assert any("Redis lost its data" in r for r in report["recommendations"]), report["recommendations"]
    text = subprocess.run(
        [sys.executable, "-m", "rq_recovery.diagnose_worker", "--redis-url", stack.redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "REDIS DATA LOSS: 1 time(s)" in text.stdout, text.stdout


def test_a_restart_with_persistence_is_not_a_loss(stack_factory):
    stack = stack_factory(workers=1, redis_aof=True, env={"SWEEP_INTERVAL": "0.5"})
    job_id = stack.submit(chaos={"sleep_s": 3})["job_id"]
    assert eventually(lambda: stack.job(job_id)["status"] == "started", timeout=30)
    time.sleep(1.5)
    stack.restart_redis(down_s=0.5)
    assert stack.wait_terminal(job_id, timeout=60)["status"] == "finished"
    assert _events(stack, "redis_data_lost") == []
    assert _metric(stack, "shap_redis_data_losses_total") == 0
