"""`harness`: run the chaos suite, or start a stack by hand.

    harness run   [--scenario NAME ...] [--fix bundled|none] [--seed N] [--report-dir DIR]
                  [--redis-auth none|password|tls] ...
    harness report DIR                                  re-render DIR/index.html from a saved run
    harness demo  start Redis + API + one worker, explain 5 rows, print the SHAP summary
    harness up [--workers N] [--fix bundled|none]      a local stack until Ctrl-C
    harness reproduce stuck-job                         the original incident, then the fix
    harness verify --api-url URL --redis-url URL        check a running deployment (pre-deploy)
    harness images build --offline | list | prune       Docker images without a registry
    harness bench recovery|service                      benchmarks

Exit codes: 0 all passed, 1 a scenario failed, 2 usage error, 3 the environment lacks something
(no Redis binary, ...) or nothing ran (every selected scenario skipped), each with a one-line
reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from harness.backends.base import BACKENDS, EnvironmentMissing
from harness.backends.config import StackConfig, harness_table, new_run_id, resolve_target
from harness.backends.local.redis_server import find_redis_server
from harness.backends.local.stack import Stack
from harness.defaults import REPORT_FILE, SUMMARY_FILE
from harness.targets.target import TargetError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ENV = 0, 1, 2, 3


def _scenarios_dir() -> Path:
    """./scenarios when the current directory has its own, else the scenarios the package ships
    (so that an installed harness runs from any directory)."""
    here = Path.cwd() / "scenarios"
    if here.is_dir():
        return here
    import harness.run.scenarios as shipped

    return Path(shipped.__file__).parent


def _cmd_demo(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_diabetes

    rows = load_diabetes().data[:5].tolist()
    print("starting Redis, the API and one worker on loopback ...", flush=True)
    t0 = time.monotonic()
    with Stack(StackConfig(workers=1, chaos_hooks=False)) as stack:
        print(f"  stack ready in {time.monotonic() - t0:.1f} s: API {stack.api_url}, Redis {stack.redis_url}")
        accepted = stack.submit(rows)
        print(f"  POST /analyze -> 202 job {accepted['job_id']}")
        view = stack.wait_terminal(accepted["job_id"], timeout=120)
    if view["status"] != "finished":
        print(f"job {view['status']}: {view.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    result = view["result"]
    print(f"  job finished on worker {view['worker']} (attempt {view['attempts']})\n")
    print(f"model {result['model']}  explainer {result['explainer']}  base value {result['base_value']:.3f}")
    print("mean |SHAP| per feature:")
    ranked = sorted(result["mean_abs_shap"].items(), key=lambda kv: -kv[1])
    for name, value in ranked:
        print(f"  {name:>6}  {value:8.3f}  {'#' * max(1, round(40 * value / ranked[0][1]))}")
    print(f"additivity: max |base + sum(shap) - prediction| = {result['max_additivity_error']:.2e}")
    return EXIT_OK


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from harness.cli.reproduce import reproduce_stuck_job

    return reproduce_stuck_job(wait_s=args.wait)


def _cmd_up(args: argparse.Namespace) -> int:
    import signal as _signal

    config = StackConfig(workers=args.workers, fix=args.fix, chaos_hooks=args.chaos_hooks)
    with Stack(config) as stack:
        row = "[[0.03,0.05,0.06,0.02,-0.04,-0.03,-0.04,-0.002,0.02,-0.017]]"
        auth = f"Authorization: Bearer {stack.admin_token}"
        n = len(stack.workers)
        print(
            f"""stack {stack.run_id} is up ({n} worker(s), fix={args.fix}); Ctrl-C stops and removes it.

  API          {stack.api_url}
  Redis        {stack.redis_url}
  admin token  {stack.admin_token}
  logs         {stack.log_dir}
  workers      {", ".join(f"{w.name} (pid {w.pid})" for w in stack.workers)}

  curl -s {stack.api_url}/ping
  curl -s -X POST {stack.api_url}/analyze -H 'Content-Type: application/json' -d '{{"rows": {row}}}'
  curl -s {stack.api_url}/jobs/JOB_ID
  curl -s -H '{auth}' {stack.api_url}/admin/redis_ping
  curl -s -X POST -H '{auth}' {stack.api_url}/admin/cleanup_jobs
  curl -s {stack.api_url}/metrics
  diagnose-worker --redis-url {stack.redis_url} --queue {config.queue}
  repair-stuck-jobs --dry-run --redis-url {stack.redis_url} --queue {config.queue}
