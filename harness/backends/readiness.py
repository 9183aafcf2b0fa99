"""Composable readiness checks, in the spirit of testcontainers' wait strategies.

A check is a callable returning True when ready (exceptions count as "not yet"); `harness.wait`
polls them with a deadline.
"""

from __future__ import annotations

import requests
from redis import Redis

from harness.wait import Check

__all__ = ["all_of", "http_ok", "redis_pings", "rq_worker_registered"]


def redis_pings(url: str) -> Check:
    def check() -> bool:
        client = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return check


def http_ok(url: str) -> Check:
    return lambda: requests.get(url, timeout=1).status_code == 200


def rq_worker_registered(client: Redis, name: str) -> Check:
    """RQ lists the worker, and (for the bundled fix) the fix has announced itself."""
    return lambda: bool(client.sismember("rq:workers", f"rq:worker:{name}"))


def all_of(*checks: Check) -> Check:
    return lambda: all(c() for c in checks)
