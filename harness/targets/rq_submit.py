"""`rq` submission: the harness enqueues probe jobs straight onto the target's queues.

Enqueued with RQ's public API and the target's serializer, and read back the same way
(`Job.fetch`): status, worker, result or error. No attempt count is read from the service: the
witness counts executions (`harness.targets.witness`). Each workload kind maps to a probe:

    light -> compute (2,000 rounds)     heavy -> compute (200,000 rounds)
    slow  -> sleep `slow_s`, compute    hang  -> hang_python / hang_c (the workload's `hang`)
    hungry -> hold_memory `alloc_mb` (+ PROBE_EXTRA_MB) for `hold_s`
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from harness.defaults import CLIENT_REQUEST_TIMEOUT_S, MISSING, PROBE_EXTRA_MB
from harness.targets.probes import expected_value
from harness.targets.witness import parse_entries
from harness.workload.client import Answer
from harness.workload.plan import JobSpec, Workload

__all__ = ["RqJobClient", "probe_call"]

PROBE_FUNC = "harness.targets.probes.run_probe"
LIGHT_ROUNDS = 2_000
HEAVY_ROUNDS = 200_000


def probe_call(spec: JobSpec, workload: Workload) -> tuple[str, dict[str, Any], str | None]:
    """(probe, params, expected value or None) for one planned job."""
    seed = spec.request_id
    if spec.kind == "light":
        return "compute", {"seed": seed, "rounds": LIGHT_ROUNDS}, expected_value(seed, LIGHT_ROUNDS)
    if spec.kind == "heavy":
        return "compute", {"seed": seed, "rounds": HEAVY_ROUNDS}, expected_value(seed, HEAVY_ROUNDS)
    if spec.kind == "slow":
        params = {"seed": seed, "rounds": LIGHT_ROUNDS, "seconds": workload.slow_s}
        return "sleep", params, expected_value(seed, LIGHT_ROUNDS)
    if spec.kind == "hang":
        return ("hang_c" if workload.hang == "c" else "hang_python"), {}, None
    if spec.kind == "hungry":
        mb = workload.alloc_mb + PROBE_EXTRA_MB  # past the same limit as this service's hungry job
        params = {"seed": seed, "rounds": LIGHT_ROUNDS, "mb": mb, "hold_s": workload.hold_s}
        return "hold_memory", params, expected_value(seed, LIGHT_ROUNDS)
    raise ValueError(f"no probe for job kind {spec.kind!r}")


def _serializer(name: str) -> Any:
    from rq.serializers import DefaultSerializer, JSONSerializer

    return JSONSerializer if name == "json" else DefaultSerializer


class RqJobClient:
    """One client's connection to the target's Redis: enqueue probes, read jobs back."""

    def __init__(
        self,
        *,
        redis_url: str,
        queues: tuple[str, ...],
        serializer: str,
        witness_url: str,
        workload: Workload,
        job_timeout: float | None = None,
    ) -> None:
        self.redis = Redis.from_url(redis_url, socket_timeout=CLIENT_REQUEST_TIMEOUT_S, socket_connect_timeout=2)
        self.witness = Redis.from_url(witness_url, decode_responses=True, socket_timeout=5)
        self.witness_url = witness_url
        self.queues = queues
        self.serializer = _serializer(serializer)
        self.workload = workload
        self.job_timeout = job_timeout

    def submit(self, spec: JobSpec) -> Answer:
        from rq import Queue

        probe, params, expect = probe_call(spec, self.workload)
        queue = Queue(self.queues[spec.index % len(self.queues)], connection=self.redis, serializer=self.serializer)
        options: dict[str, Any] = {}
        if self.job_timeout is not None:
            options["job_timeout"] = self.job_timeout
        try:
            job = queue.enqueue(
                PROBE_FUNC, probe, params, witness=self.witness_url, probe_id=spec.request_id, **options
            )
        except RedisError as exc:
            return Answer(retry=True, error=f"{type(exc).__name__}: {exc}")
        return Answer(job_id=job.id, expect={"probe": probe, "value": expect})

    def view(self, job_id: str) -> dict[str, Any] | None:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job

        try:
            job = Job.fetch(job_id, connection=self.redis, serializer=self.serializer)
            status = job.get_status(refresh=False)
            view: dict[str, Any] = {"status": str(getattr(status, "value", status)), "worker": job.worker_name}
            if view["status"] == "finished":
                view["result"] = job.return_value()
            elif view["status"] == "failed":
                result = job.latest_result()
                lines = str((result.exc_string if result is not None else None) or job.exc_info or "").splitlines()
                view["error"] = lines[-1].strip() if lines else None
        except NoSuchJobError:
            return {"status": MISSING, "attempts": None, "worker": None}
        except (RedisError, OSError):
            return None
        except Exception as exc:  # noqa: BLE001 - a job RQ cannot read back (serializer mismatch) is a finding
            return {"status": "unreadable", "attempts": None, "worker": None, "error": f"{type(exc).__name__}: {exc}"}
        view["attempts"] = None  # the service's count is not evidence; the witness's is
        if view["status"] in ("finished", "failed"):
            try:
                view["executions"] = len(parse_entries(self.witness.lrange(f"exec:{job_id}", 0, -1)))
            except RedisError:
                pass
        return view

    def close(self) -> None:
        self.redis.close()
        self.witness.close()
