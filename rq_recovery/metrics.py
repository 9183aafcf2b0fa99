"""Job facts and Prometheus metrics, aggregated in Redis so one scrape covers every worker.

Workers and sweepers write counters and histogram buckets into Redis hashes as jobs end or
recover (a few HINCRBY per job, in the pipeline that records the outcome). The API's
`/metrics` turns those hashes into Prometheus families at scrape time (`RedisCollector`), and
adds live gauges: queue depth per registry, workers and the age of their heartbeats, jobs
running abnormally long, and the Redis round trip.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from redis import Redis

from .clock import server_time
from .config import default
from .epoch import data_losses
from .keys import PREFIX, long_key, stats_key

#: Prefix of every metric name (METRICS_NAMESPACE).
NAMESPACE: str = os.environ.get("METRICS_NAMESPACE") or default("METRICS_NAMESPACE")

__all__ = [
    "HISTOGRAMS",
    "LUA_OBSERVE",
    "RENDER_PLANS",
    "RedisCollector",
    "counters_key",
    "hist_key",
    "memory_limit_bytes",
    "recommend_plan",
    "record_attempt",
    "record_outcome",
    "record_recovery",
    "tree_rss_bytes",
]

#: name -> (help, upper bounds in base units)
HISTOGRAMS: dict[str, tuple[str, tuple[float, ...]]] = {
    "job_duration_seconds": (
        "Time an attempt ran, start to outcome",
        (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    ),
    "job_queue_wait_seconds": (
        "Time from enqueue to the first start",
        (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    ),
    "recovery_latency_seconds": (
        "Time from a dead attempt's last heartbeat to its requeue or failure",
        (0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 600),
    ),
    "horse_peak_rss_bytes": (
        "Peak resident memory of the work-horse that ran an attempt",
        tuple(float(m * 2**20) for m in (64, 128, 256, 512, 1024, 2048, 4096, 8192)),
    ),
}

#: Render worker plans, smallest first: (name, memory bytes)
RENDER_PLANS = (("starter", 512 * 2**20), ("standard", 2 * 2**30), ("pro", 4 * 2**30), ("pro plus", 8 * 2**30))


def counters_key(queue: str) -> str:
    """Counters of outcomes and recoveries on `queue` (fields `jobs|outcome|cause`, ...)."""
    return f"{PREFIX}metrics:{queue}"


def hist_key(queue: str, name: str) -> str:
    """One histogram's buckets on `queue`: a field per upper bound (its repr), `+Inf`, `sum`."""
    return f"{PREFIX}hist:{queue}:{name}"


def _observe(pipe: Any, queue: str, name: str, value: float) -> None:
    bounds = HISTOGRAMS[name][1]
    i = bisect.bisect_left(bounds, value)
    field = repr(bounds[i]) if i < len(bounds) else "+Inf"
    key = hist_key(queue, name)
    pipe.hincrby(key, field, 1)
    pipe.hincrbyfloat(key, "sum", value)


def _lua_observe() -> str:
    """`observe(key, name, value, text)` for scripts: the same buckets as `_observe`."""
    rows = "\n".join(
        f"  {name} = {{{', '.join(f'{{{b!r}, {repr(b)!r}}}' for b in bounds)}}},"
        for name, (_help, bounds) in HISTOGRAMS.items()
    )
    return f"""local HIST = {{
{rows}
}}
local function observe(key, name, value, text)
  local field = '+Inf'
  for _, b in ipairs(HIST[name]) do
    if value <= b[1] then field = b[2] break end
  end
  redis.call('HINCRBY', key, field, 1)
  redis.call('HINCRBYFLOAT', key, 'sum', text)
end
"""


#: Lua defining `observe(key, name, value, text)`: a script that ends an attempt observes its
#: histograms in the same step (`value` a number, `text` the same value as sent).
LUA_OBSERVE = _lua_observe()


def record_outcome(
    pipe: Any,
    queue: str,
    *,
    outcome: str,
    cause: str,
    duration_s: float | None = None,
    queue_wait_s: float | None = None,
    peak_rss_bytes: int | None = None,
) -> None:
    """Count a job's terminal outcome (finished/failed and why) and observe its facts."""
    pipe.hincrby(counters_key(queue), f"jobs|{outcome}|{cause}", 1)
    if duration_s is not None:
        _observe(pipe, queue, "job_duration_seconds", duration_s)
    if queue_wait_s is not None:
        _observe(pipe, queue, "job_queue_wait_seconds", queue_wait_s)
    if peak_rss_bytes:
        _observe(pipe, queue, "horse_peak_rss_bytes", float(peak_rss_bytes))


def record_recovery(pipe: Any, queue: str, *, action: str, cause: str, latency_s: float | None) -> None:
    """Count a recovery action (requeued / failed) by cause, and how long the job was silent."""
    pipe.hincrby(counters_key(queue), f"recoveries|{action}|{cause}", 1)
    if latency_s is not None:
        _observe(pipe, queue, "recovery_latency_seconds", max(0.0, latency_s))


def record_attempt(pipe: Any, queue: str, *, duration_s: float, peak_rss_bytes: int | None) -> None:
    """Facts of an attempt that did not end the job (it is retried): still worth a histogram."""
    _observe(pipe, queue, "job_duration_seconds", duration_s)
    if peak_rss_bytes:
        _observe(pipe, queue, "horse_peak_rss_bytes", float(peak_rss_bytes))


