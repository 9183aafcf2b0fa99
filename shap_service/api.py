"""The HTTP API: accept SHAP requests, queue them for RQ workers, report job status.

Every error is a JSON body `{"error": "..."}` saying what is wrong and where; an invalid request
never enqueues anything. Run with `shap-api` or `python -m shap_service.api`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from rq_recovery import metrics
from rq_recovery.tracking import ENQUEUE_RETRY_GUARD_S, EnqueueConflict, NotDurable, Tracker

from . import __version__
from .config import Settings, settings_for
from .jobs import JOB_FUNC
from .model import MODELS

__all__ = ["MAX_BODY_BYTES", "MAX_ROWS", "AnalyzeRequest", "ChaosHooks", "create_app", "main"]

log = logging.getLogger("shap_service.api")

MAX_BODY_BYTES = 1024 * 1024
MAX_ROWS = 1000
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")

FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]


class ChaosHooks(BaseModel):
    """Test-only misbehaviour; accepted only when the API runs with CHAOS_HOOKS=1."""

    model_config = ConfigDict(extra="forbid")
    sleep_s: float | None = Field(None, ge=0, le=3600)
    sleep_after_s: float | None = Field(None, ge=0, le=3600)
    hang: Literal["python", "c"] | None = None
    alloc_mb: int | None = Field(None, ge=1, le=65536)
    hold_s: float | None = Field(None, ge=0, le=3600)
    raise_: str | None = Field(None, alias="raise", max_length=200)


class AnalyzeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Literal[tuple(MODELS)] = "diabetes"  # type: ignore[valid-type]
    rows: Annotated[
        list[Annotated[list[FiniteFloat], Field(min_length=1, max_length=100)]],
        Field(min_length=1, max_length=MAX_ROWS),
    ]
    explainer: Literal["tree", "kernel"] = "tree"
    background_size: int = Field(50, ge=1, le=100, strict=True)
    nsamples: int = Field(200, ge=10, le=5000, strict=True)
    chaos: ChaosHooks | None = None


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    # One quick retry covers a blip; beyond that a request answers 503 at once (clients retry)
    # rather than sit in redis-py's default backoff, which nests and can hold it for many seconds.
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.2), 1)
    redis = Redis.from_url(settings.redis_url, socket_timeout=2.0, socket_connect_timeout=1.0, retry=retry)
    tracker = Tracker.from_settings(redis, settings, serializer=JSONSerializer)
    stop = threading.Event()

    def sweep_forever() -> None:
        # Workers sweep too; this one makes sure jobs move on even when no worker survives.
        Tracker.from_settings(redis, settings, serializer=JSONSerializer).run(
            stop, by="api", interval=settings.sweep_interval, connection_check=settings.connection_check
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        thread = None
        if settings.api_sweeper:
            thread = threading.Thread(target=sweep_forever, name="api-sweeper", daemon=True)
            thread.start()
        yield
        stop.set()
        if thread:
            thread.join(timeout=5)

    app = FastAPI(title="SHAP service", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.redis = redis

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                return _error(400, "Content-Length header is not a number")
            if int(length) > MAX_BODY_BYTES:
                return _error(413, f"request body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        elif request.method in ("POST", "PUT", "PATCH"):
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    return _error(413, f"request body exceeds {MAX_BODY_BYTES} bytes")
            request._body = body  # starlette reuses it for the handler
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return _error(400, f"body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}")
        problems = [f"{_where(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in errors[:10]]
        return _error(422, "; ".join(problems), problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RedisError)
    async def on_redis(request: Request, exc: RedisError) -> JSONResponse:
        return _error(503, f"queue unavailable: {type(exc).__name__}")

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal error; see the API log")

    def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if settings.api_key and not hmac.compare_digest((x_api_key or "").encode(), settings.api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if not settings.admin_token:
            raise HTTPException(403, "admin endpoints are disabled: ADMIN_TOKEN is not set")
        given = (authorization or "").removeprefix("Bearer ").strip() if authorization else ""
        if (
            not authorization
            or not authorization.startswith("Bearer ")
            or not hmac.compare_digest(given.encode(), settings.admin_token.encode())
        ):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.post("/analyze", status_code=202, dependencies=[Depends(require_api_key)])
    def analyze(
        body: AnalyzeRequest,
        request: Request,
        response: Response,
        idempotency_key: str | None = Header(None, description="same key, same job (for IDEMPOTENCY_TTL s)"),
    ) -> dict[str, str]:
        job_id = None
        if idempotency_key is not None:
            if not _IDEMPOTENCY_KEY.match(idempotency_key):
                raise HTTPException(400, "Idempotency-Key must be 1-200 letters, digits or . _ : -")
            scope = hashlib.sha256(f"{settings.api_key}\0{idempotency_key}".encode()).hexdigest()
            job_id = f"idem-{scope[:32]}"
        spec = MODELS[body.model]
        for i, row in enumerate(body.rows):
            if len(row) != spec.n_features:
                raise HTTPException(
                    422, f"rows[{i}] has {len(row)} values; model {body.model} expects {spec.n_features} features"
                )
        if body.chaos is not None and not settings.chaos_hooks:
            raise HTTPException(422, "chaos: test hooks are disabled on this service (CHAOS_HOOKS is not set)")
        kwargs = {
            "model_name": body.model,
            "rows": body.rows,
            "explainer": body.explainer,
            "background_size": body.background_size,
            "nsamples": body.nsamples,
            "chaos": body.chaos.model_dump(by_alias=True, exclude_none=True) if body.chaos else None,
        }
        digest = hashlib.sha256(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()
        try:
            job, created, durability = tracker.enqueue_once(
                JOB_FUNC,
                kwargs=kwargs,
                job_timeout=settings.job_timeout,
                result_ttl=settings.result_ttl,
                job_id=job_id,
                guard_ttl=settings.idempotency_ttl if job_id else ENQUEUE_RETRY_GUARD_S,
                digest=digest,
                wait_aof_ms=settings.wait_aof_ms,
            )
        except EnqueueConflict:
            raise HTTPException(
                422, f"Idempotency-Key was used for another request in the last {settings.idempotency_ttl} s"
            ) from None
        except NotDurable as exc:
            retry = (
                "send it again with the same Idempotency-Key"
                if job_id
                else f"it may still run: read /jobs/{exc.job_id} before sending it again (an Idempotency-Key is safe)"
            )
            return _error(503, f"{exc}: not accepted; {retry}", job_id=exc.job_id)  # type: ignore[return-value]
        response.headers["Accepted-Durability"] = durability
        url = str(request.url_for("job_status", job_id=job.id))
        if not created:  # a retried request: its job, as it is now
            response.headers["Idempotent-Replayed"] = "true"
            status = getattr(job.get_status(refresh=True), "value", None) or "queued"
            return {"job_id": job.id, "status": str(status), "status_url": url}
        log.info(
            json.dumps(
                {
                    "event": "job_enqueued",
                    "job_id": job.id,
                    "rows": len(body.rows),
                    "model": body.model,
                    "explainer": body.explainer,
                }
            )
        )
        return {"job_id": job.id, "status": "queued", "status_url": url}

    @app.get("/jobs/{job_id}", name="job_status")
    def job_status(job_id: str) -> dict[str, Any]:
        return _job_view(job_id)

    @app.get("/job_status/{job_id}", include_in_schema=True)
    def job_status_legacy(job_id: str) -> dict[str, Any]:
        return _job_view(job_id)

    def _job_view(job_id: str) -> dict[str, Any]:
        if not _JOB_ID.match(job_id):
            raise HTTPException(400, "job id must be 1-128 letters, digits, '-' or '_'")
        try:
            job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        except NoSuchJobError:
            raise HTTPException(404, f"no job {job_id}") from None
        track = tracker.read(job_id)
        status = job.get_status(refresh=False)
        status = getattr(status, "value", status)

        def ts(name: str, fallback: datetime | None = None) -> str | None:
            raw = track.get(name)
            when = datetime.fromtimestamp(float(raw), tz=UTC) if raw else fallback
            if when is None:
                return None
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat(timespec="milliseconds")

        view: dict[str, Any] = {
            "job_id": job_id,
            "status": status,
            "attempts": int(track.get("attempt", 0)),
            "enqueued_at": ts("enqueued_at", job.enqueued_at),
            "started_at": ts("started_at", job.started_at),
            "last_heartbeat_at": ts("heartbeat_at"),
            "ended_at": ts("ended_at", job.ended_at),
            "worker": track.get("worker") or job.worker_name,
            "late_completions_rejected": int(track.get("late_completions", 0)),
        }
        if track.get("reason"):
            view["recovery"] = track["reason"]
        if track.get("recovering_by"):
            view["recovered_by"] = track["recovering_by"]
        facts: dict[str, Callable[[str], Any]] = {
            "duration_s": float,
            "queue_wait_s": float,
            "peak_rss_bytes": int,
            "cause": str,
            "error_type": str,
            "long_running": lambda v: v == "1",
            "memory_warning": int,
        }
        view["facts"] = {k: conv(track[k]) for k, conv in facts.items() if track.get(k)}
        if status == "finished":
            view["result"] = job.return_value()
        elif status == "failed":
            view["error"] = (
                track.get("reason")
                if track.get("state") == "failed" and track.get("reason")
                else (job.exc_info or "failed")
            )
        return view

    registry = CollectorRegistry()
    registry.register(metrics.RedisCollector(redis, settings.queue_name))

    @app.get("/metrics", response_class=PlainTextResponse)
    def prometheus_metrics() -> PlainTextResponse:
        """Prometheus text format, aggregated from Redis: covers every worker, not just this process."""
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/redis_ping", dependencies=[Depends(require_admin)])
    def redis_ping() -> JSONResponse:
        t0 = time.perf_counter()
        try:
            redis.ping()
        except RedisError as exc:
            return _error(503, f"Redis unreachable at {settings.redacted_url()}: {type(exc).__name__}", ok=False)
        return JSONResponse({"ok": True, "latency_ms": round((time.perf_counter() - t0) * 1000, 3)})

    @app.post("/admin/cleanup_jobs", dependencies=[Depends(require_admin)])
    def cleanup_jobs() -> dict[str, int]:
        report = Tracker.from_settings(redis, settings, serializer=JSONSerializer).sweep(
            by="api-admin", connection_check=settings.connection_check
        )
        return report.counts()

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="shap-api", description="Run the SHAP service's HTTP API.")
    parser.add_argument("--host", help="interface to bind (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: $PORT or 8000)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    args = parser.parse_args(argv)
    settings = settings_for("shap-api", host=args.host, port=args.port)
    if settings is None:
        return 2
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
