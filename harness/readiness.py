"""Composable readiness checks, in the spirit of testcontainers' wait strategies.

A check is a callable returning True when ready (exceptions count as "not yet"). `wait_until`
polls one with a deadline and, on timeout, raises `NotReady` carrying the log tail of the
process that did not come up, so a failure says why instead of just "timed out".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from redis import Redis

__all__ = ["Check", "NotReady", "wait_until", "redis_pings", "http_ok", "rq_worker_registered", "all_of"]

Check = Callable[[], bool]


class NotReady(RuntimeError):
    """A process did not become ready in time; the message holds its log tail."""


def wait_until(
    check: Check,
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    log_tail: Callable[[], str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll `check` until it holds; returns the seconds it took."""
    t0 = time.monotonic()
    last_error = ""
    while True:
        try:
            if check():
                return time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - not ready yet
            last_error = f"{type(exc).__name__}: {exc}"
        dead = alive is not None and not alive()
        if dead or time.monotonic() - t0 > timeout:
            why = "exited" if dead else f"not ready after {timeout:.0f} s"
            tail = log_tail() if log_tail else ""
            raise NotReady(
                f"{what} {why}"
                + (f" (last error: {last_error})" if last_error else "")
                + (f"\n--- log tail ---\n{tail}" if tail else "")
            )
        time.sleep(interval)


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
