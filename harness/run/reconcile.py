"""The reconciliation read: every job the Redis under test holds, after the final pass.

Read with RQ's own key layout (job hashes ``rq:job:<id>``, queues ``rq:queue:<q>``, registries
``rq:<registry>:<q>``), never through the service; `harness.checkers.evidence.Reconciliation`
compares it with the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.text import text
from harness.workload.history import RECONCILE, History

__all__ = ["REGISTRIES", "read_redis_jobs", "record_reconcile"]

#: RQ's per-queue registries (sorted sets; `wip` members are "<job id>:<execution id>").
REGISTRIES = ("wip", "finished", "failed", "deferred", "scheduled", "canceled")
JOB_PREFIX = "rq:job:"


def read_redis_jobs(redis: Any, queues: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """({job id: status} of every job hash, ids that a queue or registry names without a hash)."""
    ids = []
    for key in redis.scan_iter(f"{JOB_PREFIX}*", count=1000):
        rest = (text(key) or "")[len(JOB_PREFIX) :]
        if rest and ":" not in rest:  # rq:job:<id>, not rq:job:<id>:dependents
            ids.append(rest)
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(JOB_PREFIX + job_id, "status")
    jobs = {job_id: text(status) or "?" for job_id, status in zip(ids, pipe.execute(), strict=True)}
    named: set[str] = set()
    for queue in queues:
        named.update(text(m) or "" for m in redis.lrange(f"rq:queue:{queue}", 0, -1))
        for registry in REGISTRIES:
            named.update((text(m) or "").split(":", 1)[0] for m in redis.zrange(f"rq:{registry}:{queue}", 0, -1))
    dangling = sorted(j for j in named if j and j not in jobs)
    return jobs, dangling


def record_reconcile(stack: Any, history: History) -> None:
    """One `reconcile` event: what Redis holds, or why it could not be read (then: unknown)."""
    try:
        jobs, dangling = read_redis_jobs(stack.redis, stack.config.queues)
    except Exception as exc:  # noqa: BLE001 - an unread Redis makes the verdict unknown, not a pass
        history.record(RECONCILE, read_ok=False, error=f"{type(exc).__name__}: {exc}")
        return
    history.record(RECONCILE, read_ok=True, jobs=jobs, dangling=dangling)
