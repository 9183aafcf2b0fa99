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

from rq_recovery.fencing import Fence, Superseded, fenced_client
from rq_recovery.keys import track_key
from rq_recovery.tracking import Tracker

pytestmark = pytest.mark.integration


class _ClaimedRightAfterTheCheck(Fence):
    """A sweeper claims the job just after this attempt checked its token."""

    def check(self, pipe) -> None:
        super().check(pipe)
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
