"""The fenced outcome commit, at the Redis level: a claim between the check and the EXEC wins.

The window the issue reproduced by hand (a horse frozen right after its fence check, the job
recovered meanwhile, the zombie's result written on SIGCONT) is opened here deterministically:
the claim runs inside the check, after the token was read and before RQ's EXEC.
"""

from __future__ import annotations

import pytest
from redis import Redis
from redis.exceptions import WatchError
from rq import Queue

from fixtures.round_trips import proxied_client
from rq_recovery.fencing import Fence, Superseded, fenced_client
from rq_recovery.keys import track_key
from rq_recovery.tracking import Tracker

pytestmark = pytest.mark.integration


class _ClaimedRightAfterTheCheck(Fence):
    """A sweeper claims the job just after this attempt checked its token."""

    def verify(self, token) -> None:
        super().verify(token)
        if not getattr(self, "_claimed", False):
            self._claimed = True
            assert self.tracker.claim(self.job.id, mode="owner", token=self.token, by="sweeper") == 1


@pytest.fixture
def started(raw_redis: Redis):
    raw_redis.flushdb()
    tracker = Tracker(raw_redis, "fence", liveness_ttl=5, max_attempts=3)
    job = Queue("fence", connection=raw_redis).enqueue("time.sleep", 1)
    assert tracker.start(job.id, token="t1", worker="w1", pid=1) == 1
    return tracker, job


def test_an_outcome_write_of_the_current_attempt_commits_and_ends_it(raw_redis, started):
    tracker, job = started
    fence = Fence(job, "t1", default_result_ttl=60)
    with fenced_client(raw_redis, fence).pipeline() as pipe:
        pipe.set("outcome", "mine")
        pipe.execute()
    assert fence.committed and raw_redis.get("outcome") == b"mine"
    assert tracker.read(job.id)["ended_token"] == "t1"


def test_a_claim_between_the_check_and_the_exec_aborts_the_write(raw_redis, started):
    tracker, job = started
    fence = _ClaimedRightAfterTheCheck(job, "t1", default_result_ttl=60)
    fence.tracker = tracker  # type: ignore[attr-defined]
    with pytest.raises(WatchError), fenced_client(raw_redis, fence).pipeline() as pipe:
        pipe.set("outcome", "zombie")
        pipe.execute()
    assert raw_redis.get("outcome") is None and not fence.committed
    assert raw_redis.hget(track_key(job.id), "state") == b"recovering"


def test_rqs_retry_loop_then_meets_the_fence_and_gives_up(raw_redis, started):
    """RQ's handle_job_success retries on WatchError: the next WATCH finds the token gone."""
    tracker, job = started
    tracker.claim(job.id, mode="owner", token="t1", by="sweeper")
    fence = Fence(job, "t1", default_result_ttl=60)
    with pytest.raises(Superseded), fenced_client(raw_redis, fence).pipeline() as pipe:
        pipe.watch(job.dependents_key)
    assert fence.superseded


def test_a_fenced_client_that_goes_away_leaves_the_workers_connections_open(raw_redis, started):
    """The fenced copy shares the worker's pool; collecting it must not close that pool (it did:
    every fenced write cost the horse a reconnect to Redis)."""
    import gc

    _tracker, job = started
    client = Redis.from_url(f"redis://127.0.0.1:{raw_redis.connection_pool.connection_kwargs['port']}")
    client.ping()

    def connections() -> int:
        return int(raw_redis.info("stats")["total_connections_received"])

    before = connections()
    for _ in range(3):
        fenced = fenced_client(client, Fence(job, "t1", default_result_ttl=60, ends=False))
        with fenced.pipeline() as pipe:
            pipe.get("x")
            pipe.execute()
        del fenced
        gc.collect()
        client.ping()
    assert connections() == before  # one connection all along, never reopened
    client.close()


def _finished(job):
    """The job as RQ leaves it just before its outcome transaction: status finished, in memory."""
    from rq.job import JobStatus

    job._status = JobStatus.FINISHED
    return job


def test_the_commit_records_the_attempts_facts_and_metrics_in_the_same_transaction(raw_redis, started):
    """Facts and metrics travel in RQ's own EXEC: a reader who sees the job finished sees them
    too (they used to follow, from the worker, after its horse had exited)."""
    import time

    from rq_recovery import metrics

    tracker, job = started
    fence = Fence(
        _finished(job),
        "t1",
        default_result_ttl=60,
        started=time.monotonic() - 0.3,
        peak_rss=lambda: 200 * 2**20,
        func="time.sleep",
    )
    with fenced_client(raw_redis, fence).pipeline() as pipe:
        pipe.set("outcome", "mine")
        pipe.execute()
    track = tracker.read(job.id)
    assert track["state"] == "finished" and track["cause"] == "ok" and track["ended_token"] == "t1"
    assert 0.3 <= float(track["duration_s"]) < 5 and track["peak_rss_bytes"] == str(200 * 2**20)
    wait = float(track["queue_wait_s"])
    assert 0 <= wait < 5
    assert fence.outcome == {
        "state": "finished",
        "cause": "ok",
        "duration_s": float(track["duration_s"]),
        "peak_rss_bytes": 200 * 2**20,
        "queue_wait_s": wait,
    }
    q = job.origin
    assert raw_redis.hget(metrics.counters_key(q), "jobs|finished|ok") == b"1"
    assert raw_redis.hget(metrics.hist_key(q, "job_duration_seconds"), "0.5") == b"1"
    assert raw_redis.hget(metrics.hist_key(q, "horse_peak_rss_bytes"), "268435456.0") == b"1"
    assert raw_redis.hget(metrics.hist_key(q, "job_queue_wait_seconds"), "sum") is not None
    assert raw_redis.lrange("shap:durations:time.sleep", 0, -1) == [track["duration_s"].encode()]
    assert 0 < raw_redis.ttl(track_key(job.id)) <= 60  # the job's result_ttl