""",
            flush=True,
        )
        # Ctrl-C and SIGTERM both stop it (a shell's background job inherits SIGINT ignored).
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        _signal.signal(_signal.SIGTERM, _signal.default_int_handler)
        try:
            while all(p.alive() for p in (stack.redis_proc, stack.api_proc) if p):
                time.sleep(0.5)
            print("harness: Redis or the API exited; stopping", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            print("\nstopping: removing every process of the stack ...", flush=True)
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    if args.redis_auth == "tls" and args.backend != "local":
        print(
            f"harness: --redis-auth tls is local-only for now (the {args.backend} backend's Redis has no TLS);"
            " use --redis-auth password there",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.backend == "docker":  # no engine or images: exit 3 with the reason, before pytest
        from harness.backends.docker.engine import preflight

        preflight()
    run_id = new_run_id()
    report_dir = Path(args.report_dir or Path("reports") / "out" / run_id).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        str(_scenarios_dir()),
        "-p",
        "no:cacheprovider",
        "--backend",
        args.backend,
        "--fix",
        args.fix,
        "--profile",
        args.profile,
        "--report-dir",
        str(report_dir),
        f"--junitxml={report_dir / 'junit.xml'}",
        "-q",
    ]
    if args.seed is not None:
        argv += ["--chaos-seed", str(args.seed)]
    if args.repair_cmd:
        argv += ["--repair-cmd", args.repair_cmd]
    if args.redis_auth != "none":
        argv += ["--redis-auth", args.redis_auth]
    # The service under test: --target, else [tool.harness] of the current directory's
    # pyproject.toml (pytest's own rootdir may be the installed package, which has none), else
    # ours. Checked here, so that a bad target file is one clear line, not a pytest error.
    here = Path.cwd() / "pyproject.toml"
    target_spec = args.target or (str(here) if harness_table(here) else None)
    try:
        target = resolve_target(
            None, target=target_spec, api_cmd=args.api_cmd, worker_cmd=args.worker_cmd, queue=args.queue
        )
        target.headers(os.environ)  # a header's variable that is not set: say so now
        target.worker_command(args.fix)  # a --fix the target has no worker for: say so now
    except TargetError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.backend == "docker" and target.name != "shap-service":
        print(f"harness: target {target.name}: the docker backend runs this repository's image only", file=sys.stderr)
        return EXIT_USAGE
    if target_spec:
        argv += ["--target", str(Path(target_spec).resolve()) if Path(target_spec).exists() else target_spec]
    for flag in ("api_cmd", "worker_cmd", "queue"):
        value = getattr(args, flag)
        if value:
            argv += ["--" + flag.replace("_", "-"), str(value)]
    for name in args.scenario or []:
        argv += ["-k", name.replace("-", "_")] if len(args.scenario) == 1 else []
    if args.scenario and len(args.scenario) > 1:
        argv += ["-k", " or ".join(n.replace("-", "_") for n in args.scenario)]
    print("$ " + shlex.join(argv), flush=True)
    # Not subprocess.call: on Ctrl-C it SIGKILLs pytest, whose teardown is what removes the
    # stacks. pytest got the same SIGINT (same process group); let it finish cleaning up.
    child = subprocess.Popen(argv, env={**os.environ, "HARNESS_RUN_ID_HINT": run_id})
    try:
        rc = child.wait()
    except KeyboardInterrupt:
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
        raise
    summary_path = report_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    judged = summary.get("run_id") == run_id  # this run's summary, not one an earlier run left here
    if judged:
        from harness.report.summary import summary_table

        print(summary_table(summary))
    page = report_dir / REPORT_FILE
    print(f"\nreport: {page if page.exists() else report_dir}")
    if rc == 5:
        print("harness: no scenario matched", file=sys.stderr)
        return EXIT_USAGE
    if rc in (3, 4):  # pytest: internal error / usage error
        return EXIT_USAGE
    if rc == 0 and not judged:
        # pytest passes a session whose tests all skipped; a chaos run that judged nothing did not.
        print(
            f"harness: nothing ran: every selected scenario was skipped on the {args.backend} backend"
            " (the reasons are above)",
            file=sys.stderr,
        )
        return EXIT_ENV
    return EXIT_OK if rc == 0 else EXIT_FAILED


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import ReportError, render

    try:
        path = render(args.dir)
    except ReportError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {path}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the chaos scenarios and write a report")
    run.add_argument("--backend", default="local", choices=BACKENDS)
    run.add_argument("--scenario", action="append", metavar="NAME", help="run only this scenario (repeatable)")
    run.add_argument(
        "--fix",
        default="bundled",
        help="which worker command of the target: bundled (its worker.command, the default) or one of its"
        " worker.variants (shap-service: none = stock RQ, or a mutant, see README; plain-rq: recovering)",
    )
    run.add_argument("--profile", default="ci", choices=["ci", "soak"])
    run.add_argument(
        "--target",
        metavar="FILE",
        help="the service under test: a target file (TOML), a pyproject.toml with [tool.harness], or a shipped"
        " target (shap-service, plain-rq); default: ./pyproject.toml's [tool.harness], else shap-service",
    )
    run.add_argument("--api-cmd", help="replaces the target's API command")
    run.add_argument("--worker-cmd", help="replaces the target's worker command (needs {name}; see docs/TARGETS.md)")
    run.add_argument("--queue", help="replaces the target's queues with this one")
    run.add_argument("--repair-cmd", help="external repair command run every few seconds ({redis_url}, {queue})")
    run.add_argument(
        "--redis-auth",
        default="none",
        choices=["none", "password", "tls"],
        help="Redis of every stack: none (default); password: requirepass with a random password per run, never"
        " shown ($HARNESS_REDIS_PASSWORD sets it); tls: password + TLS only (rediss://, a CA made for the run;"
        " local backend only)",
    )
    run.add_argument("--seed", type=int, help="chaos seed (default: random, printed)")
    run.add_argument("--report-dir", help="where to write the report (default reports/out/<run-id>)")
    run.set_defaults(func=_cmd_run)
    report = sub.add_parser("report", help="re-render index.html from a saved run (a run's report directory)")
    report.add_argument("dir", help="a run's report directory (holds summary.json)")
    report.set_defaults(func=_cmd_report)
    demo = sub.add_parser("demo", help="start a local stack and explain 5 rows")
    demo.set_defaults(func=_cmd_demo)
    up = sub.add_parser("up", help="start a local stack and keep it up until Ctrl-C")
    up.add_argument("--workers", type=int, default=2)
    up.add_argument("--fix", default="bundled", choices=["bundled", "none"])
    up.add_argument("--chaos-hooks", action="store_true", help="enable the test-only job hooks")
    up.set_defaults(func=_cmd_up)
    rep = sub.add_parser("reproduce", help="replay the original incident (stuck-job) step by step")
    rep.add_argument("story", choices=["stuck-job"])
    rep.add_argument("--wait", type=float, default=10.0, help="seconds to show the job stuck (default 10)")
    rep.set_defaults(func=_cmd_reproduce)
    sub.add_parser("bench", help="benchmarks (see: harness bench --help)", add_help=False)
    sub.add_parser("verify", help="check a running deployment (see: harness verify --help)", add_help=False)
    sub.add_parser("images", help="offline Docker images (see: harness images --help)", add_help=False)
    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["bench"]:
        from harness.cli.bench import main as bench_main

        return bench_main(raw[1:])
    if raw[:1] == ["verify"]:
        from harness.cli.verify import main as verify_main

        return verify_main(raw[1:])
    if raw[:1] == ["images"]:
        from harness.cli.images import main as images_main

        return images_main(raw[1:])
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        if args.func is not _cmd_report:  # re-rendering a saved run needs no Redis
            find_redis_server()
        return int(args.func(args))
    except EnvironmentMissing as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_ENV
    except KeyboardInterrupt:
        print("harness: interrupted; everything started was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
