"""The names of every Redis key and connection the recovery layer owns, in one place.

The prefixes are settings (`KEY_PREFIX`, `CONNECTION_PREFIX`), read once from the environment,
so two apps sharing one Redis can keep their bookkeeping apart.
"""

from __future__ import annotations

import os

from .config import default

__all__ = [
    "CONNECTION_PREFIX",
    "PREFIX",
    "active_key",
    "connection_name",
    "durations_key",
    "enqueue_guard_key",
    "fence_key",
    "limbo_key",
    "live_key",
    "long_key",
    "peaks_key",
    "running_key",
    "stats_key",
    "track_key",
    "worker_key",
]

PREFIX: str = os.environ.get("KEY_PREFIX") or default("KEY_PREFIX")
CONNECTION_PREFIX: str = os.environ.get("CONNECTION_PREFIX") or default("CONNECTION_PREFIX")


def track_key(job_id: str) -> str:
    """The hash beside RQ's job: attempt, token, worker, timestamps, state, reason."""
    return f"{PREFIX}track:{job_id}"


def enqueue_guard_key(job_id: str) -> str:
    """Set once when a job id is enqueued (with a TTL): a retried enqueue finds it and stops."""
    return f"{PREFIX}enqueued:{job_id}"


def live_key(job_id: str) -> str:
    """The running attempt's lease: its token, with a TTL of LIVENESS_TTL."""
    return f"{PREFIX}live:{job_id}"


def running_key() -> str:
    """Jobs with an attempt started and not yet ended or recovered, on every queue: all a sweep
    must look at, so any sweeper recovers any queue's job, even one no live worker listens to."""
    return f"{PREFIX}running"


def fence_key(job_id: str) -> str:
    """The current attempt's token, written only when an attempt starts, is claimed or ends.

    The outcome commit WATCHes this key, not the track: the lifeline writes the track (its
    heartbeat) while the horse commits, and must not abort that commit.
    """
    return f"{PREFIX}fence:{job_id}"


def active_key(queue: str) -> str:
    """Jobs the service enqueued and that are not yet terminal on `queue` (score: enqueue time)."""
    return f"{PREFIX}active:{queue}"


def limbo_key(queue: str) -> str:
    """First time a sweeper saw a job dequeued but never started (the dequeue gap)."""
    return f"{PREFIX}limbo:{queue}"


def long_key(queue: str) -> str:
    """Running jobs on `queue` flagged as abnormally long (the lifeline adds, the end removes)."""
    return f"{PREFIX}long:{queue}"


def peaks_key(queue: str) -> str:
    """The last 200 work-horse peak RSS figures on `queue` (bytes), newest first."""
    return f"{PREFIX}peaks:{queue}"


def durations_key(func: str) -> str:
    """The last 200 durations of `func`'s finished attempts (seconds): its p95 flags long runs."""
    return f"{PREFIX}durations:{func}"


def stats_key(queue: str) -> str:
    return f"{PREFIX}stats:{queue}"


def worker_key(name: str) -> str:
    return f"{PREFIX}worker:{name}"


def connection_name(worker: str) -> str:
    """The CLIENT SETNAME of a worker's recovery-layer connections."""
    return f"{CONNECTION_PREFIX}{worker}"