def test_an_aborted_commit_records_no_facts_either(raw_redis, started):
    from rq_recovery import metrics

    tracker, job = started
    fence = _ClaimedRightAfterTheCheck(_finished(job), "t1", default_result_ttl=60, peak_rss=lambda: 2**20)
    fence.tracker = tracker  # type: ignore[attr-defined]
    with pytest.raises(WatchError), fenced_client(raw_redis, fence).pipeline() as pipe:
        pipe.set("outcome", "zombie")
        pipe.execute()
    assert "duration_s" not in tracker.read(job.id)
    assert not raw_redis.exists(metrics.counters_key(job.origin), metrics.hist_key(job.origin, "job_duration_seconds"))


def test_the_fence_check_costs_rqs_transaction_no_round_trip_of_its_own(raw_redis, started):
    """RQ's outcome write is WATCH, its reads, MULTI/EXEC: fenced, the token check goes with
    the WATCH, and the end of the attempt inside the EXEC (it was a WATCH, then a GET)."""
    _tracker, job = started
    with proxied_client(raw_redis, name="fence-rt") as via:
        sends = via.sends()
        fence = Fence(_finished(job), "t1", default_result_ttl=60)
        with fenced_client(via.client, fence).pipeline() as pipe:
            pipe.watch(job.dependents_key)
            pipe.multi()
            pipe.set("outcome", "mine")
            pipe.execute()
        assert fence.committed
        assert via.sends() - sends == 2  # WATCH + GET, then MULTI ... EXEC


@pytest.mark.parametrize("name", ["job_duration_seconds", "job_queue_wait_seconds", "horse_peak_rss_bytes"])
def test_scripts_bucket_observations_as_the_python_side_does(raw_redis, name):
    """The end script observes histograms in Lua; the sweepers in Python. One set of buckets."""
    from rq_recovery import metrics

    bounds = metrics.HISTOGRAMS[name][1]
    values = [0.0, bounds[-1] * 10, *bounds, *(b * 0.999 for b in bounds), *(b * 1.001 for b in bounds)]
    raw_redis.delete("lua", "py")
    observe = metrics.LUA_OBSERVE + "for i, v in ipairs(ARGV) do observe(KEYS[1], KEYS[2], tonumber(v), v) end"
    raw_redis.eval(observe, 2, "lua", name, *(repr(float(v)) for v in values))
    with raw_redis.pipeline(transaction=False) as pipe:
        for v in values:
            metrics._observe(pipe, "q", name, float(v))
        pipe.execute()
    py = raw_redis.hgetall(metrics.hist_key("q", name))
    lua = raw_redis.hgetall("lua")
    assert {k: v for k, v in lua.items() if k != b"sum"} == {k: v for k, v in py.items() if k != b"sum"}
    assert float(lua[b"sum"]) == pytest.approx(float(py[b"sum"]))
    raw_redis.delete("lua", metrics.hist_key("q", name))


def test_the_horses_start_is_one_round_trip_that_writes_only_while_current(raw_redis, started):
    """RQ marks the job started in a transaction of its own; fenced, the token check and those
    commands are one script (it was a WATCH, a GET, then the MULTI/EXEC)."""
    tracker, job = started
    with proxied_client(raw_redis, name="start-rt") as via:
        sends = via.sends()
        with fenced_client(via.client, Fence(job, "t1", default_result_ttl=60, ends=False)).pipeline() as pipe:
            pipe.hset("started", mapping={"by": "t1", "n": 1})
            pipe.expire("started", 60)
            assert pipe.execute() == [True, True]
        assert via.sends() - sends == 1
        assert raw_redis.hgetall("started") == {b"by": b"t1", b"n": b"1"} and raw_redis.ttl("started") > 0

        tracker.claim(job.id, mode="owner", token="t1", by="sweeper")  # the attempt is superseded
        late = Fence(job, "t1", default_result_ttl=60, ends=False)
        with pytest.raises(Superseded), fenced_client(via.client, late).pipeline() as pipe:
            pipe.hset("late", "by", "t1")
            pipe.execute()
        assert late.superseded and not raw_redis.exists("late")
