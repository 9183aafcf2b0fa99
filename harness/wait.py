"""The one way the harness waits for something: poll a check until it holds or a deadline passes.

A check is a callable returning a truthy value when the wait is over; an exception counts as
"not yet". `wait_until` raises `NotReady` on timeout, carrying the last error and the log tail of
the process that did not come up, so a failure says why instead of just "timed out". `eventually`
is the same poll for callers that handle the timeout themselves: it returns the check's last value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["Check", "NotReady", "eventually", "wait_until"]

T = TypeVar("T")
Check = Callable[[], object]


class NotReady(RuntimeError):
    """Something did not become ready in time; the message holds its last error and log tail."""


def eventually(check: Callable[[], T], *, timeout: float, interval: float = 0.05, relative: float = 0.0) -> T | None:
    """Poll `check` until it returns a truthy value (returned) or `timeout` seconds pass (the
    last value, falsy, or None if it only raised).

    `relative` > 0 spaces the polls by at least that fraction of the time waited so far: a wait
    that may last minutes then costs a few polls a second instead of one per `interval`, and
    when it ends is still known to that fraction.
    """
    start = time.monotonic()
    deadline = start + timeout
    value: T | None = None
    while True:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - not yet
            value = None
        now = time.monotonic()
        if value or now >= deadline:
            return value
        time.sleep(min(max(interval, relative * (now - start)), deadline - now))  # the last poll: at the deadline


def wait_until(
    check: Check,
    *,
    what: str,
    timeout: float,
    interval: float = 0.05,
    log_tail: Callable[[], str] | None = None,
    alive: Callable[[], bool] | None = None,
) -> float:
    """Poll `check` until it holds; returns the seconds it took, or raises `NotReady`."""
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
