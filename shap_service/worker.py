"""`shap-worker`: an RQ worker on QUEUE_NAME with the models preloaded and the recovery layer on.

    shap-worker [--fix bundled|none] [--queue NAME] [--redis-url URL] [--name NAME]

`--fix none` runs RQ's plain `Worker` with the same job code and no recovery layer: what the
harness compares against. Models load here, in the parent, before RQ forks work-horses.
(The harness's deliberately broken fixes run through `harness.testing.worker`, which passes its
own `worker_class` to `main`; they are no choice of this production command.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue, Worker
from rq.serializers import JSONSerializer

from rq_recovery.worker_process_fix import RecoveringWorker

from . import __version__, model
from .config import Settings, settings_for
from .jobs import JOB_FUNC

__all__ = ["FIX_CHOICES", "ShapWorker", "build_worker", "main"]

#: the recovery layer, or stock RQ with the same job code.
FIX_CHOICES = ["bundled", "none"]

log = logging.getLogger("shap_service.worker")


class ShapWorker(RecoveringWorker):
    """The service's worker: the recovery layer, plus its models' load stats in its registration.
    It runs the service's own job and nothing else a job may name."""

    job_allowlist = (JOB_FUNC,)

    def worker_info(self) -> dict[str, str]:
        return {"model_stats": json.dumps(model.stats())}


def build_worker(
    settings: Settings, *, fix: str = "bundled", name: str | None = None, worker_class: type[Worker] | None = None
) -> Worker:
    conn = Redis.from_url(settings.redis_url)
    queue = Queue(settings.queue_name, connection=conn, serializer=JSONSerializer)
    # log_job_description=False: a job's arguments are user rows; keep them out of the logs.
    kwargs: dict[str, Any] = dict(connection=conn, serializer=JSONSerializer, name=name, log_job_description=False)
    cls = worker_class or (Worker if fix == "none" else ShapWorker)
    if issubclass(cls, RecoveringWorker):
        kwargs["settings"] = settings
    return cls([queue], **kwargs)


def main(argv: list[str] | None = None, *, worker_class: type[Worker] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shap-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fix", choices=FIX_CHOICES, default="bundled", help="recovery layer (default: bundled; none = stock RQ)"
    )
    parser.add_argument("--queue", help="queue to listen on (default: $QUEUE_NAME or shap-jobs)")
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--name", help="worker name (default: RQ's random name)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    settings = settings_for("shap-worker", queue_name=args.queue, redis_url=args.redis_url)
    if settings is None:
        return 2
    for name in model.MODELS:
        model.load(name, cache_dir=settings.model_cache_path)
    import shap  # noqa: F401 - pay the 1 s import once, before forking, not in every job

    worker = build_worker(settings, fix=args.fix, name=args.name, worker_class=worker_class)
    try:
        worker.connection.ping()
    except RedisConnectionError as exc:
        print(f"shap-worker: cannot reach Redis at {settings.redacted_url()}: {exc}", file=sys.stderr)
        return 3
    fix = type(worker).__name__ if worker_class else args.fix
    log.info("worker %s (fix=%s) on queue %s at %s", worker.name, fix, settings.queue_name, settings.redacted_url())
    worker.work(logging_level=settings.log_level, with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
