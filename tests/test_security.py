"""Security properties against real processes: no pickle from Redis, Redis with a password."""

from __future__ import annotations

import os

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError
from rq import Queue

from harness.wait import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


class _Planted:
    """Unpickling this runs a shell command: what an attacker with Redis access would plant."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_worker_refuses_a_pickled_job_without_executing_anything(stack_factory, tmp_path):
    stack = stack_factory(workers=1)
    marker = tmp_path / "executed"
    conn = Redis.from_url(stack.redis_url)
    # RQ's default serializer is pickle: this job's data runs `touch` if anyone unpickles it.
    planted = Queue(stack.config.queue, connection=conn).enqueue(
        "shap_service.jobs.analyze", kwargs={"payload": _Planted(str(marker))}
    )
    assert conn.hget(f"rq:job:{planted.id}", "data").startswith(b"x\x9c")  # zlib-compressed pickle
    eventually(lambda: conn.hget(f"rq:job:{planted.id}", "status") == b"failed", timeout=30, interval=0.1)
    assert conn.hget(f"rq:job:{planted.id}", "status") == b"failed"
    assert not marker.exists(), "the worker unpickled data from Redis"
    # The worker survived it and still serves real requests.
    assert stack.workers[0].process.alive()
    assert stack.wait_terminal(stack.submit()["job_id"])["status"] == "finished"


def test_redis_with_a_password_end_to_end(stack_factory):
    stack = stack_factory(workers=1, redis_password="s3cret-pw")
    assert ":s3cret-pw@" in stack.redis_url
    view = stack.wait_terminal(stack.submit()["job_id"])
    assert view["status"] == "finished" and view["attempts"] == 1
    anonymous = Redis(host="127.0.0.1", port=stack.redis_port)
    with pytest.raises((AuthenticationError, ResponseError)):
        anonymous.get("x")
    # The password never reaches the logs of the processes we started.
    for handle in [*stack.workers]:
        assert "s3cret-pw" not in handle.process.log_path.read_text()
    assert "s3cret-pw" not in stack.api_proc.log_path.read_text()


def test_redis_over_tls_with_a_password_end_to_end(stack_factory):
    stack = stack_factory(workers=1, redis_tls=True, redis_password="tls-pw")
    assert stack.redis_url.startswith("rediss://:tls-pw@")
    view = stack.wait_terminal(stack.submit()["job_id"])
    assert view["status"] == "finished" and view["attempts"] == 1
    # Only TLS is served: a plain-text client cannot even talk to it.
    plain = Redis(host="127.0.0.1", port=stack.redis_port, password="tls-pw", socket_timeout=2)
    with pytest.raises(Exception):  # noqa: B017 - connection reset / protocol error, by client version
        plain.ping()
