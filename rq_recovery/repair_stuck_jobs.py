"""`repair-stuck-jobs`: run the workers' recovery sweep once, on demand, or for ever (`--watch`).

Safe from cron and from Render's preDeployCommand: it uses the same atomic claim as the
workers, so running it twice at once (or beside live workers) requeues nothing twice, and by
default it leaves alone every job whose worker still beats, or (a plain RQ worker) is still
registered with a fresh heartbeat or connected. `--watch` is the standalone sweeper for
deployments where no long-lived process of ours runs (burst workers from cron).

Exit codes: 0 nothing stuck (or all repaired), 1 stuck jobs remain (e.g. --dry-run found some),
2 usage error, 3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading

from redis import Redis
from redis.exceptions import RedisError
from rq.serializers import resolve_serializer

from . import __version__
from .config import Settings, SettingsError, redact_url
from .tracking import SweepReport, Tracker

__all__ = ["main"]

EXIT_OK, EXIT_STUCK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repair-stuck-jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument(
        "--queue", help="queue name(s), comma-separated, whose untracked jobs to adopt (default: $QUEUE_NAME)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="treat a job as stuck only when silent this long (default: its lease, LIVENESS_TTL); "
        "also adopts jobs the fix does not track (default 90 s, RQ's own heartbeat)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    parser.add_argument("--force", action="store_true", help="also take jobs whose worker still looks alive")
    parser.add_argument("--yes", action="store_true", help="do not ask before --force on a terminal")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--watch", action="store_true", help="sweep every --interval seconds until SIGTERM")
    parser.add_argument("--interval", type=float, metavar="S", help="seconds between sweeps (default SWEEP_INTERVAL)")
    parser.add_argument(
        "--serializer",
        default="pickle",
        help="how jobs that no worker with the fix started are serialized: pickle (RQ's default), json, "
        "or an import path (default: pickle)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if args.interval is not None and args.interval <= 0:
        print("repair-stuck-jobs: --interval must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    if args.watch and (args.dry_run or args.force):
        print("repair-stuck-jobs: --watch runs the workers' sweep; it takes no --dry-run or --force", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout is not None and args.timeout <= 0:
        print("repair-stuck-jobs: --timeout must be > 0 seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = Settings.from_env(redis_url=args.redis_url, queue_name=args.queue)
    except SettingsError as exc:
        print(f"repair-stuck-jobs: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.force and not args.dry_run and not args.yes:
        if not sys.stdin.isatty():
            print("repair-stuck-jobs: --force requeues jobs of live workers; add --yes to confirm", file=sys.stderr)
            return EXIT_USAGE
        answer = input("--force requeues jobs whose worker may still be running them. Continue? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("aborted", file=sys.stderr)
            return EXIT_USAGE

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    conn = Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=3)
    try:
        serializer = resolve_serializer(args.serializer)
    except Exception as exc:  # noqa: BLE001 - an import path that does not resolve
        print(f"repair-stuck-jobs: --serializer {args.serializer!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    queues = [q.strip() for q in settings.queue_name.split(",") if q.strip()]
    tracker = Tracker.from_settings(conn, settings, queues=queues, serializer=serializer)
    by = f"repair@{socket.gethostname()}"
    if args.watch:
        return _watch(tracker, settings, by=by, interval=args.interval or settings.sweep_interval)
    try:
        adopted = tracker.adopt_untracked(silent_after=args.timeout or 90.0, dry_run=args.dry_run, force=args.force)
        report = tracker.sweep(
            by=by, silent_after=args.timeout, force=args.force, dry_run=args.dry_run, connection_check=False
        )
    except RedisError as exc:
        print(f"repair-stuck-jobs: cannot reach Redis at {redact_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if args.dry_run:  # an adopted job would be recovered by the same run: say so, as the real run does
        for job_id in adopted:
            why = "started by a worker without the fix; its worker is gone and RQ's heartbeat is old"
            report.actions.append({"job_id": job_id, "action": "adopt", "reason": why, "dry_run": True})
    out = {**report.counts(), "adopted": len(adopted), "dry_run": args.dry_run, "actions": report.actions}
    out["held_s"] = report.held_s
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"scanned {report.scanned} job(s); skipped {report.skipped_live} with a live worker; "
            f"{'would adopt' if args.dry_run else 'adopted'} {len(adopted)} untracked"
        )
        if report.held_s > 0:
            print(
                f"  Redis restarted lately: workers get {report.held_s:.1f} s more to beat again (--force skips this)"
            )
        for a in report.actions:
            verb = f"would {a['action']}" if args.dry_run else a["action"]
            print(f"  {verb} {a['job_id']}: {a.get('reason', '')}")
        if not report.actions:
            print("  nothing stuck")
    if args.dry_run:
        return EXIT_STUCK if report.actions else EXIT_OK
    return EXIT_OK


def _watch(tracker: Tracker, settings: Settings, *, by: str, interval: float) -> int:
    """The workers' sweep loop, in a process of its own, until SIGTERM or SIGINT."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        tracker.connection.ping()
    except RedisError as exc:
        print(f"repair-stuck-jobs: cannot reach Redis at {redact_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"repair-stuck-jobs: sweeping every {interval:g} s until SIGTERM", file=sys.stderr, flush=True)
    tracker.run(stop, by=by, interval=interval, connection_check=settings.connection_check, on_report=_note)
    return EXIT_OK


def _note(report: SweepReport) -> None:
    for action in report.actions:
        print(json.dumps({"event": "sweep", **action}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
