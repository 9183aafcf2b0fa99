"""Nothing a run starts outlives it: after SIGINT, a pytest-timeout, a raising test, or a crash
(the next run reaps what a SIGKILLed run left). Processes are found by their run label."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from harness.processes import labels_of
from harness.stack import Stack, StackConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def labelled(prefix: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if labels_of(proc).get("HARNESS_RUN_ID", "").startswith(prefix) and proc.status() != "zombie":
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _test_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "test_victim.py"
    path.write_text(textwrap.dedent(body))
    return path


def _run_id_from(marker: Path) -> str:
    assert wait_for(marker.exists), "the victim never started its stack"
    return marker.read_text()


VICTIM = """
    import time
    import pytest
    from harness.stack import Stack, StackConfig

    @pytest.mark.timeout({timeout})
    def test_victim(tmp_path_factory):
        with Stack(StackConfig(workers=1)) as stack:
            open({marker!r}, "w").write(stack.run_id)
            {action}
"""


@pytest.mark.parametrize(
    "action,timeout,expect",
    [
        ("time.sleep(120)", 6, "timeout"),  # pytest-timeout raises in the test
        ("raise RuntimeError('boom')", 60, "raised"),
    ],
    ids=["pytest-timeout", "test-raised"],
)
def test_no_leftovers_after_a_failing_test(tmp_path, action, timeout, expect):
    marker = tmp_path / "run_id"
    victim = _test_file(tmp_path, VICTIM.format(timeout=timeout, marker=str(marker), action=action))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(victim), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert out.returncode == 1, out.stdout[-2000:]
    assert ("Timeout" in out.stdout) if expect == "timeout" else ("boom" in out.stdout)
    run_id = marker.read_text()
    assert not labelled(run_id)


def test_no_leftovers_after_sigint_mid_scenario(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--scenario", "kill-worker", "--report-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ids: list[str] = []

        def running() -> bool:  # a labelled process under our `harness run`, not anyone else's
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    label = labels_of(p).get("HARNESS_RUN_ID", "")
                except (psutil.Error, OSError):
                    continue
                if label.endswith(".kill-worker"):
                    ids.append(label)
                    return True
            return False

        assert wait_for(running, 90), "the scenario's stack never came up"
        time.sleep(2)  # mid-scenario: the workload runs
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_for(lambda: not labelled(ids[0]), 15), labelled(ids[0])


def test_next_run_reaps_what_a_crashed_run_left(tmp_path):
    marker = tmp_path / "run_id"
    victim = _test_file(tmp_path, VICTIM.format(timeout=120, marker=str(marker), action="time.sleep(120)"))
    crashed = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(victim), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_id = _run_id_from(marker)
    crashed.kill()  # SIGKILL: no teardown runs at all
    crashed.wait(timeout=10)
    assert labelled(run_id), "a SIGKILLed run should leave its processes (that is what reaping is for)"
    with Stack(StackConfig(workers=0)) as stack:  # any later run
        assert stack.redis_proc is not None
        assert wait_for(lambda: not labelled(run_id), 10), labelled(run_id)
