"""`diagnose-worker`: what the queues, workers and running jobs look like, and what to do.

Read-only, always: it talks to Redis through a client that refuses every command not on a
read allowlist, so no code path here can requeue, expire or clean anything (the original
deployment's "diagnostic" silently requeued jobs; RQ's own `registry.count` runs a cleanup).

Exit codes: 0 healthy, 1 stuck jobs exist, 2 usage error, 3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from redis import Redis
from redis.exceptions import RedisError

from . import __version__, metrics
from .clock import server_time
from .config import Settings, SettingsError, redact_url
from .epoch import data_losses
from .keys import (
    connection_name,
    limbo_key,
    live_key,
    long_key,
    peaks_key,
    running_key,
    stats_key,
    track_key,
    worker_key,
)

__all__ = ["ReadOnlyRedis", "WriteRefused", "diagnose", "main"]

EXIT_OK, EXIT_STUCK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

_READ_COMMANDS = frozenset(
    [
        "PING",
        "GET",
        "MGET",
        "HGET",
        "HGETALL",
        "HMGET",
        "HLEN",
        "LLEN",
        "LRANGE",
        "LINDEX",
        "ZCARD",
        "ZRANGE",
        "ZRANGEBYSCORE",
        "ZSCORE",
        "SMEMBERS",
        "SCARD",
        "SISMEMBER",
        "PTTL",
        "TTL",
        "EXISTS",
        "TYPE",
        "SCAN",
        "INFO",
        "TIME",
        "CLIENT",
    ]
)


class WriteRefused(RuntimeError):
    """diagnose-worker tried to send a command that could change Redis: a bug, never allowed."""


class ReadOnlyRedis(Redis):
    def execute_command(self, *args: Any, **options: Any) -> Any:
        name = str(args[0]).upper().split()[0]
        if name not in _READ_COMMANDS or (
            name == "CLIENT"
            and "LIST" not in str(args[0]).upper()
            and (len(args) < 2 or str(args[1]).upper() != "LIST")
        ):
            raise WriteRefused(f"diagnose-worker is read-only; refused {args[0]!r}")
        return super().execute_command(*args, **options)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def diagnose(conn: Redis, queue: str, *, liveness_ttl: float) -> dict[str, Any]:
    """Collect the report; pure reads."""
    now = server_time(conn)  # what the recovery layer writes is on Redis's clock
    q = f"rq:queue:{queue}"
    counts = {
        "queued": conn.llen(q),
        "dequeued_not_started": conn.llen(f"{q}:intermediate"),
        "started": conn.zcard(f"rq:wip:{queue}"),
        "failed": conn.zcard(f"rq:failed:{queue}"),
        "finished": conn.zcard(f"rq:finished:{queue}"),
        "deferred": conn.zcard(f"rq:deferred:{queue}"),
        "scheduled": conn.zcard(f"rq:scheduled:{queue}"),
    }
    try:
        connected = {c.get("name", "") for c in conn.client_list()}
    except RedisError:
        connected = None

    workers = []
    for key in sorted(_s(k) for k in conn.smembers(f"rq:workers:{queue}")):
        name = key.removeprefix("rq:worker:")
        rq_info = {_s(k): _s(v) for k, v in conn.hgetall(key).items()}
        fix = {_s(k): _s(v) for k, v in conn.hgetall(worker_key(name)).items()}
        if not rq_info:
            continue  # expired worker key still listed in the set
        beat = float(fix["beat_at"]) if fix.get("beat_at") else None
        workers.append(
            {
                "name": name,
                "state": rq_info.get("state", "?"),
                "pid": int(fix.get("pid") or rq_info.get("pid") or 0),
                "host": fix.get("host") or rq_info.get("hostname", "?"),
                "fix": fix.get("fix", "none"),
                "current_job": fix.get("current_job") or None,
                "last_heartbeat_age_s": round(now - beat, 1) if beat else None,
                "rq_last_heartbeat": rq_info.get("last_heartbeat"),
                "connected": None if connected is None else (connection_name(name) in connected or name in connected),
            }
        )

    stuck, running = [], []
    for job_id in (_s(j) for j in conn.zrange(running_key(), 0, -1)):
        track = {_s(k): _s(v) for k, v in conn.hgetall(track_key(job_id)).items()}
        state = track.get("state", "queued")
        if state not in ("running", "recovering") or track.get("queue", queue) != queue:
            continue  # the running set holds every queue's jobs: report this queue's
        beat = float(track.get("heartbeat_at") or track.get("started_at") or now)
        lease = conn.pttl(live_key(job_id))
        entry = {
            "job_id": job_id,
            "state": state,
            "worker": track.get("worker"),
            "attempt": int(track.get("attempt", 0)),
            "silent_s": round(now - beat, 1),
            "running_s": round(now - float(track.get("started_at") or now), 1),
            "lease_ms_left": max(int(lease), 0),
        }
        worker_gone = connected is not None and connection_name(track.get("worker", "")) not in connected
        if lease <= 0 or state == "recovering":
            entry["why"] = "lease expired" if state != "recovering" else "recovery in progress or interrupted"
            stuck.append(entry)
        elif worker_gone:
            entry["why"] = "worker has no Redis connection"
            stuck.append(entry)
        else:
            running.append(entry)

    # Jobs in RQ's started registry that no worker with the fix started (plain RQ workers, or
    # jobs from before the fix): stuck when their worker's connections are gone (RQ names its
    # pubsub connection after the worker) or RQ's own heartbeat deadline has passed.
    wip = cast(list[tuple[bytes, float]], conn.zrange(f"rq:wip:{queue}", 0, -1, withscores=True))
    for member, score in wip:
        job_id = _s(member).split(":")[0]
        untracked_state = conn.hget(track_key(job_id), "state")
        if untracked_state is not None and _s(untracked_state) != "queued":
            continue
        worker = _s(conn.hget(f"rq:job:{job_id}", "worker_name") or "") or None
        gone = connected is not None and worker is not None and worker not in connected
        if score < now or gone:
            why = "untracked; its worker has no Redis connection" if gone else "untracked; RQ heartbeat deadline passed"
            stuck.append(
                {"job_id": job_id, "state": "started", "worker": worker, "attempt": None, "silent_s": None, "why": why}
            )

    limbo = {_s(k): round(now - float(_s(v)), 1) for k, v in conn.hgetall(limbo_key(queue)).items()}
    long_ids = {_s(j) for j in conn.smembers(long_key(queue))}
    long_running = [
        dict(j, p95_s=_float(conn.hget(track_key(j["job_id"]), "p95_s"))) for j in running if j["job_id"] in long_ids
    ]
    peaks = [int(_s(p)) for p in conn.lrange(peaks_key(queue), 0, 199)]
    stats = {_s(k): _s(v) for k, v in conn.hgetall(stats_key(queue)).items()}
    memory = {
        "jobs_sampled": len(peaks),
        "horse_peak_rss_max_bytes": max(peaks) if peaks else None,
        "memory_warnings": int(stats.get("memory_warnings", 0)),
        "recommended_render_plan": metrics.recommend_plan(max(peaks)) if peaks else None,
    }
    losses = data_losses(conn)
    data_loss = None
    if losses:
        at = float(losses.get("last_at") or now)
        data_loss = {
            "count": int(losses.get("count", 0)),
            "last_ago_s": round(now - at, 1),
            "lost_epoch": losses.get("lost_epoch"),
            "detected_by": losses.get("detected_by"),
        }
    return {
        "queue": queue,
        "counts": counts,
        "workers": workers,
        "running": running,
        "stuck": stuck,
        "dequeued_not_started": limbo,
        "long_running": long_running,
        "memory": memory,
        "redis_data_loss": data_loss,
        "recommendations": _recommend(counts, workers, stuck, liveness_ttl, long_running, memory, data_loss),
    }


def _float(v: Any) -> float | None:
    return float(_s(v)) if v is not None else None


def _recommend(
    counts: dict[str, int],
    workers: list[dict],
    stuck: list[dict],
    ttl: float,
    long_running: list[dict],
    memory: dict[str, Any],
    data_loss: dict[str, Any] | None = None,
) -> list[str]:
    out = []
    if data_loss:
        out.append(
            f"Redis lost its data {data_loss['count']} time(s), last {data_loss['last_ago_s']:.0f} s ago (noticed by "
            f"{data_loss['detected_by']}): every job it held then is gone, not failed; give Redis persistence "
            "(appendonly yes) and let clients resubmit with their Idempotency-Key"
        )
    with_fix = [w for w in workers if w["fix"] != "none"]
    if not workers:
        out.append(
            "no worker is registered on this queue: start one "
            "(rq worker -w rq_recovery.worker_process_fix.RecoveringWorker); queued jobs wait until then"
        )
    elif not with_fix:
        out.append(
            "no worker runs the recovery layer (fix=none): jobs of a dead worker stay 'started' for ~15 min "
            "or forever; run `rq worker -w rq_recovery.worker_process_fix.RecoveringWorker` "
            "(the fix must load in the worker process)"
        )
    if stuck:
        out.append(
            f"{len(stuck)} stuck job(s): a worker's sweeper recovers them within {ttl:.0f} s of their last "
            "heartbeat; to do it now run: repair-stuck-jobs --dry-run, then repair-stuck-jobs"
        )
    silent = [w["name"] for w in with_fix if (w["last_heartbeat_age_s"] or 0) > ttl]
    if silent:
        out.append(f"worker(s) {', '.join(silent)} have not beaten for > {ttl:.0f} s: frozen, partitioned or dead")
    for j in long_running:
        out.append(
            f"job {j['job_id']} has run {j['running_s']} s, far past its model's recent p95 ({j['p95_s']} s): "
            "check it for a hang before it times out"
        )
    if memory["memory_warnings"]:
        peak_mb = (memory["horse_peak_rss_max_bytes"] or 0) / 2**20
        out.append(
            f"{memory['memory_warnings']} job(s) came close to the worker's memory limit (peak horse RSS "
            f"{peak_mb:.0f} MB): Render plan '{memory['recommended_render_plan']}' fits that with 25% headroom"
        )
    if counts["queued"] > 10 * max(1, len(workers)):
        out.append(f"{counts['queued']} jobs waiting for {len(workers)} worker(s): add workers")
    return out


def _print_text(report: dict[str, Any], url: str) -> None:
    c = report["counts"]
    print(f"queue {report['queue']} at {url}")
    print("  " + "  ".join(f"{k}={v}" for k, v in c.items()))
    print(f"workers ({len(report['workers'])}):")
    for w in report["workers"]:
        age = "-" if w["last_heartbeat_age_s"] is None else f"{w['last_heartbeat_age_s']} s ago"
        gone = "  NO REDIS CONNECTION (dead?)" if w["connected"] is False else ""
        print(
            f"  {w['name']:<24} {w['state']:<9} pid={w['pid']:<7} fix={w['fix']:<8} beat={age:<10} "
            f"job={w['current_job'] or '-'}{gone}"
        )
    print(f"running jobs ({len(report['running'])}):")
    for j in report["running"]:
        print(f"  {j['job_id']} attempt {j['attempt']} on {j['worker']}, running {j['running_s']} s")
    print(f"stuck jobs ({len(report['stuck'])}):")
    for j in report["stuck"]:
        silent = "" if j["silent_s"] is None else f", silent {j['silent_s']} s"
        attempt = "" if j["attempt"] is None else f" attempt={j['attempt']}"
        print(f"  {j['job_id']} {j['state']} worker={j['worker']}{attempt}{silent}: {j['why']}")
    if report["long_running"]:
        print(f"long-running jobs ({len(report['long_running'])}):")
        for j in report["long_running"]:
            print(f"  {j['job_id']} on {j['worker']}: {j['running_s']} s (model p95 {j['p95_s']} s)")
    m = report["memory"]
    if m["jobs_sampled"]:
        print(
            f"memory: horse peak RSS max {m['horse_peak_rss_max_bytes'] / 2**20:.0f} MB over the last "
            f"{m['jobs_sampled']} jobs; warnings {m['memory_warnings']}; fits Render plan "
            f"'{m['recommended_render_plan']}'"
        )
    if report["redis_data_loss"]:
        d = report["redis_data_loss"]
        print(f"REDIS DATA LOSS: {d['count']} time(s), last {d['last_ago_s']} s ago, noticed by {d['detected_by']}")
    if report["recommendations"]:
        print("recommendations:")
        for r in report["recommendations"]:
            print(f"  - {r}")
    else:
        print("healthy: nothing to do")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="diagnose-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--queue", help="queue name (default: $QUEUE_NAME or shap-jobs)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        settings = Settings.from_env(redis_url=args.redis_url, queue_name=args.queue)
    except SettingsError as exc:
        print(f"diagnose-worker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    conn = ReadOnlyRedis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    try:
        report = diagnose(conn, settings.queue_name, liveness_ttl=settings.liveness_ttl)
    except RedisError as exc:
        print(f"diagnose-worker: cannot reach Redis at {redact_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(report, redact_url(settings.redis_url))
    return EXIT_STUCK if report["stuck"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
