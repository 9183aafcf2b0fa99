"""rq_recovery is a product of its own: it imports rq, redis, psutil and prometheus-client only."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = [
    "rq_recovery",
    "rq_recovery.config",
    "rq_recovery.keys",
    "rq_recovery.events",
    "rq_recovery.metrics",
    "rq_recovery.fencing",
    "rq_recovery.tracking",
    "rq_recovery.worker_process_fix",
    "rq_recovery.diagnose_worker",
    "rq_recovery.repair_stuck_jobs",
]
FORBIDDEN = ("shap", "sklearn", "fastapi", "uvicorn", "numpy", "harness", "shap_service", "pydantic")


def test_the_recovery_package_imports_none_of_the_service_or_the_harness():
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in MODULES)
        + "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_the_worker_class_needs_no_constructor_argument_and_reads_settings_from_the_environment(redis_only):
    """RQ's CLI, `Worker.all`, `find_by_key` and `WorkerPool` build the class with RQ's arguments only."""
    code = (
        "import sys\n"
        "from redis import Redis\n"
        "from rq import Queue\n"
        "from rq_recovery.worker_process_fix import RecoveringWorker\n"
        "conn = Redis.from_url(sys.argv[1])\n"
        "w = RecoveringWorker([Queue('q', connection=conn)], connection=conn)\n"
        "print(w.settings.liveness_ttl, w.settings.key_prefix)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LIVENESS_TTL": "9", "KEY_PREFIX": "app:"}
    argv = [sys.executable, "-c", code, redis_only.redis_url]
    out = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["9.0", "app:"]
