"""Nothing a run starts outlives it: after SIGINT, a pytest-timeout, a raising test, or a crash
(the next run reaps what a SIGKILLed run left). Processes are found by their run label; their
listening ports must be closed and the run's temp dir removed. (Containers, networks and
volumes: tests/test_docker_stack.py and tests/test_docker_scenarios.py.)"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from harness.backends.config import StackConfig
from harness.backends.local.processes import labels_of
from harness.backends.local.stack import Stack
from harness.wait import eventually

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


def listening_ports(pids: list[int]) -> set[int]:
    ports = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.Error, OSError):
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN}
    return ports


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def temp_dirs(run_id: str) -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), f"harness-{run_id}*"))


def assert_nothing_left(run_id: str, ports: set[int]) -> None:
    assert wait_for(lambda: not labelled(run_id), 15), labelled(run_id)
    assert ports, "the run's listening ports were never seen"
    assert not [p for p in ports if port_open(p)], ports
    assert not temp_dirs(run_id)


def wait_for(predicate, timeout: float = 60.0) -> bool:
    return bool(eventually(predicate, timeout=timeout, interval=0.2))


def _test_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "test_victim.py"
    path.write_text(textwrap.dedent(body))
    return path


def _run_from(marker: Path) -> dict:
    assert wait_for(lambda: marker.exists() and marker.read_text().endswith("}")), "the victim never started"
    return json.loads(marker.read_text())


VICTIM = """
    import json, time
    import pytest
    from harness.backends.local.stack import Stack
    from harness.backends.config import StackConfig

    @pytest.mark.timeout({timeout})
    def test_victim(tmp_path_factory):
        with Stack(StackConfig(workers=1)) as stack:  # logs in a temp dir of its own
            ports = [stack.redis_port, stack.api_port]
            run = {{"run_id": stack.run_id, "log_dir": str(stack.log_dir), "ports": ports}}
            open({marker!r}, "w").write(json.dumps(run))
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
    run = _run_from(marker)
    assert run["log_dir"] and temp_dirs(run["run_id"]) == [] and run["log_dir"].startswith(tempfile.gettempdir())
    assert_nothing_left(run["run_id"], set(run["ports"]))


def test_no_leftovers_after_sigint_mid_scenario(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--scenario", "kill-worker", "--report-dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ids: list[str] = []

        def stack_pids() -> list[int]:  # labelled processes under our `harness run`, not anyone else's
            pids = []
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    label = labels_of(p).get("HARNESS_RUN_ID", "")
                except (psutil.Error, OSError):
                    continue
                if label.endswith(".kill-worker"):
                    ids.append(label)
                    pids.append(p.pid)
            return pids

        assert wait_for(lambda: len(stack_pids()) >= 3, 90), "the scenario's stack never came up"
        time.sleep(2)  # mid-scenario: the workload runs
        ports = listening_ports(stack_pids())  # Redis and the API (and any proxy)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert_nothing_left(ids[0], ports)


def test_next_run_reaps_what_a_crashed_run_left(tmp_path):
    marker = tmp_path / "run_id"
    victim = _test_file(tmp_path, VICTIM.format(timeout=120, marker=str(marker), action="time.sleep(120)"))
    crashed = subprocess.Popen(
        [sys.executable, "-m", "pytest", str(victim), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run_id = _run_from(marker)["run_id"]
    crashed.kill()  # SIGKILL: no teardown runs at all
    crashed.wait(timeout=10)
    assert labelled(run_id), "a SIGKILLed run should leave its processes (that is what reaping is for)"
    with Stack(StackConfig(workers=0)) as stack:  # any later run
        assert stack.redis_proc is not None
        assert wait_for(lambda: not labelled(run_id), 10), labelled(run_id)
