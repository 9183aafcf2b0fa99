"""Which JobClient a run's client threads use: the target's submission mode, on a started stack."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from harness.workload.client import JobClient
from harness.workload.plan import Workload

__all__ = ["client_factory"]


def client_factory(stack: Any, workload: Workload) -> Callable[[], JobClient]:
    """A maker of JobClients for `stack` (a started Backend): `rq` probes onto its queues, or
    HTTP to its API (this repository's own API when the stack has no target)."""
    from harness.targets.http_submit import HttpJobClient

    target = getattr(stack.config, "target", None)
    if target is None or target.submit == "http":
        http = target.http if target is not None else None
        headers = target.headers(os.environ) if target is not None else {}
        url, prefix = stack.api_url, str(stack.run_id)
        return lambda: HttpJobClient(
            api_url=url, workload=workload, http=http, headers=headers, idempotency_prefix=prefix
        )
    from harness.targets.rq_submit import RqJobClient

    if getattr(stack, "witness", None) is None:
        raise RuntimeError(f"target {target.name} submits through rq, but the stack started no witness")
    timeout = stack.config.env.get("JOB_TIMEOUT")
    redis_url, witness_url = stack.redis_url, stack.witness.url
    return lambda: RqJobClient(
        redis_url=redis_url,
        queues=target.queues,
        serializer=target.serializer,
        witness_url=witness_url,
        workload=workload,
        job_timeout=float(timeout) if timeout else None,
    )
