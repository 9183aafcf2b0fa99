"""The lifeline: quiet between beats, and back at once when Redis drops its connection.

A worker's named connections are how sweepers know it lives (`CONNECTION_GRACE`). The lifeline
used to PING five times a second to find out that Redis had closed its connection; it now
sleeps on that connection's socket, which turns readable when Redis closes it. What the worker
sent is read from Redis's MONITOR stream.
"""

from __future__ import annotations

import time

import pytest

from fixtures.monitor import Monitor
from rq_recovery.config import default
from rq_recovery.keys import connection_name

pytestmark = pytest.mark.integration


def _named(stack, worker: str) -> list[dict]:
    return [c for c in stack.redis.client_list() if c.get("name") == connection_name(worker)]


def test_an_idle_lifeline_sends_nothing_between_its_beats(stack_factory):
    stack = stack_factory(workers=1)
    worker = stack.workers[0].name
    time.sleep(1.0)
    monitor = Monitor(stack.redis_url)
    try:
        time.sleep(3.0)
    finally:
        monitor.close()
    mine = {c["addr"] for c in _named(stack, worker)}
    sent = [cmd for client, cmd in monitor.lines if client in mine]
    assert sent, "the worker's recovery layer sent nothing at all in 3 s"
    assert not [cmd for cmd in sent if cmd.startswith("PING")], sent


def test_a_connection_redis_closes_is_back_within_the_grace(stack_factory):
    stack = stack_factory(workers=1)
    worker = stack.workers[0].name
    time.sleep(1.0)
    for _ in range(3):
        before = {c["id"] for c in _named(stack, worker)}
        assert before
        for client_id in before:
            stack.redis.client_kill_filter(_id=client_id)
        killed_at = time.monotonic()
        back = None
        while time.monotonic() - killed_at < 5:
            now = {c["id"] for c in _named(stack, worker)}
            if now - before:
                back = time.monotonic() - killed_at
                break
            time.sleep(0.02)
        assert back is not None, "the worker never reconnected"
        assert back < default("CONNECTION_GRACE"), f"reconnected after {back:.2f} s"
        time.sleep(0.5)
