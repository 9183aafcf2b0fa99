"""Every key the fix writes for a job has an end: it goes with the job's result or failure TTL.

Real Redis, a real RecoveringWorker (burst), jobs that finish, fail, and keep no result
(result_ttl=0). After the TTLs nothing per job is left: no track, lease, fence or enqueue guard,
and the running / active sets hold none of them. `harness bench memory` measures the same at
10,000 jobs (used_memory and key count back to the baseline, plus a few per-queue keys).
"""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue

from harness.wait import eventually
from rq_recovery.keys import PREFIX, active_key, running_key
from rq_recovery.tracking import Tracker
from rq_recovery.worker_process_fix import RecoveringWorker

pytestmark = pytest.mark.integration

VALUE = "harness.targets.probes.expected_value"
PER_JOB = ("track:", "live:", "fence:", "enqueued:")


def test_the_bookkeeping_of_every_job_ends_with_its_ttl(redis_only, monkeypatch):
    monkeypatch.setenv("JOB_ALLOWLIST", "harness.targets.probes.*")
    conn = Redis.from_url(redis_only.redis_url)
    conn.flushdb()
    tracker = Tracker(conn, "ttl-q", liveness_ttl=2, max_attempts=2, failure_ttl=2)
    ids = []
    for i, result_ttl in enumerate([2] * 10 + [0] * 5):
        job = tracker.enqueue(
            VALUE, kwargs={"seed": f"s{i}", "rounds": 1}, job_timeout=30, result_ttl=result_ttl, guard_ttl=2
        )
        ids.append(job.id)
    for _ in range(5):  # these fail: rounds is not a number
        ids.append(
            tracker.enqueue(VALUE, kwargs={"seed": "f", "rounds": "x"}, job_timeout=30, result_ttl=2, guard_ttl=2).id
        )
    RecoveringWorker([Queue("ttl-q", connection=conn)], connection=conn, name="ttl-w").work(burst=True)

    def per_job() -> list[str]:
        keys = (k.decode() for k in conn.scan_iter(f"{PREFIX}*"))
        return [k for k in keys if k.startswith(tuple(PREFIX + p for p in PER_JOB))]

    assert per_job(), "the jobs left no bookkeeping at all: the test would prove nothing"
    eventually(lambda: not per_job(), timeout=10)  # the TTLs are 2 s
    assert per_job() == []
    assert conn.zcard(running_key()) == 0 and conn.zcard(active_key("ttl-q")) == 0
    assert not any(conn.exists(f"rq:job:{j}") for j in ids)  # RQ's own TTLs, for comparison
    conn.close()


def test_a_job_that_vanished_under_its_recovery_leaves_no_track(redis_only):
    """A job gone from Redis (result_ttl=0 and a worker that died as it finished, an operator's
    delete) while a sweeper recovers it: its track must not stay `recovering` for ever."""
    conn = Redis.from_url(redis_only.redis_url)
    conn.flushdb()
    tracker = Tracker(conn, "gone-q", liveness_ttl=1, max_attempts=2)
    job = tracker.enqueue(VALUE, kwargs={"seed": "g", "rounds": 1}, job_timeout=30, result_ttl=0, guard_ttl=2)
    conn.lpop("rq:queue:gone-q")
    assert tracker.start(job.id, token="t1", worker="w-dead", pid=1) == 1
    conn.delete(f"rq:job:{job.id}")  # RQ dropped it (result_ttl=0) just before its worker died
    conn.delete(f"{PREFIX}live:{job.id}")  # and the lease ran out
    track = f"{PREFIX}track:{job.id}"

    def swept() -> bool:  # (a Redis up for less than a lease holds its judgement that long)
        report = tracker.sweep(by="test", connection_check=False)
        assert report.requeued == 0 and report.failed == 0, report
        return conn.hget(track, "state") != b"running"

    assert eventually(swept, timeout=5), conn.hgetall(track)
    assert not conn.exists(track) or conn.ttl(track) > 0, conn.hgetall(track)
    assert conn.zcard(running_key()) == 0 and conn.zcard(active_key("gone-q")) == 0
    conn.close()
