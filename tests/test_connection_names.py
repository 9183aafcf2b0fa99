"""The sweepers read CLIENT LIST raw: the names they find are the ones redis-py's parsed
`client_list()` gives, for a real Redis and for replies in either type."""

from __future__ import annotations

import pytest
from redis import Redis

from rq_recovery.tracking import Tracker, connection_names

REPLY = (
    "id=3 addr=127.0.0.1:1 laddr=127.0.0.1:6379 fd=8 name=rqr:w1 age=0 idle=0 flags=N db=0 cmd=ping\n"
    "id=4 addr=127.0.0.1:2 laddr=127.0.0.1:6379 fd=9 name= age=0 idle=0 flags=N db=0 cmd=client|list\n"
    "id=5 addr=127.0.0.1:3 laddr=127.0.0.1:6379 fd=10 name=worker.2:x age=1 idle=1 flags=P lib-name=redis-py\n"
)


@pytest.mark.parametrize("reply", [REPLY, REPLY.encode(), REPLY.replace("\n", "\r\n")])
def test_names_of_named_clients_only(reply) -> None:
    assert connection_names(reply) == {"rqr:w1", "worker.2:x"}


def test_a_field_ending_in_name_is_not_a_name() -> None:
    assert connection_names("id=7 lib-name=redis-py name=a user=default\n") == {"a"}
    assert connection_names("") == set()


@pytest.mark.parametrize("decode", [True, False])
def test_live_connections_match_client_list_on_a_real_redis(redis_only, decode) -> None:
    named = [Redis.from_url(redis_only.redis_url, client_name=f"rqr:probe-{i}") for i in range(3)]
    try:
        for c in named:
            c.ping()
        conn = Redis.from_url(redis_only.redis_url, decode_responses=decode)
        found = Tracker(conn, "default", liveness_ttl=6, max_attempts=2).live_connections()
        assert found is not None and {"rqr:probe-0", "rqr:probe-1", "rqr:probe-2"} <= found
        assert found == {c["name"] for c in redis_only.redis.client_list() if c.get("name")}
        conn.close()
    finally:
        for c in named:
            c.close()
