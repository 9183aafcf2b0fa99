"""`repair-stuck-jobs`: run the workers' recovery sweep once, on demand.

Safe from cron and from Render's preDeployCommand: it uses the same atomic claim as the
workers, so running it twice at once (or beside live workers) requeues nothing twice, and by
default it leaves alone every job whose worker still beats.

Exit codes: 0 nothing stuck (or all repaired), 1 stuck jobs remain (e.g. --dry-run found some),
2 usage error, 3 Redis unreachable.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys

from redis import Redis
from redis.exceptions import RedisError

from . import __version__
from .config import Settings, SettingsError, redact_url
from .tracking import Tracker

__all__ = ["main"]

EXIT_OK, EXIT_STUCK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="repair-stuck-jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--queue", help="queue name (default: $QUEUE_NAME or shap-jobs)")
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
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
    tracker = Tracker.from_settings(conn, settings)
    by = f"repair@{socket.gethostname()}"
    try:
        adopted = tracker.adopt_untracked(silent_after=args.timeout or 90.0, dry_run=args.dry_run)
        report = tracker.sweep(
            by=by, silent_after=args.timeout, force=args.force, dry_run=args.dry_run, connection_check=False
        )
    except RedisError as exc:
        print(f"repair-stuck-jobs: cannot reach Redis at {redact_url(settings.redis_url)}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    out = {**report.counts(), "adopted": adopted, "dry_run": args.dry_run, "actions": report.actions}
    out["held_s"] = report.held_s
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"scanned {report.scanned} job(s); skipped {report.skipped_live} with a live worker")
        if report.held_s > 0:
            print(
                f"  Redis restarted lately: workers get {report.held_s:.0f} s more to beat again (--force skips this)"
            )
        for a in report.actions:
            verb = f"would {a['action']}" if args.dry_run else a["action"]
            print(f"  {verb} {a['job_id']}: {a.get('reason', '')}")
        if not report.actions:
            print("  nothing stuck")
    if args.dry_run:
        return EXIT_STUCK if report.actions else EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
