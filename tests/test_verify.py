"""harness verify against stacks the harness started: green when healthy, red and specific when not."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from harness.cli.verify import main
from harness.defaults import FAST_LEASES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parent.parent


def run(stack, tmp_path, *extra) -> tuple[int, dict]:
    rc = main(
        [
            "--api-url",
            stack.api_url,
            "--redis-url",
            stack.redis_url,
            "--queue",
            stack.config.queue,
            "--render-yaml",
            str(REPO / "render.yaml"),
            "--report-dir",
            str(tmp_path),
            *extra,
        ]
    )
    return rc, json.loads((tmp_path / "verify.json").read_text())


def test_healthy_stack_verifies(stack_factory, tmp_path):
    stack = stack_factory(workers=1, env=FAST_LEASES)
    rc, report = run(stack, tmp_path, f"--admin-token={stack.admin_token}")  # a secret may start with "-"
    checks = {c["name"]: c for c in report["checks"]}
    assert rc == 0 and report["ok"], report
    assert [checks[n]["ok"] for n in ("ping", "redis_ping", "round_trip", "workers", "no_stuck", "render_yaml")] == [
        True
    ] * 6
    assert checks["workers"]["data"]["workers"][0]["fix"] is True


def test_stock_worker_with_a_stuck_job_fails_verification(stack_factory, tmp_path):
    stack = stack_factory(workers=2, fix="none", env=FAST_LEASES)
    job_id = stack.submit(chaos={"sleep_s": 30})["job_id"]
    view = stack.wait_status(job_id, ("started",), timeout=30)
    stack.worker(view["worker"]).process.signal_tree(signal.SIGKILL)
    time.sleep(0.5)
    rc, report = run(stack, tmp_path, "--timeout", "20")
    checks = {c["name"]: c for c in report["checks"]}
    assert rc == 1 and not report["ok"]
    assert checks["no_stuck"]["ok"] is False
    assert [s["job_id"] for s in checks["no_stuck"]["data"]["stuck"]] == [job_id]
    assert checks["workers"]["ok"] is False and "none runs the recovery layer" in checks["workers"]["detail"]
    assert checks["redis_ping"]["ok"] is None  # skipped without a token


def test_api_down_fails_ping_and_round_trip(stack_factory, tmp_path):
    stack = stack_factory(workers=1, env=FAST_LEASES)
    stack.api_proc.stop()
    rc, report = run(stack, tmp_path, "--timeout", "5")
    checks = {c["name"]: c for c in report["checks"]}
    assert rc == 1
    assert checks["ping"]["ok"] is False and "unreachable" in checks["ping"]["detail"]
    assert checks["round_trip"]["ok"] is False
