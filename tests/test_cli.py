"""The harness's person-facing commands, run as a person would (subprocesses, real stacks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_reproduce_stuck_job_tells_the_story_and_recovers():
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "reproduce", "stuck-job", "--wait", "4"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "status `started`" in text and "(dead)" in text
    assert "untracked; its worker has no Redis connection" in text  # diagnose-worker saw it
    assert "requeued" in text and "`finished`" in text and "attempt 2" in text
    assert "reproduced and recovered" in text


def test_up_serves_until_interrupted_and_leaves_nothing():
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "up", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines, api = [], None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and api is None:
            line = proc.stdout.readline()
            lines.append(line)
            if line.strip().startswith("API"):
                api = line.split()[-1]
        assert api, "".join(lines)
        assert requests.get(f"{api}/ping", timeout=5).json()["status"] == "ok"
        children = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(children) >= 3  # redis, api, worker (+ its horse when busy)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "removing every process" in rest
    assert not [p for p in children if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api}/ping", timeout=2)


def test_usage_errors_exit_2_with_a_message():
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "--fix", "bogus"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert out.returncode == 2 and "invalid choice" in out.stderr
