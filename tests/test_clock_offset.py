"""Workers whose clocks are off by +-5 s: through a Redis restart and a kill, nothing is requeued
that should not be, and recovery stays within its bound.

The recovery layer compares timestamps written by one host with another host's "now" (a lease
renewed before a Redis restart, a heartbeat's age, when a job was first seen between dequeue and
start). Here one worker's clock is shifted by a `sitecustomize` on its PYTHONPATH that moves
`time.time` and `time.time_ns` (the recovery layer's wall clock; RQ's own `datetime.now` is not
moved) for it and its work-horses; the other worker and the API run on the true clock. Leases
are shorter than the offset (LIVENESS_TTL 3 s), so a timestamp read on the wrong clock changes a
decision. What ran is counted from the harness's witness, never from the service.

(libfaketime would skew the whole process, but with 0.9.10 Python's `threading` waits hang under
it, and with FAKETIME_DONT_FAKE_MONOTONIC=1 `time.sleep` fails with EINVAL.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.backends.local.stack import Stack
from harness.targets.target import load_target
from harness.wait import eventually
from rq_recovery.keys import PREFIX

pytestmark = pytest.mark.integration

SETTINGS = {"LIVENESS_TTL": "3", "HEARTBEAT_INTERVAL": "1", "SWEEP_INTERVAL": "1"}
#: A killed worker's job: its connection vanishes (about a second), else its lease ends and a
#: sweep runs (LIVENESS_TTL + SWEEP_INTERVAL): the README's bound, here with these settings.
RECOVERY_BOUND_S = float(SETTINGS["LIVENESS_TTL"]) + float(SETTINGS["SWEEP_INTERVAL"])
REDIS_DOWN_S = 3.0  # as long as a lease: every lease runs out while Redis is down
LATE_RECONNECT_S = 2.3  # a worker back this long after Redis: inside the hold of one lease

SKEW = """
import os, time
_offset = float(os.environ["SKEW_CLOCK_S"])
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + _offset
time.time_ns = lambda: _time_ns() + int(_offset * 1e9)
"""


def skewed_clock(tmp_path: Path, offset_s: int) -> dict[str, str]:
    """The env of a worker whose wall clock is `offset_s` ahead (or behind) the true one."""
    site = tmp_path / "skew"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SKEW)
    return {"PYTHONPATH": str(site), "SKEW_CLOCK_S": str(offset_s)}


def wait_started(
    stack: Stack, job_id: str, *, by: str | None = None, timeout: float = 30, interval: float = 0.05
) -> dict:
    """The job's view once it runs (on worker `by`, when given)."""

    def running() -> dict | None:
        view = stack.job(job_id)
        return view if view["status"] == "started" and by in (None, view["worker"]) else None

    view = eventually(running, timeout=timeout, interval=interval)
    assert view is not None, f"{job_id} never started{f' on {by}' if by else ''}: {stack.job(job_id)}"
    return view


def beaten_again(stack: Stack, job_ids: tuple[str, ...], *, timeout: float = 15) -> None:
    """Wait until each job's worker has renewed its lease once more (its track's heartbeat_at moved)."""

    def beat(job_id: str) -> float:
        return float(stack.redis.hget(f"{PREFIX}track:{job_id}", "heartbeat_at") or 0)

    before = {j: beat(j) for j in job_ids}
    assert eventually(lambda: all(beat(j) > before[j] for j in job_ids), timeout=timeout), before


def restart_redis_late_in_a_second(stack: Stack, *, down_s: float) -> None:
    """Restart Redis so that it starts at about .9 of a wall-clock second: its whole-second
    `uptime_in_seconds` then runs almost a second ahead of its real uptime, the worst case for
    the hold (this failed in CI by chance before it was made the rule here)."""
    stack.kill_redis()
    time.sleep(down_s)
    time.sleep((0.9 - time.time() % 1) % 1)
    stack.start_redis()


