"""`harness verify`: check an existing deployment before or after a deploy, without breaking it.

    harness verify --api-url URL --redis-url URL [--admin-token T] [--queue NAME] [--render-yaml PATH]

Checks: /ping; /admin/redis_ping (with a token); one real analysis round trip within a time
limit with an additive result; workers registered and heart-beating; no job `started` past the
liveness bound with a dead worker; render.yaml consistent with the code. Writes verify.json and
exits 0 when every check passes, 1 otherwise (2 usage, 3 unreachable Redis).

It only reads, plus the one analysis it submits: it talks HTTP to the API and reads Redis
through RQ's data (and the recovery layer's leases where present, under the `KEY_PREFIX` and
`CONNECTION_PREFIX` of this environment: set them as the service has them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import requests
import yaml
from redis import Redis
from redis.exceptions import RedisError

from harness.defaults import SAMPLE_ROW as ROW
from harness.text import text
from rq_recovery.clock import server_time
from rq_recovery.keys import connection_name, live_key, track_key, worker_key

__all__ = ["Finding", "main", "verify"]


@dataclass
class Finding:
    """One check of a deployment: passed (ok), failed, or skipped (ok None) and why."""

    name: str
    ok: bool | None  # None: skipped, with the reason in detail
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


def _ping(api: str) -> Finding:
    try:
        r = requests.get(f"{api}/ping", timeout=5)
        ok = r.status_code == 200 and r.json().get("status") == "ok"
        return Finding("ping", ok, f"GET /ping -> {r.status_code} {r.text[:100]}")
    except requests.RequestException as exc:
        return Finding("ping", False, f"API unreachable: {type(exc).__name__}")


def _redis_ping(api: str, token: str | None) -> Finding:
    if not token:
        return Finding("redis_ping", None, "skipped: no --admin-token")
    try:
        r = requests.get(f"{api}/admin/redis_ping", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        return Finding(
            "redis_ping",
            r.status_code == 200 and r.json().get("ok") is True,
            f"GET /admin/redis_ping -> {r.status_code} {r.text[:100]}",
        )
    except requests.RequestException as exc:
        return Finding("redis_ping", False, f"API unreachable: {type(exc).__name__}")


def _round_trip(api: str, *, timeout: float, api_key: str | None) -> Finding:
    headers = {"X-API-Key": api_key} if api_key else {}
    t0 = time.monotonic()
    try:
        r = requests.post(f"{api}/analyze", json={"model": "diabetes", "rows": [ROW]}, headers=headers, timeout=10)
        if r.status_code != 202:
            return Finding("round_trip", False, f"POST /analyze -> {r.status_code} {r.text[:200]}")
        job_id = r.json()["job_id"]
        view: dict[str, Any] = {}
        while time.monotonic() - t0 < timeout:
            view = requests.get(f"{api}/jobs/{job_id}", timeout=10).json()
            if view.get("status") in ("finished", "failed"):
                break
            time.sleep(0.1)
    except (requests.RequestException, ValueError, KeyError) as exc:
        return Finding("round_trip", False, f"{type(exc).__name__}: {exc}")
    took = time.monotonic() - t0
    if view.get("status") != "finished":
        return Finding(
            "round_trip",
            False,
            f"job {job_id} is {view.get('status')} after {took:.1f} s: {view.get('error', '')[:200]}",
            {"job_id": job_id},
        )
    res = view["result"]
    err = max(
        abs(res["base_value"] + sum(row) - p) for row, p in zip(res["shap_values"], res["predictions"], strict=True)
    )
    ok = err <= 1e-6 * max(1.0, max(abs(p) for p in res["predictions"]))
    return Finding(
        "round_trip",
        ok,
        f"job {job_id} finished in {took:.2f} s; additivity error {err:.1e}",
        {"job_id": job_id, "seconds": round(took, 3)},
    )


def _workers(r: Redis, queue: str, bound: float) -> Finding:
    now = server_time(r)  # the recovery layer's beat_at is on Redis's clock
    names = sorted(str(text(k)).removeprefix("rq:worker:") for k in r.smembers(f"rq:workers:{queue}"))
    rows, silent = [], []
    for name in names:
        if not r.exists(f"rq:worker:{name}"):
            continue
        beat = r.hget(worker_key(name), "beat_at")
        age = None if beat is None else now - float(beat)
        rows.append({"name": name, "fix": beat is not None, "beat_age_s": None if age is None else round(age, 1)})
        if age is not None and age > bound:
            silent.append(name)
    if not rows:
        return Finding("workers", False, f"no worker registered on queue {queue}")
    with_fix = sum(1 for w in rows if w["fix"])
    ok = not silent and with_fix > 0
    detail = f"{len(rows)} worker(s), {with_fix} with the recovery layer"
    if silent:
        detail += f"; silent past {bound:.0f} s: {', '.join(silent)}"
    if not with_fix:
        detail += "; none runs the recovery layer: a dead worker's job would stay started"
    return Finding("workers", ok, detail, {"workers": rows})


def _no_stuck(r: Redis, queue: str, bound: float) -> Finding:
    now = time.time()
    clients = {c.get("name", "") for c in r.client_list()}
    stuck: list[dict[str, Any]] = []
    wip = cast(list[tuple[bytes, float]], r.zrange(f"rq:wip:{queue}", 0, -1, withscores=True))
    for member, deadline in wip:
        job_id = str(text(member)).split(":")[0]
        if r.exists(live_key(job_id)):
            continue  # the recovery layer's lease says its worker is alive
        beat = r.hget(track_key(job_id), "heartbeat_at")
        silent = now - float(beat) if beat else None  # None: not run by the recovery layer
        worker = text(r.hget(f"rq:job:{job_id}", "worker_name")) or ""
        dead = bool(worker) and worker not in clients and connection_name(worker) not in clients
        if deadline < now or (silent is not None and silent > bound) or (silent is None and dead):
            stuck.append({"job_id": job_id, "worker": worker, "worker_connected": not dead})
    detail = (
        "no job stuck in started"
        if not stuck
        else f"{len(stuck)} job(s) stuck in started: " + ", ".join(s["job_id"] for s in stuck)
    )
    return Finding("no_stuck", not stuck, detail, {"stuck": stuck})


def _render_yaml(path: Path, api: str) -> Finding:
    if not path.exists():
        return Finding("render_yaml", None, f"skipped: {path} not found")
    problems = []
    doc = yaml.safe_load(path.read_text())
    services = {s.get("type"): s for s in doc.get("services", [])}
    scripts: set[str] = set()
    pyproject = path.parent / "pyproject.toml"
    if pyproject.exists():
        scripts = set(tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}))
    for kind in ("web", "worker", "keyvalue"):
        if kind not in services:
            problems.append(f"no {kind} service")
    for kind in ("web", "worker"):
        svc = services.get(kind, {})
        cmd = str(svc.get("startCommand", "")).split()
        if scripts and (not cmd or cmd[0] not in scripts):
            problems.append(f"{kind} startCommand {' '.join(cmd)!r} is not a console script of this project")
        if "--burst" in cmd:
            problems.append(f"{kind} runs with --burst: it exits when the queue is empty")
        env = {e.get("key"): e for e in svc.get("envVars", [])}
        if env.get("REDIS_URL", {}).get("fromService", {}).get("property") != "connectionString":
            problems.append(f"{kind} REDIS_URL is not wired from the keyvalue service")
    health = services.get("web", {}).get("healthCheckPath")
    if health:
        try:
            if requests.get(f"{api}{health}", timeout=5).status_code != 200:
                problems.append(f"healthCheckPath {health} does not answer 200")
        except requests.RequestException:
            problems.append(f"healthCheckPath {health} unreachable")
    if services.get("keyvalue", {}).get("maxmemoryPolicy") != "noeviction":
        problems.append("keyvalue maxmemoryPolicy is not noeviction: Redis may evict queued jobs")
    return Finding("render_yaml", not problems, "; ".join(problems) or f"{path} matches the code")


def verify(
    *,
    api_url: str,
    redis_url: str,
    queue: str = "shap-jobs",
    admin_token: str | None = None,
    api_key: str | None = None,
    render_yaml: Path | None = None,
    timeout: float = 60.0,
    bound: float = 8.0,
) -> list[Finding]:
    api = api_url.rstrip("/")
    r = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3)
    checks = [_ping(api), _redis_ping(api, admin_token), _round_trip(api, timeout=timeout, api_key=api_key)]
    checks += [_workers(r, queue, bound), _no_stuck(r, queue, bound)]
    if render_yaml is not None:
        checks.append(_render_yaml(render_yaml, api))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--admin-token")
    parser.add_argument("--api-key")
    parser.add_argument("--queue", default="shap-jobs")
    parser.add_argument("--render-yaml", default="render.yaml", help="Blueprint to check ('' to skip)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for the analysis round trip")
    parser.add_argument("--bound", type=float, default=8.0, help="liveness bound: LIVENESS_TTL + SWEEP_INTERVAL")
    parser.add_argument("--report-dir", help="where to write verify.json (default reports/out/verify-<time>)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        checks = verify(
            api_url=args.api_url,
            redis_url=args.redis_url,
            queue=args.queue,
            admin_token=args.admin_token,
            api_key=args.api_key,
            render_yaml=Path(args.render_yaml) if args.render_yaml else None,
            timeout=args.timeout,
            bound=args.bound,
        )
    except RedisError as exc:
        print(f"harness verify: cannot reach Redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3
    ok = all(c.ok is not False for c in checks)
    for c in checks:
        mark = {True: "PASS", False: "FAIL", None: "skip"}[c.ok]
        print(f"{mark}  {c.name:<12} {c.detail}")
    out = Path(args.report_dir or Path("reports") / "out" / time.strftime("verify-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "verify.json").write_text(
        json.dumps(
            {"ok": ok, "api_url": args.api_url, "queue": args.queue, "checks": [asdict(c) for c in checks]}, indent=2
        )
    )
    print(f"{'verified' if ok else 'NOT verified'}; report: {out / 'verify.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
