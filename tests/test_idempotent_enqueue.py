"""The enqueue is one atomic step that a retried request cannot repeat (issue: a slow EXEC reply).

The API's Redis client retries a command whose reply timed out (redis-py `Retry`, 2 s socket
timeout). Through a loopback proxy that holds the enqueue's reply for 2.5 s, a plain MULTI/EXEC
enqueue ran twice: the job id was pushed twice and its track reset. Real Redis, the harness's own
TCP proxy, the API's own client settings; counts read straight from Redis.
"""

from __future__ import annotations

import pytest
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from harness.nemesis.proxy import TcpProxy
from harness.targets.witness import Witness
from rq_recovery.keys import enqueue_guard_key, track_key
from rq_recovery.tracking import ENQUEUE_RETRY_GUARD_S, Tracker
from rq_recovery.worker_process_fix import RecoveringWorker

pytestmark = pytest.mark.integration

JOB = "shap_service.jobs.analyze"
PROBE = "harness.targets.probes.run_probe"


def _api_client(port: int) -> Redis:
    """The API's own settings (shap_service.api.create_app): one quick retry, 2 s socket timeout."""
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.2), 1)
    return Redis(host="127.0.0.1", port=port, socket_timeout=2.0, socket_connect_timeout=1.0, retry=retry)


@pytest.fixture
def via_proxy(redis_only):
    direct = Redis.from_url(redis_only.redis_url)
    direct.flushdb()
    with TcpProxy("127.0.0.1", redis_only.redis_port, name="slow-exec") as proxy:
        client = _api_client(proxy.port)
        yield proxy, client, direct
        client.close()
    direct.close()


def test_a_slow_exec_reply_does_not_enqueue_twice_and_the_job_runs_once(via_proxy, tmp_path):
    proxy, client, direct = via_proxy
    tracker = Tracker(client, "q1", liveness_ttl=2, max_attempts=3, serializer=JSONSerializer)
    witness = Witness(tmp_path, run_id="idem").start()
    probe = {"kind": "compute", "params": {"seed": "s", "rounds": 10}, "witness": witness.url, "probe_id": "p"}
    # The request that enqueues (a MULTI/EXEC, or a script) names the queue: its reply is held
    # longer than the client's 2 s socket timeout, so the client sends it again.
    proxy.hold_next_reply(b"rq:queue:q1", 2.5)
    try:
        job = tracker.enqueue(PROBE, kwargs=probe, job_timeout=60, result_ttl=60)
    except Exception:  # noqa: BLE001 - a client may also give up; what matters is what Redis holds
        job = None
    assert proxy.stats.held == 1
    ids = [i.decode() for i in direct.lrange("rq:queue:q1", 0, -1)]
    assert len(ids) == 1, f"the job was pushed {len(ids)} times: {ids}"
    if job is not None:
        assert ids == [job.id]
    track = {k.decode(): v.decode() for k, v in direct.hgetall(track_key(ids[0])).items()}
    assert track["state"] == "queued" and track["attempt"] == "0"
    try:  # a worker with the fix drains the queue: the job runs once, by the witness's count
        queue = Queue("q1", connection=direct, serializer=JSONSerializer)
        RecoveringWorker([queue], connection=direct, serializer=JSONSerializer).work(burst=True)
        done = Job.fetch(ids[0], connection=direct, serializer=JSONSerializer)
        assert done.get_status() == "finished", done.latest_result().exc_string
        assert [len(runs) for runs in witness.executions().values()] == [1]
    finally:
        witness.stop()


def test_the_same_job_id_enqueues_once(redis_only):
    conn = Redis.from_url(redis_only.redis_url)
    conn.flushdb()
    tracker = Tracker(conn, "q2", liveness_ttl=2, max_attempts=3, serializer=JSONSerializer)
    kwargs = {"model_name": "diabetes", "rows": [[0.0] * 10]}
    first = tracker.enqueue(JOB, kwargs=kwargs, job_timeout=60, result_ttl=60, job_id="k-1")
    conn.hset(track_key("k-1"), mapping={"state": "running", "attempt": 1})  # it has started since
    again = tracker.enqueue(JOB, kwargs=kwargs, job_timeout=60, result_ttl=60, job_id="k-1")
    assert first.id == again.id == "k-1"
    assert conn.lrange("rq:queue:q2", 0, -1) == [b"k-1"]
    assert conn.hget(track_key("k-1"), "state") == b"running"  # not reset to queued
    conn.close()


def test_a_generated_job_id_keeps_its_guard_only_for_the_retry_window(redis_only):
    """An enqueue without an Idempotency-Key needs its guard only while a retry may come (seconds),
    not for a day: the bookkeeping of a busy service must not outlive its jobs."""
    conn = Redis.from_url(redis_only.redis_url)
    tracker = Tracker(conn, "q3", liveness_ttl=2, max_attempts=3, serializer=JSONSerializer)
    job = tracker.enqueue(JOB, kwargs={"model_name": "diabetes", "rows": [[0.0] * 10]}, job_timeout=60, result_ttl=5)
    keyed = tracker.enqueue(JOB, kwargs={}, job_timeout=60, result_ttl=5, job_id="keyed-1", guard_ttl=86400)
    assert 0 < conn.ttl(enqueue_guard_key(job.id)) <= ENQUEUE_RETRY_GUARD_S
    assert conn.ttl(enqueue_guard_key(keyed.id)) > 86000
    conn.close()