def executions(stack: Stack, job_id: str) -> int:
    assert stack.witness is not None
    return len(stack.witness.executions().get(job_id, []))


def test_the_skew_moves_a_python_process_clock(tmp_path):
    """The premise: a Python started with that env (as the worker is) reads the shifted time."""
    for offset_s in (+5, -5):
        env = {**os.environ, **skewed_clock(tmp_path, offset_s)}
        out = subprocess.run(
            [sys.executable, "-c", "import time; print(time.time())"], env=env, capture_output=True, text=True
        )
        assert abs(float(out.stdout) - time.time() - offset_s) < 1, out


@pytest.mark.timeout(240)
@pytest.mark.parametrize("offset_s", [+5, -5])
def test_a_skewed_worker_through_redis_restart_and_kill(stack_factory, tmp_path, offset_s):
    stack = stack_factory(
        workers=0, redis_aof=True, worker_redis_via_proxy=True, target=load_target("shap-service"), env=SETTINGS
    )
    skewed = stack.add_worker(env=skewed_clock(tmp_path, offset_s))
    t_submit = time.monotonic()
    on_skewed = stack.submit(chaos={"sleep_s": 30})["job_id"]
    assert wait_started(stack, on_skewed, interval=0.01)["worker"] == skewed.name
    waited_s = time.monotonic() - t_submit  # what the harness saw; the service says queue_wait_s
    honest = stack.add_worker()
    on_honest = stack.submit(chaos={"sleep_s": 30})["job_id"]
    assert wait_started(stack, on_honest)["worker"] == honest.name

    # Redis restarts and is down as long as a lease, so every lease runs out meanwhile. One worker
    # stays cut off a while longer (it reconnects later than the others, as happens): its job
    # must be held for it, by sweepers on the other clock, until it beats again.
    for late in (skewed, honest):
        beaten_again(stack, (on_skewed, on_honest))  # every lease renewed since the last restart
        assert late.proxy is not None
        late.proxy.cut()
        restart_redis_late_in_a_second(stack, down_s=REDIS_DOWN_S)
        time.sleep(LATE_RECONNECT_S)
        late.proxy.restore()
    for job_id in (on_skewed, on_honest):
        assert stack.wait_terminal(job_id, timeout=60)["status"] == "finished"
    assert {j: executions(stack, j) for j in (on_skewed, on_honest)} == {on_skewed: 1, on_honest: 1}
    wait_s = stack.wait_settled(on_skewed)["facts"]["queue_wait_s"]
    assert wait_s <= waited_s + 0.5, f"queue_wait_s {wait_s} s, but the job ran {waited_s:.2f} s after its POST"

    # Kills, each judged by a worker on the other clock (and the API, on the true one). A long
    # job occupies one worker, so the next job goes to the other, which is killed mid-job; then a
    # new worker with the survivor's clock takes the recovered job and is killed in turn.
    blocker = stack.submit(chaos={"sleep_s": 60})["job_id"]
    survivor = stack.worker(wait_started(stack, blocker)["worker"])
    job_id = stack.submit(chaos={"sleep_s": 60})["job_id"]
    victim = stack.worker(wait_started(stack, job_id)["worker"])
    for round_ in (1, 2):
        t_kill = time.monotonic()
        victim.process.signal_tree(signal.SIGKILL)
        recovered = eventually(lambda: stack.job(job_id)["status"] != "started", timeout=30, interval=0.05)
        recovery_s = time.monotonic() - t_kill
        assert recovered, stack.job(job_id)
        print(f"offset {offset_s:+d} s, kill {round_}: recovered by {survivor.name} after {recovery_s:.2f} s")
        assert recovery_s < RECOVERY_BOUND_S, f"kill {round_}: recovered {recovery_s:.1f} s after the kill"
        if round_ == 1:
            victim = stack.add_worker(env=None if survivor is skewed else skewed_clock(tmp_path, offset_s))
            wait_started(stack, job_id, by=victim.name)
    assert executions(stack, blocker) == 1  # the survivor's job was never taken from it