def memory_limit_bytes(env_mb: float = 0.0) -> int | None:
    """The container's memory limit (cgroup v2, then v1), else MEMORY_LIMIT_MB, else None."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:  # "max" or a huge number mean unlimited
            return int(raw)
    return int(env_mb * 2**20) if env_mb else None


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its descendants, in bytes.

    Read from /proc (each task's `children`, each process's `statm`), which costs a few files.
    psutil's `children()` reads every process on the host instead: at each heartbeat of each
    worker, that grows with the host (1.8 ms with 90 processes here). Falls back to psutil
    where the kernel has no `children` files.
    """
    if pid <= 0:
        raise ProcessLookupError(pid)
    me = os.getpid()
    if not Path(f"/proc/{me}/task/{me}/children").exists():
        import psutil

        proc = psutil.Process(pid)
        return int(proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True)))
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            if p == pid:
                raise ProcessLookupError(pid) from None
    return total


def recommend_plan(peak_bytes: int, *, headroom: float = 1.25) -> str:
    """The smallest Render plan whose memory fits `peak_bytes` with headroom."""
    need = peak_bytes * headroom
    for name, size in RENDER_PLANS:
        if need <= size:
            return name
    return f"more than {RENDER_PLANS[-1][0]}"


class RedisCollector(Collector):
    """Builds the metric families from Redis at scrape time."""

    def __init__(self, redis: Redis, queue: str) -> None:
        self.redis = redis
        self.queue = queue

    def collect(self) -> Iterator[Any]:
        r, q = self.redis, self.queue
        t0 = time.perf_counter()
        r.ping()
        rtt = time.perf_counter() - t0

        depth = GaugeMetricFamily(f"{NAMESPACE}_queue_jobs", "Jobs per RQ registry", labels=["queue", "registry"])
        base = f"rq:queue:{q}"
        with r.pipeline(transaction=False) as pipe:
            pipe.llen(base)
            pipe.llen(f"{base}:intermediate")
            for reg in ("wip", "failed", "finished", "deferred", "scheduled"):
                pipe.zcard(f"rq:{reg}:{q}")
            sizes = pipe.execute()
        names = ("queued", "dequeued", "started", "failed", "finished", "deferred", "scheduled")
        for name, size in zip(names, sizes, strict=True):
            depth.add_metric([q, name], size)
        yield depth

        jobs = CounterMetricFamily(
            f"{NAMESPACE}_jobs", "Jobs ended, by outcome and cause", labels=["queue", "outcome", "cause"]
        )
        recov = CounterMetricFamily(
            f"{NAMESPACE}_recoveries", "Recovery actions on abandoned jobs", labels=["queue", "action", "cause"]
        )
        for field, value in r.hgetall(counters_key(q)).items():
            kind, a, b = _s(field).split("|", 2)
            (jobs if kind == "jobs" else recov).add_metric([q, a, b], int(value))
        yield jobs
        yield recov

        stats = {_s(k): int(v) for k, v in r.hgetall(stats_key(q)).items()}
        late = CounterMetricFamily(
            f"{NAMESPACE}_late_completions_rejected",
            "Outcome writes refused: the attempt was superseded",
            labels=["queue"],
        )
        late.add_metric([q], stats.get("late_completions_rejected", 0))
        yield late

        losses = CounterMetricFamily(
            f"{NAMESPACE}_redis_data_losses",
            "Times Redis came back without the data it held (restart without persistence, failover, flush)",
        )
        losses.add_metric([], int(data_losses(r).get("count", 0)))
        yield losses

        for name, (help_text, bounds) in HISTOGRAMS.items():
            raw = {_s(k): float(v) for k, v in r.hgetall(hist_key(q, name)).items()}
            cum, buckets = 0.0, []
            for bound in bounds:
                cum += raw.get(repr(bound), 0.0)
                buckets.append((repr(bound), cum))
            buckets.append(("+Inf", cum + raw.get("+Inf", 0.0)))
            h = HistogramMetricFamily(f"{NAMESPACE}_{name}", help_text, labels=["queue"])
            h.add_metric([q], buckets, raw.get("sum", 0.0))
            yield h

        now = server_time(r)  # the workers' beat_at is on Redis's clock
        alive = GaugeMetricFamily(
            f"{NAMESPACE}_workers", "Workers whose recovery layer beat within its lease", labels=["queue"]
        )
        age = GaugeMetricFamily(
            f"{NAMESPACE}_worker_heartbeat_age_seconds",
            "Seconds since each worker's recovery layer beat",
            labels=["worker"],
        )
        workers = [_s(k).removeprefix("rq:worker:") for k in r.smembers(f"rq:workers:{q}")]
        live = 0
        for w in workers:
            beat, settings = r.hmget(f"{PREFIX}worker:{w}", ["beat_at", "settings"])
            if beat is None:
                continue
            silent = max(0.0, now - float(beat))
            age.add_metric([w], silent)
            ttl = json.loads(settings or "{}").get("liveness_ttl", 6.0)
            live += silent < ttl  # a worker silent past its lease counts as gone
        alive.add_metric([q], live)
        yield alive
        yield age

        long_running = GaugeMetricFamily(
            f"{NAMESPACE}_jobs_long_running", "Running jobs flagged as abnormally long", labels=["queue"]
        )
        long_running.add_metric([q], r.scard(long_key(q)))
        yield long_running

        g = GaugeMetricFamily(f"{NAMESPACE}_redis_roundtrip_seconds", "PING round trip from the API to Redis")
        g.add_metric([], rtt)
        yield g


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
